//! Per-core counters: kept in plain integers by the core and published once per loop turn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{CloseReason, ConnError};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A snapshot of one core's counters (monotonic since the runtime started, except
        /// `connections`, which is the number open now).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct CoreStats {
            /// Index of the core.
            pub core: usize,
            $($(#[$doc])* pub $name: u64,)*
        }

        /// The published copy, readable from any thread.
        #[derive(Default)]
        pub(crate) struct SharedCounters {
            $($name: AtomicU64,)*
        }

        impl SharedCounters {
            /// Publishes the core's private counters (one relaxed store each).
            pub(crate) fn publish(&self, local: &CoreStats) {
                $(self.$name.store(local.$name, Ordering::Relaxed);)*
            }

            /// Reads a snapshot.
            pub(crate) fn snapshot(&self, core: usize) -> CoreStats {
                CoreStats { core, $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Connections accepted by this core's listening sockets.
    accepted,
    /// Connections (accepted or dialed) open on this core now.
    connections,
    /// Connections closed with an error (bad frame, socket error, handler failure).
    conn_errors,
    /// Connections closed by the listener's idle timeout.
    idle_timeouts,
    /// Connections closed by the listener's frame timeout.
    frame_timeouts,
    /// Connections accepted over the listener's `max_connections` and closed at once (not in
    /// `accepted`).
    refused,
    /// Messages delivered to handlers.
    messages_received,
    /// Payload and framing bytes received.
    bytes_received,
    /// Receive completions with data (io_uring: one per kernel-filled ring buffer; epoll: one
    /// per `recv` that returned data).
    recv_completions,
    /// io_uring: times the buffer ring ran dry and a multishot receive had to be re-armed
    /// (always 0 on epoll).
    recv_no_buffers,
    /// Bytes handed to the kernel by sends.
    bytes_sent,
    /// Send operations submitted.
    sends,
    /// Kernel calls the loop made to submit and wait (`io_uring_enter` or `epoll_wait`),
    /// busy polling's included.
    enters,
    /// Of those, the waits that could block: the core had announced it would sleep and waited
    /// for an event (it may still have returned at once, if one was already there).
    sleeps,
    /// Times the core ran out of work and busy polled before sleeping
    /// ([`RuntimeConfig::busy_poll`](crate::RuntimeConfig::busy_poll); always 0 without it).
    busy_polls,
    /// Of those, the ones that found work within the window, so the core did not sleep (the
    /// others ended in a sleep, counted in `sleeps`).
    busy_poll_hits,
    /// Loop turns.
    turns,
}

impl CoreStats {
    /// Counts a connection that ended for `reason`; returns the error its send queue reports to
    /// later writes (`None`: plainly closed).
    pub(crate) fn count_close(&mut self, reason: &CloseReason) -> Option<Arc<ConnError>> {
        self.connections = self.connections.saturating_sub(1);
        match reason {
            CloseReason::Error(err) => {
                self.conn_errors += 1;
                Some(err.clone())
            }
            CloseReason::PeerClosed => Some(Arc::new(ConnError::PeerClosed)),
            CloseReason::IdleTimeout(_) => {
                self.idle_timeouts += 1;
                None
            }
            CloseReason::FrameTimeout(_) => {
                self.frame_timeouts += 1;
                None
            }
            CloseReason::Local => None,
        }
    }
}
