//! The send path: producers frame messages straight into chunks of send memory
//! ([`chunk`]), a connection's [`SendQueue`] orders those chunks and bounds them, and the core
//! hands whole chunks to the kernel through one `sendmsg` ([`outbox`]).
//!
//! Per message a producer takes the queue's lock once (uncontended: two atomic instructions),
//! copies the frame in wire format into the open chunk, and lets go. Everything else happens
//! per chunk or per send: the core takes every waiting chunk at once and the kernel reads them
//! where the producer wrote them, so each byte is copied once in user space. Chunks come from
//! and return to a per-core pool.

pub(crate) mod chunk;
pub(in crate::engine) mod direct;
pub(crate) mod outbox;
mod queue;

use std::sync::Arc;

pub(in crate::engine) use queue::SendQueue;

use crate::error::ConnError;

/// Finds frame boundaries in encoded bytes; supplied by the layer that owns the codec.
pub(crate) trait FrameIndex: Send + Sync {
    /// The start of the frame that contains byte `offset` of `buf` (frames start at 0).
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize;
}

/// Bytes to queue whole, encoded by the layer above (a prepared frame): the engine knows no
/// codec, only how long the bytes are and how to copy them into send memory.
pub(crate) trait Encoded {
    /// Bytes it takes in the queue.
    fn len(&self) -> usize;
    /// Writes it at the start of `dst` (at least [`len`](Encoded::len) bytes); returns its length.
    fn write_to(&self, dst: &mut [u8]) -> usize;
}

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
