//! The io_uring core's completions, in batches: each ends its operation in the table of those
//! in flight if it is the final one (`inflight`), which also says what it was, and is fed to
//! the connection table (received bytes from the buffer ring, send results, accepted sockets),
//! or to the core itself (the wake-up read, the timer).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use io_uring::cqueue;

use super::driver::Core;
use super::inflight::OpKind;
use crate::engine::conns::conn::Flow;
use crate::engine::conns::io::Io;
use crate::engine::conns::slab::ConnKey;
use crate::error::{CloseReason, ConnError};

impl Core {
    /// Handles every completion posted so far.
    pub(super) fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.io.ring.completion());
        self.io.lone_turn = cqes.len() <= 1;
        // Only busy polling asks (a pass over the batch the loop need not make otherwise).
        self.reaped_work =
            self.spin.is_some() && cqes.iter().any(|c| !self.io.is_timer(c.user_data()));
        for cqe in &cqes {
            let (res, flags) = (cqe.result(), cqe.flags());
            // The operation ends here on its final completion, before anything looks for its
            // connection or listener (which may be gone).
            let Some(kind) = self.io.complete(cqe.user_data(), flags) else {
                continue;
            };
            match kind {
                OpKind::Recv(key) => self.on_recv(key, res, flags),
                OpKind::Send(key) => self.on_send(key, res),
                OpKind::Accept(slot) => self.on_accept(slot, res, flags),
                OpKind::Wake => {
                    if !self.conns.stopping() {
                        self.io.arm_wake(self.conns.shared().wake_fd());
                    }
                }
                OpKind::Timer => self.on_timer(),
                OpKind::Cancel => {}
            }
        }
        self.cqes = cqes;
    }

    fn on_recv(&mut self, key: ConnKey, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let filled = match cqueue::buffer_select(flags) {
            Some(bid) if res > 0 => self
                .bufs
                .take(bid, res as usize, cqueue::buffer_more(flags)),
            _ => None,
        };
        let Some((_, state)) = self.conns.io_state(key) else {
            if let Some(filled) = filled.filter(|f| f.done()) {
                self.bufs.recycle(filled.bid());
            }
            return;
        };
        let limited = state.recv_limited();
        if res > 0 {
            state.received(res as u32);
        }
        let cancelled = if more {
            state.recv_cancelled()
        } else {
            state.recv_ended()
        };
        if res > 0 && !more && limited {
            // The receive delivered all of its credit.
            self.conns.credit_used_up(key);
        }
        let io = &mut self.io;
        if res > 0 {
            match filled.as_ref().map(|f| self.bufs.bytes(f)) {
                Some(data) => {
                    if self.conns.data(key, data, io) == Flow::Read && !more {
                        self.rearm.push(key);
                    }
                }
                None => {
                    self.conns
                        .close(key, CloseReason::Error(Arc::new(ConnError::BadBuffer)), io)
                }
            }
            if let Some(filled) = filled.filter(|f| f.done()) {
                self.bufs.recycle(filled.bid());
            }
        } else if res == 0 {
            self.conns.eof(key, io);
        } else if -res == libc::ENOBUFS {
            // The buffer ring ran dry: read again once the loop has handed buffers back.
            self.conns.stats.recv_no_buffers += 1;
            if !more {
                self.rearm.push(key);
            }
        } else if -res == libc::EINVAL && limited && io.recv_limits {
            // A kernel before 6.17 refuses the byte limit: receive without one from now on.
            io.recv_limits = false;
            tracing::info!(
                core = self.conns.shared().index(),
                "multishot receives cannot be limited on this kernel (Linux 6.17+): a stopped \
                 connection may be handed up to the receive ring"
            );
            self.rearm.push(key);
        } else if -res == libc::ECANCELED && (cancelled || self.conns.is_paused(key)) {
            // Our own cancel after a pause: reading resumes with the session, or now if it
            // resumed before this final completion came (it could not re-arm then).
            if !more {
                self.rearm.push(key);
            }
        } else {
            self.conns
                .read_failed(key, io::Error::from_raw_os_error(-res), io);
        }
        self.conns.free_if_closed(key, io);
    }

    fn on_send(&mut self, key: ConnKey, res: i32) {
        let Some((_, state)) = self.conns.io_state(key) else {
            return;
        };
        state.send_ended();
        let result = match res {
            n if n >= 0 => Ok(n as usize),
            n => Err(io::Error::from_raw_os_error(-n)),
        };
        self.conns.sent(key, result, &mut self.io);
    }

    fn on_accept(&mut self, slot: u32, res: i32, flags: u32) {
        // SAFETY: a successful accept completion carries a new descriptor that nothing else
        // owns; wrapping it first means it is closed on every path below that does not keep it.
        let accepted = (res >= 0).then(|| unsafe { OwnedFd::from_raw_fd(res) });
        let more = cqueue::more(flags);
        let Some(state) = self.conns.listener_state(slot) else {
            return;
        };
        if !more {
            state.ended();
        }
        let io = &mut self.io;
        match accepted {
            Some(fd) => self.conns.accepted(slot, fd, None, io),
            None if -res == libc::ECANCELED => {}
            None if more => {
                let err = io::Error::from_raw_os_error(-res);
                tracing::warn!(core = self.conns.shared().index(), %err, "accept failed");
            }
            None => {
                let err = io::Error::from_raw_os_error(-res);
                self.conns.accept_failed(slot, &err, io);
            }
        }
        self.accept_again(slot);
        self.conns.maybe_finish_listener(slot, &mut self.io);
    }

    /// Re-arms the multishot accept of `slot` if it ended and the listener still accepts.
    pub(super) fn accept_again(&mut self, slot: u32) {
        if let Some((fd, state)) = self.conns.accepting(slot) {
            // Arming cannot fail on io_uring (the SQE waits in the backlog if need be).
            let _ = self.io.listen(slot, fd, state);
        }
    }

    fn on_timer(&mut self) {
        let (due, next) = self.conns.run_timers(Instant::now(), &mut self.io);
        for slot in due {
            self.accept_again(slot);
        }
        if let Some(at) = next {
            self.io.wake_at(at);
        }
    }
}
