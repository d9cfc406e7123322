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
mod direct;
pub(crate) mod outbox;
mod queue;

use std::sync::Arc;

pub(crate) use queue::SendQueue;

use crate::error::ConnError;

/// Finds frame boundaries in encoded bytes; supplied by the layer that owns the codec.
pub(crate) trait FrameIndex: Send + Sync {
    /// The start of the frame that contains byte `offset` of `buf` (frames start at 0).
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize;
}

/// Whether the queue currently feeds a connection.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// A connection is live or being set up: writes are accepted.
    Up,
    /// The connection failed and a reconnect is under way: writes are still accepted and wait.
    Reconnecting,
    /// The connection failed and nobody reconnects: writes are refused until a reconnect.
    Down(Arc<ConnError>),
    /// Closed for good: writes fail.
    Closed,
}

/// Why a push was refused.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The link is down (the caller may reconnect and retry).
    Down(Arc<ConnError>),
    /// The queue is closed.
    Closed,
    /// The deadline passed while waiting for room.
    TimedOut,
}
