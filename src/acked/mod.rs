//! Acknowledged delivery: an opt-in mode in which a listener acknowledges what its application
//! has, and a writer keeps every message until acknowledged, re-sending the rest after a
//! reconnect. Exactly once while the listener process lives, at least once (re-sent messages
//! flagged) across its restarts. The protocol: `docs/acked-protocol.md`.
//!
//! - `wire.rs`: the protocol's bytes (no I/O).
//! - `sequencer.rs`: a listener connection's numbering of frames.
//! - `table.rs`: a listener's session table, and the [`DedupStore`] seam.
//! - `listen.rs`: the listener's session (hello, reply, acks).
//! - `write.rs`: the writer's session (reply, acks, tagged replies).
//! - `error.rs`: [`AckError`].
//!
//! The engine knows none of it: a writer's queue numbers frames, keeps what was sent until
//! [`ack`](crate::engine::handle::SendQueueHandle::ack) releases it, and puts this layer's hello
//! first on each connection.

pub(crate) mod conn_ack;
pub(crate) mod error;
mod listen;
pub(crate) mod sequencer;
mod table;
pub(crate) mod wire;
mod write;

pub use error::AckError;
pub(crate) use listen::AckedListenerSession;
pub use table::DedupStore;
pub(crate) use table::{SessionTable, TableConfig};
pub use wire::SessionId;
pub(crate) use wire::{check_framing, Hello};
pub(crate) use write::{AckedWriterSession, Refusal};

/// Sessions a listener's table holds by default.
pub const DEFAULT_MAX_SESSIONS: usize = 65_536;
/// How long a listener remembers a session no connection owns, by default.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A writer's counters in acknowledged mode ([`Writer::acked_stats`](crate::Writer::acked_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AckedStats {
    /// The last message acknowledged (messages are numbered from 1 in write order).
    pub acked: u64,
    /// Messages written so far.
    pub written: u64,
    /// Messages sent again after reconnects (they were sent before and not acknowledged), each
    /// counted once however many reconnects it took.
    pub resent: u64,
}

/// A random session id (the kernel's random source; the clock and the process id if it fails).
pub(crate) fn new_session_id() -> SessionId {
    let mut id = [0u8; 16];
    // SAFETY: `id` is a writable buffer of `id.len()` bytes for the call's duration.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id = (t ^ (u128::from(std::process::id()) << 64)).to_be_bytes();
    }
    id
}
