//! A queue's [`Gate`] (whether it takes writes) and why a push was refused ([`PushError`]).

use std::sync::Arc;

use crate::error::ConnError;

/// Whether a queue takes writes: the engine's side of a connection's life, which the layer
/// above names (a writer's link is up, reconnecting, down or closed).
#[derive(Debug, Clone)]
pub(crate) enum Gate {
    /// A connection is attached or being set up: writes are taken.
    Open,
    /// No connection, and one is expected (a writer reconnecting): writes are taken and wait.
    Reconnecting,
    /// No connection, and none is expected: writes are refused with this error until the queue
    /// is opened again.
    Refusing(Arc<ConnError>),
    /// Closed for good: writes fail.
    Closed,
}

/// Why a push was refused.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The gate refuses writes (the owner may reconnect and retry).
    Down(Arc<ConnError>),
    /// The queue is closed.
    Closed,
    /// The deadline passed while waiting for room.
    TimedOut,
}
