//! What a listener and a writer configure alike: [`StreamOptions`] (framing, maximum message
//! size, send queue bound, runtime, handler error policy) and the defaults behind it.
//!
//! [`ListenerConfig`](crate::ListenerConfig) and [`WriterConfig`](crate::WriterConfig) each hold
//! one `StreamOptions`. Their setters for these settings (`framing`, `max_message_size`,
//! `send_queue_bytes`, `runtime`, `on_handler_error`, and `options` to set them all at once) are
//! written once, here, by the `forward_stream_options!` macro, and forward to the setters of
//! `StreamOptions`, which carry the documentation.

use crate::engine::RuntimeConfig;
use crate::frame::Framing;
use crate::stream::handler::HandlerErrorPolicy;

/// The default maximum message size: 8 MiB (as tokio-util's `LengthDelimitedCodec`).
///
/// A framing whose header cannot express it (`U16Be`, `U16Le`) defaults to its own largest
/// length instead (65 535); see [`default_max_message_size`].
///
/// Go BuffStreams defaults to 4096; set [`ListenerConfig::max_message_size`] to the Go side's
/// `MaxMessageSize` when using [`Framing::BuffStreams`], since its header size depends on it.
///
/// [`ListenerConfig::max_message_size`]: crate::ListenerConfig::max_message_size
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 << 20;

/// The maximum message size a listener or writer using `framing` gets when none is set:
/// [`DEFAULT_MAX_MESSAGE_SIZE`], or the framing's largest length if that is smaller.
///
/// ```
/// use buffstreams::{default_max_message_size, Framing};
/// assert_eq!(default_max_message_size(Framing::U32Be), 8 << 20);
/// assert_eq!(default_max_message_size(Framing::U16Be), 65_535);
/// ```
pub fn default_max_message_size(framing: Framing) -> usize {
    match framing.largest_len() {
        Some(largest) => largest.min(DEFAULT_MAX_MESSAGE_SIZE),
        None => DEFAULT_MAX_MESSAGE_SIZE,
    }
}

/// The default bound on bytes queued per writer: 1 MiB. Beyond that a writer waits for the
/// kernel's socket buffer instead of running ahead through memory that falls out of cache.
/// Chosen by measurement against 256 KiB and 4 MiB: see `docs/benchmarks.md`, "Plain writes
/// and the send queue size".
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 1 << 20;

/// The default bound on bytes queued per accepted connection (allocated on its first write):
/// 1 MiB.
pub const DEFAULT_CONN_SEND_QUEUE_BYTES: usize = 1 << 20;

/// The settings a listener and a writer share, held by both
/// [`ListenerConfig`](crate::ListenerConfig) and [`WriterConfig`](crate::WriterConfig).
///
/// Each setter here is also a setter of both configurations; `options` on either sets them all
/// at once (replacing any set before), which keeps the two ends of a stream in step:
///
/// ```
/// use buffstreams::{Framing, ListenerConfig, StreamOptions, WriterConfig};
/// let wire = StreamOptions::default().framing(Framing::Varint).max_message_size(64 * 1024);
/// let listener = ListenerConfig::new("127.0.0.1:5031", |_msg, _conn| Ok(())).options(wire.clone());
/// let writer = WriterConfig::new("127.0.0.1:5031").options(wire);
/// ```
///
/// A setting left unset takes the default of the configuration that holds it.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub(crate) framing: Framing,
    /// `None`: [`default_max_message_size`] of the framing.
    pub(crate) max_message_size: Option<usize>,
    /// `None`: the holding configuration's default.
    pub(crate) send_queue_bytes: Option<usize>,
    /// `None`: the holding configuration's default.
    pub(crate) runtime: Option<RuntimeConfig>,
    pub(crate) policy: HandlerErrorPolicy,
}

impl StreamOptions {
    /// The wire format (the same on both ends). Default: [`Framing::U32Be`].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The largest payload accepted: a peer announcing more is disconnected before anything is
    /// allocated for it, and a writer refuses to write more (or read more back, with a reply
    /// handler). Default: [`default_max_message_size`] of the framing (8 MiB, or 65 535 for the
    /// 16-bit framings).
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = Some(max);
        self
    }

    /// The bound on bytes queued for sending: per writer, waiting plus handed to the core and
    /// not yet taken by the kernel, beyond which `write` waits for room (default
    /// [`DEFAULT_SEND_QUEUE_BYTES`], 1 MiB); per connection a listener accepts, allocated on
    /// its first write (default [`DEFAULT_CONN_SEND_QUEUE_BYTES`], 1 MiB). A single message
    /// larger than the bound is still accepted into an empty queue.
    pub fn send_queue_bytes(mut self, bytes: usize) -> Self {
        self.send_queue_bytes = Some(bytes);
        self
    }

    /// The runtime configuration, for a listener or writer that starts its own runtime
    /// (`Listener::bind`, `Writer::dial`; a [`Manager`](crate::Manager)'s shared runtime is
    /// configured on the manager). Default: [`RuntimeConfig::default`] for a listener, one
    /// unpinned core for a writer.
    pub fn runtime(mut self, runtime: RuntimeConfig) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// What a handler error does (default: log and continue): the listener's handler, or a
    /// writer's reply handler. With a listener's channel, what messages arriving after every
    /// receiver was dropped do: discarded, or their connection closed.
    pub fn on_handler_error(mut self, policy: HandlerErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The maximum message size in effect.
    pub(crate) fn max_len(&self) -> usize {
        self.max_message_size
            .unwrap_or_else(|| default_max_message_size(self.framing))
    }
}

/// Writes the shared setters on a configuration type that has an `options: StreamOptions`
/// field: `framing`, `max_message_size`, `send_queue_bytes`, `runtime`, `on_handler_error`
/// (each forwarding to the [`StreamOptions`] setter of that name) and `options`.
macro_rules! forward_stream_options {
    ($config:ident) => {
        impl $config {
            /// The wire format (the same on both ends); see [`StreamOptions::framing`].
            ///
            /// [`StreamOptions::framing`]: crate::StreamOptions::framing
            pub fn framing(mut self, framing: $crate::frame::Framing) -> Self {
                self.options = self.options.framing(framing);
                self
            }

            /// The largest payload; see [`StreamOptions::max_message_size`].
            ///
            /// [`StreamOptions::max_message_size`]: crate::StreamOptions::max_message_size
            pub fn max_message_size(mut self, max: usize) -> Self {
                self.options = self.options.max_message_size(max);
                self
            }

            /// The bound on bytes queued for sending; see [`StreamOptions::send_queue_bytes`].
            ///
            /// [`StreamOptions::send_queue_bytes`]: crate::StreamOptions::send_queue_bytes
            pub fn send_queue_bytes(mut self, bytes: usize) -> Self {
                self.options = self.options.send_queue_bytes(bytes);
                self
            }

            /// The runtime configuration, when this starts its own runtime; see
            /// [`StreamOptions::runtime`].
            ///
            /// [`StreamOptions::runtime`]: crate::StreamOptions::runtime
            pub fn runtime(mut self, runtime: $crate::engine::RuntimeConfig) -> Self {
                self.options = self.options.runtime(runtime);
                self
            }

            /// What a handler error does; see [`StreamOptions::on_handler_error`].
            ///
            /// [`StreamOptions::on_handler_error`]: crate::StreamOptions::on_handler_error
            pub fn on_handler_error(
                mut self,
                policy: $crate::stream::handler::HandlerErrorPolicy,
            ) -> Self {
                self.options = self.options.on_handler_error(policy);
                self
            }

            /// All the [`StreamOptions`](crate::StreamOptions) at once, replacing any of them
            /// set before.
            pub fn options(mut self, options: $crate::options::StreamOptions) -> Self {
                self.options = options;
                self
            }
        }
    };
}
pub(crate) use forward_stream_options;
