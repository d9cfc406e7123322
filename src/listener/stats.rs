//! [`ListenerStats`]: one listener's own counters, whatever else shares its runtime.

use crate::acked::SessionTable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::CloseReason;
use crate::stream::tally::Tally;

/// A snapshot of one listener's counters, monotonic since it was bound except `connections`.
/// [`Runtime::stats`](crate::Runtime::stats) has the per-core counters of the whole runtime
/// (bytes, sends, kernel calls), which a runtime shared by several listeners and writers adds up
/// across all of them.
///
/// ```no_run
/// # fn demo(listener: &buffstreams::Listener) {
/// let stats = listener.stats();
/// println!("{} open, {} messages", stats.connections, stats.messages_received);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted (those refused by `max_connections` excluded).
    pub accepted: u64,
    /// Connections accepted over [`max_connections`](crate::ListenerConfig::max_connections)
    /// and closed at once.
    pub refused: u64,
    /// Connections closed with an error (bad frame, socket error, handler failure).
    pub conn_errors: u64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed by the frame timeout.
    pub frame_timeouts: u64,
    /// Messages delivered to the handler or the channel.
    pub messages_received: u64,
    /// TLS handshakes that failed or timed out (their connections were closed before they
    /// counted as accepted).
    pub handshake_failures: u64,
    /// Acknowledged mode: writer sessions in the session table now.
    pub ack_sessions: u64,
    /// Acknowledged mode: re-sent messages dropped because they were delivered already.
    pub duplicates_dropped: u64,
    /// Acknowledged mode: messages delivered flagged as possible duplicates.
    pub possible_duplicates: u64,
}

/// The live counters behind [`ListenerStats`]: touched per connection, except `messages`,
/// which each core adds to once per batch of received bytes.
pub(crate) struct ListenerCounters {
    accepted: AtomicU64,
    refused: AtomicU64,
    conn_errors: AtomicU64,
    idle_timeouts: AtomicU64,
    frame_timeouts: AtomicU64,
    handshake_failures: AtomicU64,
    pub(crate) messages: Arc<Tally>,
    /// Acknowledged mode's session table.
    sessions: Option<Arc<SessionTable>>,
}

impl ListenerCounters {
    pub(crate) fn new(cores: usize, sessions: Option<Arc<SessionTable>>) -> ListenerCounters {
        ListenerCounters {
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            conn_errors: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            frame_timeouts: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            messages: Arc::new(Tally::new(cores)),
            sessions,
        }
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake failed (only with the `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection that closed for `reason`.
    pub(crate) fn closed(&self, reason: &CloseReason) {
        let counter = match reason {
            CloseReason::Error(_) => &self.conn_errors,
            CloseReason::IdleTimeout(_) => &self.idle_timeouts,
            CloseReason::FrameTimeout(_) => &self.frame_timeouts,
            CloseReason::PeerClosed | CloseReason::Local => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, with `connections` open now.
    pub(crate) fn snapshot(&self, connections: usize) -> ListenerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ListenerStats {
            connections: connections as u64,
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            conn_errors: get(&self.conn_errors),
            idle_timeouts: get(&self.idle_timeouts),
            frame_timeouts: get(&self.frame_timeouts),
            messages_received: self.messages.sum(),
            handshake_failures: get(&self.handshake_failures),
            ack_sessions: self.sessions.as_ref().map_or(0, |t| t.len() as u64),
            duplicates_dropped: self.sessions.as_ref().map_or(0, |t| t.dropped()),
            possible_duplicates: self.sessions.as_ref().map_or(0, |t| t.flagged()),
        }
    }
}
