//! What the epoll core does for the connection table: registers sockets once, readable and
//! writable, edge-triggered; sends with nonblocking `sendmsg` straight from the outbox; and
//! keeps the ready list of connections to serve next turn without waiting for a new edge
//! (those that hit the per-turn read or send cap while the kernel still had more for them).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

use crate::engine::conns::io::{Io, Sending};
use crate::engine::conns::slab::ConnKey;
use crate::engine::send::direct;
use crate::engine::send::outbox::Outbox;

/// Listener tokens carry this bit; connection tokens are their keys' bits (56 of them).
pub(super) const LISTENER_TAG: usize = 1 << (usize::BITS - 2);

/// A connection's registration and readiness.
#[derive(Default)]
pub(crate) struct Watch {
    registered: bool,
    /// The kernel's send buffer is full: the rest goes out on the writable edge.
    pub(super) write_blocked: bool,
    /// The peer half-closed or the socket has an error: read until EOF or the error even after
    /// a short read.
    pub(super) read_closed: bool,
    /// On the ready list.
    pub(super) queued: bool,
    /// What to do when served from the ready list.
    pub(super) want_read: bool,
    pub(super) want_send: bool,
}

/// The poller and the ready list.
pub(crate) struct Poller {
    pub(super) poll: Poll,
    /// Connections to serve next turn (see the module docs).
    pub(super) ready: Vec<ConnKey>,
    /// Listeners just added: accept what queued up before they were registered.
    pub(super) fresh: Vec<u32>,
}

impl Poller {
    /// Puts `key` on the ready list (once) to be served next turn.
    pub(super) fn schedule(&mut self, key: ConnKey, state: &mut Watch) {
        if !state.queued {
            state.queued = true;
            self.ready.push(key);
        }
    }

    fn register(&self, fd: &OwnedFd, token: Token, interest: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), token, interest)
    }

    fn deregister(&self, fd: &OwnedFd) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&fd.as_raw_fd()));
    }
}

impl Io for Poller {
    type Conn = Watch;
    type Listener = ();

    fn open(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        _credit: u32,
        state: &mut Watch,
    ) -> io::Result<()> {
        // The read passes ask for the credit at each read.
        // Edge-triggered: a socket that is readable already reports so at once.
        self.register(
            fd,
            Token(key.to_u64() as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        state.registered = true;
        Ok(())
    }

    fn read(&mut self, key: ConnKey, _fd: &OwnedFd, _credit: u32, state: &mut Watch) {
        // No edge comes for bytes that arrived while paused: read next turn.
        state.want_read = true;
        self.schedule(key, state);
    }

    fn narrow(&mut self, _key: ConnKey, _credit: u32, _state: &mut Watch) {
        // Nothing in flight: every read asks for the credit.
    }

    fn stop_reading(&mut self, _key: ConnKey, _state: &mut Watch) {
        // Nothing to cancel: the read passes stop at a paused connection.
    }

    fn can_send(&self, state: &Watch) -> bool {
        !state.write_blocked
    }

    fn send(
        &mut self,
        _key: ConnKey,
        fd: &OwnedFd,
        out: &mut Outbox,
        state: &mut Watch,
    ) -> Sending {
        match direct::send_outbox(fd, out) {
            Ok(n) => {
                if n < out.span_len() {
                    // A short send means the kernel's buffer is full (it set SOCK_NOSPACE, so a
                    // writable edge follows when room frees up).
                    state.write_blocked = true;
                }
                Sending::Sent(n)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                state.write_blocked = true;
                Sending::Blocked
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Sending::Sent(0),
            Err(err) => Sending::Failed(err),
        }
    }

    fn send_later(&mut self, key: ConnKey, state: &mut Watch) {
        state.want_send = true;
        self.schedule(key, state);
    }

    fn busy(&self, _state: &Watch) -> bool {
        false
    }

    fn abort(&mut self, _fd: &OwnedFd, _state: &mut Watch) {}

    fn release(&mut self, _key: ConnKey, fd: &OwnedFd, state: &mut Watch) {
        // A ready-list entry left behind carries the old key and finds nothing.
        if state.registered {
            self.deregister(fd);
        }
    }

    fn listen(&mut self, slot: u32, fd: &OwnedFd, _state: &mut ()) -> io::Result<()> {
        // Accepting until `EAGAIN` needs a nonblocking listener. Connections stay blocking,
        // as on io_uring: every call the core makes on them passes `MSG_DONTWAIT`, and a
        // producer thread's direct send may then wait for room inside the kernel.
        socket2::SockRef::from(fd).set_nonblocking(true)?;
        self.register(fd, Token(LISTENER_TAG | slot as usize), Interest::READABLE)?;
        self.fresh.push(slot);
        Ok(())
    }

    fn stop_listening(&mut self, _slot: u32, _state: &mut ()) {}

    fn listener_busy(&self, _state: &()) -> bool {
        false
    }

    fn release_listener(&mut self, _slot: u32, fd: &OwnedFd, _state: &mut ()) {
        self.deregister(fd);
    }

    fn wake_at(&mut self, _at: Instant) {
        // The loop asks the table for its next timer every turn.
    }
}
