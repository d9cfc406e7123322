//! What a backend does for the table ([`Io`]: arm a receive, start a send, stop reading, end
//! what is in flight, stop watching a socket), how a send went ([`Sending`]), and how many sends
//! one connection makes in a row.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::engine::conns::slab::ConnKey;
use crate::engine::send::outbox::Outbox;

/// What a backend does for the table: the I/O of one core.
pub(crate) trait Io {
    /// The backend's own state of a connection (operations in flight, registration).
    type Conn: Default;
    /// The backend's own state of a listener.
    type Listener: Default;

    /// A connection joined the table: start watching its socket (epoll registers it; io_uring
    /// arms its receive, limited to `credit` bytes; see
    /// [`credit`](crate::engine::conns::credit)). An error closes it.
    fn open(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        credit: u32,
        state: &mut Self::Conn,
    ) -> io::Result<()>;
    /// Its reader has room again: read it (io_uring re-arms the receive, limited to `credit`
    /// bytes; epoll reads it on its next turn, which also finds an EOF that came meanwhile).
    fn read(&mut self, key: ConnKey, fd: &OwnedFd, credit: u32, state: &mut Self::Conn);
    /// It may now be handed only `credit` bytes at a time: a receive in flight that may deliver
    /// more ends and is re-armed within it (io_uring; epoll asks for the credit at every read).
    fn narrow(&mut self, key: ConnKey, credit: u32, state: &mut Self::Conn);
    /// Its reader is full: stop reading until [`Io::read`] (io_uring cancels the multishot
    /// receive; what it had already posted still arrives and is held by the session).
    fn stop_reading(&mut self, key: ConnKey, state: &mut Self::Conn);
    /// Whether a send may start (none in flight, the socket not known to be full).
    fn can_send(&self, state: &Self::Conn) -> bool;
    /// Sends the unsent bytes of `out`, which stays unchanged until the send is over.
    fn send(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        out: &mut Outbox,
        state: &mut Self::Conn,
    ) -> Sending;
    /// [`MAX_SENDS_PER_CALL`] sends went out and bytes may be left: come back to it soon
    /// (another connection's turn first).
    fn send_later(&mut self, key: ConnKey, state: &mut Self::Conn);
    /// Whether the kernel still has operations on it, which keep it from being released.
    fn busy(&self, state: &Self::Conn) -> bool;
    /// It is closing while busy: make the operations in flight end (their completions follow).
    fn abort(&mut self, fd: &OwnedFd, state: &mut Self::Conn);
    /// It is released: stop watching the socket, which is closed right after.
    fn release(&mut self, key: ConnKey, fd: &OwnedFd, state: &mut Self::Conn);

    /// A listening socket joined the table as `slot`: accept on it. An error refuses it.
    fn listen(&mut self, slot: u32, fd: &OwnedFd, state: &mut Self::Listener) -> io::Result<()>;
    /// Stop accepting on it: it is closing.
    fn stop_listening(&mut self, slot: u32, state: &mut Self::Listener);
    /// Whether an accept is still in flight on it, which keeps it from being released.
    fn listener_busy(&self, state: &Self::Listener) -> bool;
    /// It is released: stop watching the socket, which is closed right after.
    fn release_listener(&mut self, slot: u32, fd: &OwnedFd, state: &mut Self::Listener);
    /// A timer is due at `at` (a tick, an accept retry, the shutdown deadline).
    fn wake_at(&mut self, at: Instant);
}

/// How a send went.
#[derive(Debug)]
pub(crate) enum Sending {
    /// Submitted: [`Conns::sent`](crate::engine::conns::table::Conns::sent) follows with the
    /// result.
    Pending,
    /// The kernel took this many bytes now (if fewer than asked, the socket is full and the
    /// backend waits until it has room before [`Io::can_send`] says yes again).
    Sent(usize),
    /// The socket is full; nothing was sent.
    Blocked,
    /// The connection failed.
    Failed(io::Error),
}

/// Sends one connection may make in a row before the others get their turn.
pub(crate) const MAX_SENDS_PER_CALL: u32 = 16;
