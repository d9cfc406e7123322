//! A writer's acknowledged mode ([`WriterConfig::acked`]): the settings, and
//! [`Writer::flush_acked`] / [`Writer::acked_stats`]. The hello and the session that reads the
//! listener's acknowledgements are `crate::acked`'s; the kept messages, the engine's queue's.

use crate::acked::{AckedStats, Hello, SessionId};
use crate::engine::handle::SendQueueHandle;
use crate::error::WriteError;
use crate::writer::config::WriterConfig;
use crate::writer::dial::Writer;

/// A writer's default [`WriterConfig::max_unacked_bytes`]: 4 MiB.
pub const DEFAULT_MAX_UNACKED_BYTES: usize = 4 << 20;

impl WriterConfig {
    /// Acknowledged delivery (default: off). The writer keeps every message until the listener
    /// (which must be configured with [`ListenerConfig::acked`](crate::ListenerConfig::acked))
    /// acknowledges that its application has it, and after a reconnect sends again what was not
    /// acknowledged. The listener delivers each message exactly once while its process lives,
    /// and at least once across its restarts (re-sent messages it cannot vouch for are flagged,
    /// [`Conn::possible_duplicate`](crate::Conn::possible_duplicate)). If the retry policy gives
    /// up, every message not acknowledged goes to [`WriterConfig::on_failed`]. The protocol:
    /// `docs/acked-protocol.md`.
    ///
    /// Needs a framing with 4- or 8-byte headers, or a varint (not `U16*` nor `Delimited`:
    /// dialing fails with [`AckError::Framing`](crate::AckError::Framing)).
    ///
    /// ```no_run
    /// use buffstreams::{RetryPolicy, Writer, WriterConfig};
    /// let writer = Writer::dial(
    ///     WriterConfig::new("127.0.0.1:5040")
    ///         .acked(true)
    ///         .retry(RetryPolicy::forever()),
    /// )?;
    /// writer.write(b"event 1")?;
    /// writer.flush_acked()?; // the listener's application has it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acked(mut self, on: bool) -> Self {
        self.acked = on;
        self
    }

    /// In acknowledged mode, the bound on bytes written and not yet acknowledged (default
    /// [`DEFAULT_MAX_UNACKED_BYTES`]): at the bound `write` waits and `try_write` fails with
    /// `Full`. It replaces the send queue's bound
    /// ([`send_queue_bytes`](WriterConfig::send_queue_bytes)), which then counts what waits
    /// for acknowledgement as well as what waits to be sent.
    pub fn max_unacked_bytes(mut self, bytes: usize) -> Self {
        self.max_unacked_bytes = Some(bytes);
        self
    }

    /// The send queue's bound in effect in acknowledged mode.
    pub(crate) fn unacked_bytes_in_effect(&self) -> usize {
        self.max_unacked_bytes.unwrap_or(DEFAULT_MAX_UNACKED_BYTES)
    }
}

impl Writer {
    /// Returns once every message written so far was acknowledged: the listener's application
    /// has it (its handler returned, or its channel's consumer took it). Waits through
    /// reconnects; fails like [`Writer::flush`] (the retry policy gave up, or the writer was
    /// closed), and with [`WriteError::NotAcked`] on a writer without
    /// [`acked`](WriterConfig::acked).
    ///
    /// In acknowledged mode [`Writer::flush`] waits for the same.
    pub fn flush_acked(&self) -> Result<(), WriteError> {
        if self.inner.acked.is_none() {
            return Err(WriteError::NotAcked);
        }
        self.flush()
    }

    /// The writer's acknowledgement counters; `None` without [`acked`](WriterConfig::acked).
    pub fn acked_stats(&self) -> Option<AckedStats> {
        let counts = self.inner.out.sendq.ack_counts()?;
        Some(AckedStats {
            acked: counts.acked,
            written: counts.queued,
            resent: counts.resent,
        })
    }
}

/// Before a connection is attached: puts the hello for `session` first in `sendq`.
pub(crate) fn say_hello(sendq: &SendQueueHandle, session: SessionId) {
    sendq.resume_acked(|resume| {
        Hello {
            session,
            first_seq: resume.first_seq,
            first_new: resume.first_new,
        }
        .to_bytes()
        .to_vec()
    });
}
