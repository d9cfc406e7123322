//! The io_uring loop of one core: multishot accept and receive over a provided-buffer ring,
//! coalesced sends, batched submissions (one `io_uring_enter` per loop turn).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::engine::core::{dispatch, run_deferred, Commands, CoreShared, Driver};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::outbox::{Outbox, Span};
use crate::engine::send::SendQueue;
use crate::engine::session::{Acceptor, ConnInfo, Session, TICK};
use crate::engine::stats::CoreStats;
use crate::engine::uring::bufring::BufRing;
use crate::engine::uring::build_ring;
use crate::engine::uring::enter::Enter;
use crate::engine::RuntimeConfig;
use crate::error::{CloseReason, ConnError, StartError};

// user_data layout: operation kind in the top byte, slot index in the low 32 bits.
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
const OP_TIMER: u64 = 6;

fn user_data(op: u64, slot: u32) -> u64 {
    (op << 56) | u64::from(slot)
}

/// `IORING_ENTER_GETEVENTS` (the crate keeps its `sys` module private).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// The timer's period: the session tick, accept retries, the shutdown deadline.
const TIMER_PERIOD: Duration = TICK;
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

struct ListenerSlot {
    id: u64,
    fd: OwnedFd,
    acceptor: Arc<dyn Acceptor>,
    armed: bool,
    retry_at: Option<Instant>,
    closing: Option<Option<SyncSender<()>>>,
    conns: usize,
    /// Its sessions want the periodic tick (timeouts).
    ticks: bool,
}

struct ConnSlot {
    /// Shared with the send queue while attached (for producers' direct sends): the socket
    /// closes when the last holder lets go.
    fd: Arc<OwnedFd>,
    session: Option<Box<dyn Session>>,
    sendq: Arc<SendQueue>,
    /// The chunks the kernel is sending from; they stay here, unmoved, until the send
    /// completes.
    out: Outbox,
    recv_armed: bool,
    send_armed: bool,
    listener: Option<u32>,
    reconnectable: bool,
    /// The session's consumer is full: no receive is armed until it resumes.
    paused: bool,
    /// The multishot receive was cancelled by a pause and its final completion has not arrived:
    /// an `ECANCELED` then is ours, even if the session resumed meanwhile.
    recv_cancelled: bool,
    /// The peer's EOF arrived while paused; handled after the held-back data is delivered.
    eof_pending: bool,
    closing: Option<CloseReason>,
    close_when_flushed: bool,
    close_acks: Vec<SyncSender<()>>,
}

impl ConnSlot {
    fn busy(&self) -> bool {
        self.recv_armed || self.send_armed
    }
}

/// The io_uring driver of one core.
pub(crate) struct Core {
    // Field order is drop order: the ring's registered descriptor goes first (it unregisters
    // through the ring), then the ring, then the memory it may have pointed at.
    enter: Enter,
    ring: IoUring,
    bufs: BufRing,
    wake_buf: Box<u64>,
    timer_spec: Box<types::Timespec>,
    shared: Arc<CoreShared>,
    listeners: Vec<Option<ListenerSlot>>,
    conns: Vec<Option<ConnSlot>>,
    free_conns: Vec<u32>,
    cqes: Vec<cqueue::Entry>,
    /// Chunks a send completion finished with, on their way back to their queue.
    done: Vec<Chunk>,
    backlog: Vec<squeue::Entry>,
    rearm: Vec<u32>,
    /// Operations submitted whose final completion has not arrived.
    ops: usize,
    wake_armed: bool,
    wake_cancelled: bool,
    timer_armed: bool,
    stopping: Option<Instant>,
    local: CoreStats,
}

impl Driver for Core {
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Core, StartError> {
        let (ring, flags) = build_ring(cfg.ring_entries)?;
        let bufs = BufRing::new(&ring, cfg.recv_buffers, cfg.recv_buffer_size, 0).map_err(
            |err| match err.raw_os_error() {
                Some(libc::EINVAL) => StartError::MissingFeature {
                    feature: "IORING_REGISTER_PBUF_RING",
                    needs: "5.19",
                },
                _ => StartError::Setup(err),
            },
        )?;
        let enter = Enter::new(&ring);
        tracing::debug!(
            core = shared.index(),
            ?flags,
            registered_ring_fd = enter.is_registered(),
            incremental_buffers = bufs.incremental(),
            "ring ready"
        );
        Ok(Core {
            enter,
            ring,
            bufs,
            wake_buf: Box::new(0),
            timer_spec: Box::new(types::Timespec::from(TIMER_PERIOD)),
            local: CoreStats {
                core: shared.index(),
                ..CoreStats::default()
            },
            shared,
            listeners: Vec::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            cqes: Vec::with_capacity(256),
            done: Vec::new(),
            backlog: Vec::new(),
            rearm: Vec::new(),
            ops: 0,
            wake_armed: false,
            wake_cancelled: false,
            timer_armed: false,
            stopping: None,
        })
    }

    fn run(mut self) {
        self.arm_wake();
        loop {
            if let Some(commands) = self.shared.take_commands() {
                for cmd in commands {
                    dispatch(&mut self, cmd);
                }
            }
            run_deferred(&mut self);
            if self.stopping.is_some() {
                if self.conns.iter().all(Option::is_none)
                    && self.listeners.iter().all(Option::is_none)
                    && !self.wake_cancelled
                {
                    // Everything is closed: withdraw the standing wake-up read and timer, and
                    // leave once their final completions are in.
                    self.wake_cancelled = true;
                    if self.wake_armed {
                        self.push(
                            opcode::AsyncCancel::new(user_data(OP_WAKE, 0))
                                .build()
                                .user_data(user_data(OP_CANCEL, 0)),
                        );
                    }
                    if self.timer_armed {
                        self.push(
                            opcode::TimeoutRemove::new(user_data(OP_TIMER, 0))
                                .build()
                                .user_data(user_data(OP_CANCEL, 0)),
                        );
                    }
                }
                if self.ops == 0 && self.backlog.is_empty() {
                    break;
                }
            }
            self.bufs.commit();
            self.rearm_receives();
            self.flush_backlog();
            // Publish before (possibly) sleeping, so readers see current counters meanwhile.
            self.shared.publish(&self.local);
            let busy = !self.ring.completion().is_empty() || !self.backlog.is_empty();
            let want = u32::from(!busy && self.shared.about_to_sleep());
            let entered = self.enter(want);
            self.shared.awake();
            if let Err(err) = entered {
                tracing::error!(core = self.shared.index(), %err, "io_uring_enter failed; core stops");
                break;
            }
            self.reap();
            self.local.turns += 1;
        }
        self.shared.publish(&self.local);
        self.teardown();
    }
}

impl Core {
    /// Submits what is queued and waits for `want` completions, running deferred task work.
    fn enter(&mut self, want: u32) -> io::Result<()> {
        let to_submit = self.ring.submission().len() as u32;
        self.local.enters += 1;
        // SAFETY: every SQE queued points at memory owned by `self` (a slot's outbox, the wake
        // buffer, the timer spec) that lives until its completion.
        let res = unsafe { self.enter.enter(to_submit, want, IORING_ENTER_GETEVENTS) };
        match res {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// If the loop cannot go on, wait (bounded) for the kernel to finish with our memory.
    fn teardown(mut self) {
        for slot in 0..self.conns.len() as u32 {
            self.close_conn(slot, CloseReason::Local);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.ops > 0 && Instant::now() < deadline {
            self.push(
                opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(user_data(OP_CANCEL, 0)),
            );
            self.flush_backlog();
            if self.enter(1).is_err() {
                break;
            }
            self.reap();
        }
        if self.ops > 0 {
            tracing::error!(
                core = self.shared.index(),
                ops = self.ops,
                "operations still in flight at shutdown; leaking their buffers"
            );
            let Core {
                ring,
                bufs,
                wake_buf,
                timer_spec,
                conns,
                ..
            } = self;
            drop(ring);
            std::mem::forget(bufs);
            std::mem::forget(wake_buf);
            std::mem::forget(timer_spec);
            std::mem::forget(conns);
        }
    }

    // ---- submission ------------------------------------------------------------------------

    fn push(&mut self, sqe: squeue::Entry) {
        self.ops += 1;
        if !self.backlog.is_empty() {
            self.backlog.push(sqe);
            return;
        }
        // SAFETY: every SQE built in this file points only at memory owned by `self` that stays
        // alive and unmoved until the final completion for that SQE is reaped, or is leaked in
        // `teardown` if it never arrives: a slot's outbox (its boxed msghdr, iovec array and
        // chunks, heap memory that does not move with the slot, changed only between sends),
        // `wake_buf`, `timer_spec`.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.backlog.push(sqe);
        }
    }

    fn flush_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let mut moved = 0;
            {
                let mut sq = self.ring.submission();
                for sqe in &self.backlog {
                    // SAFETY: as in `push`.
                    if unsafe { sq.push(sqe) }.is_err() {
                        break;
                    }
                    moved += 1;
                }
            }
            self.backlog.drain(..moved);
            if self.backlog.is_empty() || self.ring.submit().is_err() {
                break;
            }
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(types::Fd(self.shared.wake_fd()), buf.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0));
        self.wake_armed = true;
        self.push(sqe);
    }

    fn arm_timer(&mut self) {
        if self.timer_armed {
            return;
        }
        self.timer_armed = true;
        let sqe = opcode::Timeout::new(&*self.timer_spec)
            .build()
            .user_data(user_data(OP_TIMER, 0));
        self.push(sqe);
    }

    fn arm_accept(&mut self, slot: u32) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            return;
        };
        if l.armed || l.closing.is_some() {
            return;
        }
        l.armed = true;
        let sqe = opcode::AcceptMulti::new(types::Fd(l.fd.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OP_ACCEPT, slot));
        self.push(sqe);
    }

    fn arm_recv(&mut self, slot: u32) {
        let group = self.bufs.group();
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if c.recv_armed || c.paused || c.closing.is_some() {
            return;
        }
        c.recv_armed = true;
        let sqe = opcode::RecvMulti::new(types::Fd(c.fd.as_raw_fd()), group)
            .build()
            .user_data(user_data(OP_RECV, slot));
        self.push(sqe);
    }

    fn rearm_receives(&mut self) {
        let rearm = std::mem::take(&mut self.rearm);
        for &slot in &rearm {
            self.arm_recv(slot);
        }
        self.rearm = rearm;
        self.rearm.clear();
    }

    /// Starts a send of everything queued on `slot`, unless one is in flight.
    fn start_send(&mut self, slot: u32) {
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if c.send_armed || c.closing.is_some() {
            return;
        }
        if c.out.is_empty() && !c.sendq.take(&mut c.out) {
            if c.close_when_flushed {
                self.close_conn(slot, CloseReason::Local);
            }
            return;
        }
        // One send over every waiting chunk, read where the producers wrote the frames: a
        // plain send for one chunk, a sendmsg over their iovecs for several.
        let fd = types::Fd(c.fd.as_raw_fd());
        let sqe = match c.out.span() {
            // A longer span (a frame over 4 GiB) is sent in parts, as a short send is.
            Span::One(ptr, len) => opcode::Send::new(fd, ptr, len.min(u32::MAX as usize) as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            Span::Many(msg) => opcode::SendMsg::new(fd, msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build(),
        }
        .user_data(user_data(OP_SEND, slot));
        c.send_armed = true;
        self.local.sends += 1;
        self.push(sqe);
    }

    // ---- commands --------------------------------------------------------------------------

    fn begin_shutdown(&mut self, grace: Duration) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now() + grace);
        for slot in 0..self.listeners.len() as u32 {
            self.close_listener(slot, None);
        }
        for slot in 0..self.conns.len() as u32 {
            if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
                c.close_when_flushed = true;
            }
            self.start_send(slot);
        }
        self.arm_timer();
    }

    fn close_listener(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        };
        if l.closing.is_some() {
            // Already closing: this ack is answered when the close completes... or now.
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        }
        l.closing = Some(ack);
        let armed = l.armed;
        if armed {
            self.push(
                opcode::AsyncCancel::new(user_data(OP_ACCEPT, slot))
                    .build()
                    .user_data(user_data(OP_CANCEL, slot)),
            );
        }
        for c in 0..self.conns.len() as u32 {
            if matches!(&self.conns[c as usize], Some(conn) if conn.listener == Some(slot)) {
                self.close_conn(c, CloseReason::Local);
            }
        }
        self.maybe_finish_listener(slot);
    }

    fn maybe_finish_listener(&mut self, slot: u32) {
        let done = matches!(
            self.listeners.get(slot as usize),
            Some(Some(l)) if l.closing.is_some() && !l.armed && l.conns == 0
        );
        if !done {
            return;
        }
        if let Some(l) = self.listeners[slot as usize].take() {
            let id = l.id;
            drop(l.fd);
            if let Some(Some(ack)) = l.closing {
                let _ = ack.send(());
            }
            tracing::debug!(listener = id, "listening socket closed");
        }
    }

    // ---- connections -----------------------------------------------------------------------

    fn insert_conn(
        &mut self,
        fd: OwnedFd,
        sendq: Arc<SendQueue>,
        session: Box<dyn Session>,
        listener: Option<u32>,
        reconnectable: bool,
    ) -> u32 {
        let slot = match self.free_conns.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        let fd = Arc::new(fd);
        sendq.attach(slot, fd.clone());
        self.conns[slot as usize] = Some(ConnSlot {
            fd,
            session: Some(session),
            sendq,
            out: Outbox::new(),
            recv_armed: false,
            send_armed: false,
            listener,
            reconnectable,
            paused: false,
            recv_cancelled: false,
            eof_pending: false,
            closing: None,
            close_when_flushed: false,
            close_acks: Vec::new(),
        });
        self.local.connections += 1;
        self.arm_recv(slot);
        slot
    }

    /// Starts closing `slot` (the first reason wins) and frees it once no operation is left;
    /// every final completion of a closing connection comes back here or to `maybe_finalize`.
    fn close_conn(&mut self, slot: u32, reason: CloseReason) {
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if c.closing.is_some() {
            // Already closing (e.g. the send failed after the receive saw EOF): this may have
            // been its last operation.
            self.maybe_finalize(slot);
            return;
        }
        if c.busy() {
            // SAFETY: plain syscall on a socket we own. It ends the multishot receive (EOF) and
            // any pending send (EPIPE), so their final completions arrive and the slot can go.
            unsafe {
                libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        c.closing = Some(reason);
        self.maybe_finalize(slot);
    }

    /// Frees a closing connection once the kernel has no operation left on it.
    fn maybe_finalize(&mut self, slot: u32) {
        let ready = matches!(
            self.conns.get(slot as usize),
            Some(Some(c)) if c.closing.is_some() && !c.busy()
        );
        if !ready {
            return;
        }
        let Some(mut c) = self.conns[slot as usize].take() else {
            return;
        };
        self.free_conns.push(slot);
        let reason = c.closing.unwrap_or(CloseReason::Local);
        let err = self.local.count_close(&reason);
        c.sendq.detach(&mut c.out, err, c.reconnectable);
        drop(c.fd);
        if let Some(session) = c.session {
            session.on_close(&reason);
        }
        for ack in c.close_acks {
            let _ = ack.send(());
        }
        if let Some(l) = c.listener {
            if let Some(Some(listener)) = self.listeners.get_mut(l as usize) {
                listener.conns = listener.conns.saturating_sub(1);
            }
            self.maybe_finish_listener(l);
        }
    }

    fn open_accepted(&mut self, lslot: u32, fd: OwnedFd) {
        let Some(Some(l)) = self.listeners.get_mut(lslot as usize) else {
            return;
        };
        let info = ConnInfo::accepted(&fd, None, self.shared.index());
        let Some((sendq, session)) = l.acceptor.open(info, &self.shared) else {
            self.local.refused += 1;
            return; // dropping `fd` closes it
        };
        l.conns += 1;
        self.local.accepted += 1;
        tracing::debug!(conn = info.id, peer = %info.peer, "connection accepted");
        self.insert_conn(fd, sendq, session, Some(lslot), false);
    }

    // ---- completions -----------------------------------------------------------------------

    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion());
        for cqe in &cqes {
            let data = cqe.user_data();
            let slot = data as u32;
            let (res, flags) = (cqe.result(), cqe.flags());
            match data >> 56 {
                OP_RECV => self.on_recv(slot, res, flags),
                OP_SEND => self.on_send(slot, res),
                OP_ACCEPT => self.on_accept(slot, res, flags),
                OP_WAKE => {
                    self.ops -= 1;
                    self.wake_armed = false;
                    if self.stopping.is_none() {
                        self.arm_wake();
                    }
                }
                OP_TIMER => {
                    self.ops -= 1;
                    self.timer_armed = false;
                    self.on_timer();
                }
                _ => self.ops -= 1,
            }
        }
        self.cqes = cqes;
    }

    fn on_recv(&mut self, slot: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let filled = match cqueue::buffer_select(flags) {
            Some(bid) if res > 0 => self
                .bufs
                .take(bid, res as usize, cqueue::buffer_more(flags)),
            _ => None,
        };
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            if let Some(filled) = filled.filter(|f| f.done()) {
                self.bufs.recycle(filled.bid());
            }
            return;
        };
        let cancelled = c.recv_cancelled;
        if !more {
            c.recv_armed = false;
            c.recv_cancelled = false;
            self.ops -= 1;
        }
        let mut close = None;
        let mut pause = false;
        if res > 0 {
            self.local.recv_completions += 1;
            if c.closing.is_none() {
                let data = filled.as_ref().map(|f| self.bufs.bytes(f));
                match (data, c.session.as_mut()) {
                    (Some(data), Some(session)) => {
                        self.local.bytes_received += data.len() as u64;
                        match session.on_data(data) {
                            Ok(done) => {
                                self.local.messages_received += done.messages;
                                pause = done.paused && !c.paused;
                            }
                            Err(err) => close = Some(CloseReason::Error(Arc::new(err))),
                        }
                    }
                    (None, _) => close = Some(CloseReason::Error(Arc::new(ConnError::BadBuffer))),
                    (_, None) => {}
                }
                if !more && close.is_none() && !c.paused && !pause {
                    self.rearm.push(slot);
                }
            }
            if let Some(filled) = filled.filter(|f| f.done()) {
                self.bufs.recycle(filled.bid());
            }
        } else if c.closing.is_none() {
            if res == 0 && c.paused {
                c.eof_pending = true;
            } else if res == 0 {
                close = Some(match c.session.as_mut().map(|s| s.on_eof()) {
                    Some(Err(err)) => CloseReason::Error(Arc::new(err)),
                    _ => CloseReason::PeerClosed,
                });
            } else if -res == libc::ENOBUFS {
                self.local.recv_no_buffers += 1;
                if !more && !c.paused {
                    self.rearm.push(slot);
                }
            } else if -res == libc::ECANCELED && (c.paused || cancelled) {
                // Our own cancel after a pause: reading resumes on Command::Resume, or now if
                // that came before this final completion (it could not re-arm then).
                if !more && !c.paused {
                    self.rearm.push(slot);
                }
            } else {
                let err = io::Error::from_raw_os_error(-res);
                close = Some(CloseReason::Error(Arc::new(ConnError::Io(err))));
            }
        }
        if pause {
            c.paused = true;
            if c.recv_armed {
                c.recv_cancelled = true;
                // Stop the multishot receive. Completions already posted still arrive and go to
                // the session, which holds them; nothing in the socket is lost.
                self.push(
                    opcode::AsyncCancel::new(user_data(OP_RECV, slot))
                        .build()
                        .user_data(user_data(OP_CANCEL, slot)),
                );
            }
        }
        match close {
            Some(reason) => self.close_conn(slot, reason),
            None => self.maybe_finalize(slot),
        }
    }

    /// The session's consumer has room: deliver what it held, then read again.
    fn resume_conn(&mut self, slot: u32) {
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !c.paused || c.closing.is_some() {
            return;
        }
        let Some(session) = c.session.as_mut() else {
            return;
        };
        let close = match session.resume() {
            Ok(done) => {
                self.local.messages_received += done.messages;
                if done.paused {
                    return;
                }
                c.paused = false;
                if c.eof_pending {
                    Some(match session.on_eof() {
                        Err(err) => CloseReason::Error(Arc::new(err)),
                        Ok(()) => CloseReason::PeerClosed,
                    })
                } else {
                    None
                }
            }
            Err(err) => Some(CloseReason::Error(Arc::new(err))),
        };
        match close {
            Some(reason) => self.close_conn(slot, reason),
            None => self.arm_recv(slot),
        }
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        self.ops -= 1;
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        c.send_armed = false;
        if res < 0 {
            let err = io::Error::from_raw_os_error(-res);
            self.close_conn(slot, CloseReason::Error(Arc::new(ConnError::Io(err))));
            return;
        }
        self.local.bytes_sent += res as u64;
        c.out.advance(res as usize, &mut self.done);
        c.sendq.complete(&mut self.done, c.out.is_empty());
        if c.closing.is_some() {
            self.maybe_finalize(slot);
        } else {
            self.start_send(slot);
        }
    }

    fn on_accept(&mut self, slot: u32, res: i32, flags: u32) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            return;
        };
        if !cqueue::more(flags) {
            l.armed = false;
            self.ops -= 1;
        }
        let closing = l.closing.is_some();
        if res >= 0 {
            // SAFETY: a successful accept completion carries a new descriptor that nothing
            // else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if !closing {
                self.open_accepted(slot, fd);
            }
        } else if !closing && -res != libc::ECANCELED {
            let err = io::Error::from_raw_os_error(-res);
            tracing::warn!(core = self.shared.index(), %err, "accept failed; retrying shortly");
            if let Some(Some(l)) = self.listeners.get_mut(slot as usize) {
                if !l.armed {
                    l.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                }
            }
            self.arm_timer();
        }
        let rearm_now = matches!(
            self.listeners.get(slot as usize),
            Some(Some(l)) if !l.armed && l.closing.is_none() && l.retry_at.is_none()
        );
        if rearm_now {
            self.arm_accept(slot);
        }
        self.maybe_finish_listener(slot);
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let mut again = false;
        for slot in 0..self.listeners.len() as u32 {
            let due = match &mut self.listeners[slot as usize] {
                Some(l) => match l.retry_at {
                    Some(at) if at <= now => {
                        l.retry_at = None;
                        true
                    }
                    Some(_) => {
                        again = true;
                        false
                    }
                    None => false,
                },
                None => false,
            };
            if due {
                self.arm_accept(slot);
            }
        }
        let ticking = self
            .listeners
            .iter()
            .flatten()
            .any(|l| l.ticks && l.closing.is_none());
        if ticking {
            again = true;
            for slot in 0..self.conns.len() as u32 {
                let reason = match &mut self.conns[slot as usize] {
                    Some(c) if c.closing.is_none() => {
                        c.session.as_mut().and_then(|s| s.on_tick(now))
                    }
                    _ => None,
                };
                if let Some(reason) = reason {
                    self.close_conn(slot, reason);
                }
            }
        }
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                for slot in 0..self.conns.len() as u32 {
                    self.close_conn(slot, CloseReason::Local);
                }
            } else if self.conns.iter().any(Option::is_some) {
                again = true;
            }
        }
        if again && !self.wake_cancelled {
            self.arm_timer();
        }
    }
}

impl Commands for Core {
    fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    fn add_listener(&mut self, id: u64, fd: OwnedFd, acceptor: Arc<dyn Acceptor>) -> bool {
        let slot = match self.listeners.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listeners.push(None);
                self.listeners.len() - 1
            }
        };
        let ticks = acceptor.ticks();
        self.listeners[slot] = Some(ListenerSlot {
            id,
            fd,
            acceptor,
            armed: false,
            retry_at: None,
            closing: None,
            conns: 0,
            ticks,
        });
        self.arm_accept(slot as u32);
        if ticks {
            self.arm_timer();
        }
        true
    }

    fn listener_slot(&self, id: u64) -> Option<u32> {
        self.listeners
            .iter()
            .position(|l| matches!(l, Some(l) if l.id == id))
            .map(|slot| slot as u32)
    }

    fn close_listener(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        Core::close_listener(self, slot, ack);
    }

    fn add_conn(&mut self, fd: OwnedFd, sendq: Arc<SendQueue>, session: Box<dyn Session>) {
        let slot = self.insert_conn(fd, sendq, session, None, true);
        Core::start_send(self, slot);
    }

    fn drains(&self, slot: u32, queue: *const SendQueue) -> bool {
        matches!(self.conns.get(slot as usize), Some(Some(c)) if std::ptr::eq(Arc::as_ptr(&c.sendq), queue))
    }

    fn start_send(&mut self, slot: u32) {
        Core::start_send(self, slot);
    }

    fn resume_conn(&mut self, slot: u32) {
        Core::resume_conn(self, slot);
    }

    fn close_when_flushed(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
            c.close_when_flushed = true;
            c.close_acks.extend(ack);
        }
    }

    fn close_now(&mut self, slot: u32) {
        self.close_conn(slot, CloseReason::Local);
    }

    fn begin_shutdown(&mut self, grace: Duration) {
        Core::begin_shutdown(self, grace);
    }
}
