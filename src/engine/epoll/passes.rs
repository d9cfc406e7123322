//! Draining a ready socket on the epoll core: a read pass hands what a connection's socket holds
//! to the table, an accept pass takes every pending connection of a listener.
//!
//! A read shorter than the buffer means the socket is drained: the kernel raises a new edge
//! when more arrives, so no extra syscall is made to see `EAGAIN`.

use std::io;
use std::os::fd::AsFd;

use crate::engine::conns::conn::Flow;
use crate::engine::conns::slab::ConnKey;
use crate::engine::epoll::driver::Core;
use crate::engine::epoll::sys;

/// Reads per connection per turn before it yields to the others (then it goes on the ready
/// list and is served next turn).
const MAX_READS_PER_TURN: u32 = 16;

impl Core {
    /// Reads `key` until its socket is drained (a short read, `EAGAIN`), its session pauses,
    /// or the per-turn cap (then the rest waits on the ready list).
    pub(super) fn read_pass(&mut self, key: ConnKey) {
        let mut reads = 0;
        loop {
            if !self.conns.wants_read(key) {
                return;
            }
            let credit = self.conns.recv_credit(key);
            let Some((fd, state)) = self.conns.io_state(key) else {
                return;
            };
            if reads == MAX_READS_PER_TURN {
                state.want_read = true;
                self.io.schedule(key, state);
                return;
            }
            reads += 1;
            let read_closed = state.read_closed;
            // At most the connection's credit: what a stop leaves waiting in its session.
            let want = (credit as usize).clamp(1, self.buf.len());
            let received = sys::recv(fd.as_fd(), &mut self.buf[..want]);
            let io = &mut self.io;
            match received {
                Ok(0) => {
                    self.conns.eof(key, io);
                    return;
                }
                Ok(n) => {
                    if n == want {
                        self.conns.credit_used_up(key);
                    }
                    match self.conns.data(key, &self.buf[..n], io) {
                        // A short read took everything there was; data arriving after it raises a
                        // new edge.
                        Flow::Read if n < want && !read_closed => return,
                        Flow::Read => {}
                        Flow::Paused | Flow::Closed => return,
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.conns.read_failed(key, err, io);
                    return;
                }
            }
        }
    }

    /// Accepts every pending connection on listener `slot`.
    pub(super) fn accept_pass(&mut self, slot: u32) {
        loop {
            let accepted = match self.conns.accepting(slot) {
                Some((fd, _)) => sys::accept(fd.as_fd()),
                None => return,
            };
            match accepted {
                Ok((fd, peer)) => self.conns.accepted(slot, fd, peer, &mut self.io),
                Err(err) => match err.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    // This connection failed before we took it (see accept(2)): take the next.
                    Some(
                        libc::EINTR
                        | libc::ECONNABORTED
                        | libc::EPROTO
                        | libc::ENETDOWN
                        | libc::ENOPROTOOPT
                        | libc::EHOSTDOWN
                        | libc::ENONET
                        | libc::EHOSTUNREACH
                        | libc::EOPNOTSUPP
                        | libc::ENETUNREACH,
                    ) => {}
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: pause this listener.
                    _ => {
                        self.conns.accept_failed(slot, &err, &mut self.io);
                        return;
                    }
                },
            }
        }
    }
}
