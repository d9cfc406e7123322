//! The seam between the engine and what runs over a connection.
//!
//! The engine moves bytes; a [`Session`] (built by the listener or writer layer, which owns the
//! codec and the user's handler) turns received bytes into messages. The engine never sees a
//! frame format.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::engine::core::CoreShared;
use crate::engine::sendq::SendQueue;
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

/// Per-connection protocol logic, run on the owning core.
pub(crate) trait Session: Send {
    /// Bytes arrived. Returns how many messages they completed, or the error that closes the
    /// connection.
    fn on_data(&mut self, data: &[u8]) -> Result<u64, ConnError>;

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
