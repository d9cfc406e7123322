//! A connection's entry in the table ([`Entry`]: its socket, session, queue and state) and who
//! opened it ([`Opener`]); its transitions are in `conn.rs`.

use std::os::fd::OwnedFd;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::engine::conns::credit::RecvCredit;
use crate::engine::core::SendQueue;
use crate::engine::send::outbox::Outbox;
use crate::engine::session::Session;
use crate::error::CloseReason;

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opener {
    /// A writer dialed it: its queue outlives it and may reconnect.
    Writer,
    /// The listener in this slot accepted it.
    Listener(u32),
}

/// A connection's entry in the table: its socket, session, queue and state.
pub(crate) struct Entry<X> {
    /// Shared with the send queue while attached (for producers' direct sends): the socket
    /// closes when the last holder lets go.
    pub(super) fd: Arc<OwnedFd>,
    /// `None` only once it has been told the connection closed.
    pub(super) session: Option<Box<dyn Session>>,
    pub(super) sendq: Arc<SendQueue>,
    /// The chunks the kernel is sending from; they stay here, unmoved, until the send is over.
    pub(super) out: Outbox,
    pub(super) opener: Opener,
    /// The session's consumer is full: nothing is read until it resumes.
    pub(super) paused: bool,
    /// How much the kernel may hand it before the core looks (see
    /// [`credit`](crate::engine::conns::credit)).
    pub(super) credit: RecvCredit,
    /// The peer's EOF arrived while paused; handled after the held-back data is delivered.
    pub(super) eof_pending: bool,
    /// Closing, for this reason (the first one given wins).
    pub(super) closing: Option<CloseReason>,
    /// Close once everything queued is sent.
    pub(super) close_when_flushed: bool,
    /// On a sealed connection closing once flushed: its sealer's last words (TLS
    /// `close_notify`) were queued.
    pub(super) said_goodbye: bool,
    /// They were sent: its sending side is shut, and it reads on until the peer closes too.
    pub(super) lingering: bool,
    pub(super) close_acks: Vec<SyncSender<()>>,
    /// The backend's own state.
    pub(super) io: X,
}
