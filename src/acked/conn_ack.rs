//! The acknowledged side of a listener's connection, held by its [`Conn`](crate::Conn): a leaf
//! (the session behind it is reached through [`AckSink`]), so that the connection and the
//! session table, which holds connections, need not import each other.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// Where a channel consumer's take of a message goes: its writer session's acknowledgements.
pub(crate) trait AckSink: Send + Sync {
    /// Message `seq` (`len` payload bytes) was taken; `drained`: the channel is empty now.
    fn taken(&self, seq: u64, len: usize, drained: bool);
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct ConnAck {
    /// The reply to the hello is queued: writes may follow it.
    pub(crate) ready: Arc<AtomicBool>,
    /// The message being handled is flagged.
    pub(crate) dup: AtomicBool,
    /// The writer session, once the hello named it.
    pub(crate) session: OnceLock<Arc<dyn AckSink>>,
}

impl ConnAck {
    /// A channel consumer took message `seq`: acknowledge when due.
    pub(crate) fn taken(&self, seq: u64, len: usize, drained: bool) {
        if let Some(sink) = self.session.get() {
            sink.taken(seq, len, drained);
        }
    }
}
