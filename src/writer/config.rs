//! Configuration of a writer: where to dial, framing, queue bound, reconnect policy, and where
//! failed messages go.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    HandlerErrorPolicy, MessageHandler, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SEND_QUEUE_BYTES,
};
use crate::conn::Conn;
use crate::engine::RuntimeConfig;
use crate::error::HandlerError;
use crate::frame::Framing;

/// How to dial and run a writer.
///
/// ```no_run
/// use std::time::Duration;
/// use buffstreams::{Writer, WriterConfig};
/// let writer = Writer::dial(
///     WriterConfig::new("127.0.0.1:5031").connect_timeout(Duration::from_secs(1)),
/// )?;
/// writer.write(b"hello")?;
/// writer.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WriterConfig {
    pub(crate) address: String,
    pub(crate) framing: Framing,
    pub(crate) max_message_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) send_queue_bytes: usize,
    pub(crate) handler: Option<MessageHandler>,
    pub(crate) policy: HandlerErrorPolicy,
    pub(crate) runtime: RuntimeConfig,
}

impl WriterConfig {
    /// Dial `address`. Defaults: u32 big-endian length prefix, 8 MiB maximum, 5 s connect
    /// timeout, 4 MiB send queue.
    pub fn new(address: impl Into<String>) -> WriterConfig {
        WriterConfig {
            address: address.into(),
            framing: Framing::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(5),
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            handler: None,
            policy: HandlerErrorPolicy::default(),
            runtime: RuntimeConfig {
                cores: 1,
                pin: false,
                recv_buffers: 16,
                ..RuntimeConfig::default()
            },
        }
    }

    /// The wire format (the same on both ends).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The largest payload written (and read back, if a reply handler is set).
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// How long a (re)connect may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound on queued bytes; `write` waits for room beyond it (default 4 MiB).
    pub fn send_queue_bytes(mut self, bytes: usize) -> Self {
        self.send_queue_bytes = bytes;
        self
    }

    /// Handle messages the peer sends back (replies), on the owning core.
    pub fn on_message<F>(mut self, handler: F) -> Self
    where
        F: Fn(&[u8], &Conn) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// What a reply handler error does (default: log and continue).
    pub fn on_handler_error(mut self, policy: HandlerErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The runtime configuration, for a writer that starts its own runtime (default: one
    /// unpinned core).
    pub fn runtime(mut self, runtime: RuntimeConfig) -> Self {
        self.runtime = runtime;
        self
    }
}
