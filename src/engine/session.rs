//! The seam between the engine and what runs over a connection.
//!
//! The engine moves bytes; a [`Session`] (built by the listener or writer layer, which owns the
//! codec and the user's handler) turns received bytes into messages. The engine never sees a
//! frame format.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::engine::core::{next_conn_id, CoreShared};
use crate::engine::send::SendQueue;
use crate::error::{CloseReason, ConnError};

/// Identity of one connection, fixed for its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    /// Unique (per process) connection id.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// This side's address.
    pub local: SocketAddr,
    /// Index of the core that owns the connection.
    pub core: usize,
}

/// What a session did with the bytes it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Messages handed to the user.
    pub(crate) messages: u64,
    /// The consumer is full: stop reading this connection until [`Command::Resume`]. Bytes
    /// already given (and any the driver must still hand over) are kept by the session.
    ///
    /// [`Command::Resume`]: crate::engine::core::Command::Resume
    pub(crate) paused: bool,
}

impl ConnInfo {
    /// The identity of a socket a listener on `core` just accepted, giving it a new id; `peer`
    /// when accept already reported it. `None` if the peer already went away (then nothing was
    /// received and nothing is owed).
    pub(crate) fn accepted(
        fd: &OwnedFd,
        peer: Option<SocketAddr>,
        core: usize,
    ) -> Option<ConnInfo> {
        let sock = socket2::SockRef::from(fd);
        let peer = match peer {
            Some(peer) => peer,
            None => sock.peer_addr().ok()?.as_socket()?,
        };
        let local = sock.local_addr().ok()?.as_socket()?;
        Some(ConnInfo {
            id: next_conn_id(),
            peer,
            local,
            core,
        })
    }
}

/// Per-connection protocol logic, run on the owning core.
///
/// Drivers call `on_data` for every received chunk, even while paused (data that was already
/// in flight when reading stopped): the session keeps what it cannot deliver.
pub(crate) trait Session: Send {
    /// Bytes arrived. Returns what was delivered, or the error that closes the connection.
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError>;

    /// The consumer has room again: deliver what was held back. `paused` in the result means
    /// it filled up again.
    fn resume(&mut self) -> Result<Delivered, ConnError>;

    /// The peer closed its side. Returns an error if that cut a message short.
    fn on_eof(&mut self) -> Result<(), ConnError>;

    /// The connection is gone and its queue detached (called once, last).
    fn on_close(self: Box<Self>, reason: &CloseReason);
}

/// Builds the session and queue for each connection a listener accepts.
pub(crate) trait Acceptor: Send + Sync {
    /// A connection was accepted on `core`.
    fn open(&self, info: ConnInfo, core: &Arc<CoreShared>) -> (Arc<SendQueue>, Box<dyn Session>);
}
