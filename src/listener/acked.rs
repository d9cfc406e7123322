//! A listener's acknowledged mode ([`ListenerConfig::acked`]) and its session table's settings.

use std::sync::Arc;
use std::time::Duration;

use crate::acked::{
    check_framing, AckError, DedupStore, SessionTable, TableConfig, DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_TTL,
};
use crate::listener::config::{AckedListener, ListenerConfig};

impl ListenerConfig {
    /// Acknowledged delivery (default: off): every connection must start with an acknowledged
    /// writer's hello ([`WriterConfig::acked`](crate::WriterConfig::acked), or a peer written
    /// from `docs/acked-protocol.md`); a plain writer's connection is closed with
    /// [`AckError::PlainWriter`]. The listener acknowledges each message once the application
    /// has it (the handler returned, or the channel's consumer took it), drops messages it
    /// delivered already when a writer re-sends them after a reconnect (exactly once while this
    /// process lives), and flags re-sent messages it cannot vouch for after a restart
    /// ([`Conn::possible_duplicate`](crate::Conn::possible_duplicate),
    /// [`Message::possible_duplicate`](crate::Message::possible_duplicate)). Replies written on
    /// its connections reach the writer's `on_message` handler as usual.
    ///
    /// Needs a framing with 4- or 8-byte headers, or a varint (binding fails with
    /// [`AckError::Framing`] otherwise).
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// let listener = Listener::bind(
    ///     ListenerConfig::new("127.0.0.1:5040", |msg, conn| {
    ///         // Returning acknowledges the message (in a batch, soon after).
    ///         println!("{} bytes, possible duplicate: {}", msg.len(), conn.possible_duplicate());
    ///         Ok(())
    ///     })
    ///     .acked(true),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acked(mut self, on: bool) -> Self {
        self.acked = on.then(|| AckedListener {
            table: TableConfig {
                max_sessions: DEFAULT_MAX_SESSIONS,
                ttl: DEFAULT_SESSION_TTL,
                store: None,
            },
        });
        self
    }

    /// In acknowledged mode, the session table's bounds: at most `max_sessions` writer sessions
    /// (default [`DEFAULT_MAX_SESSIONS`](crate::DEFAULT_MAX_SESSIONS)), each forgotten `ttl`
    /// after its last connection closed (default
    /// [`DEFAULT_SESSION_TTL`](crate::DEFAULT_SESSION_TTL), 5 minutes). When the table is
    /// full, the session left longest ago goes; with none to spare, a new session's connection
    /// is refused ([`AckError::TableFull`]). A writer whose session was forgotten is treated as
    /// after a restart: its re-sent messages are flagged. Ignored without
    /// [`acked`](ListenerConfig::acked).
    pub fn ack_sessions(mut self, max_sessions: usize, ttl: Duration) -> Self {
        if let Some(acked) = &mut self.acked {
            acked.table.max_sessions = max_sessions.max(1);
            acked.table.ttl = ttl;
        }
        self
    }

    /// In acknowledged mode, a table of delivered messages that outlives this process (see
    /// [`DedupStore`]). Ignored without [`acked`](ListenerConfig::acked).
    pub fn dedup_store(mut self, store: Arc<dyn DedupStore>) -> Self {
        if let Some(acked) = &mut self.acked {
            acked.table.store = Some(store);
        }
        self
    }

    /// The session table of a listener bound with this configuration, if acknowledged.
    pub(crate) fn session_table(&self) -> Result<Option<Arc<SessionTable>>, AckError> {
        let Some(acked) = &self.acked else {
            return Ok(None);
        };
        check_framing(self.options.framing)?;
        Ok(Some(Arc::new(SessionTable::new(acked.table.clone()))))
    }
}
