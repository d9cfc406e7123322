//! # buffstreams
//!
//! Length-prefixed messages (Protocol Buffers, or any bytes) over TCP or Unix domain sockets
//! ([`Endpoint`]), on per-core io_uring runtimes with an epoll fallback, for Linux. The Rust successor of the Go library
//! BuffStreams: a header before every message carries its size; the library adds it on write
//! and strips it on read. It never touches protobuf itself: you hand it bytes, it hands you
//! bytes.
//!
//! - A [`Listener`] binds one `SO_REUSEPORT` socket per core on the same address; each core
//!   accepts, owns its connections, receives through multishot receives over a kernel-registered
//!   buffer ring, and calls your handler with each complete message (`&[u8]`, borrowed from the
//!   receive buffer without a copy when the frame lies in one buffer). The handler gets a
//!   [`Conn`] to reply on.
//! - A [`Writer`] dials an address and writes messages from any number of threads; frames never
//!   interleave, and many small frames share one `send`. After a failure it reconnects in the
//!   background, per its [`RetryPolicy`], and re-sends what the kernel never took.
//!   [`Writer::write_with`] encodes in place, [`Writer::write_batch`] frames many messages at
//!   once, and a [`BufferedWriter`] ([`Writer::buffered`]) batches like `std::io::BufWriter`
//!   and sends from its own thread: the fastest way to stream.
//! - A [`Manager`] keeps listeners and writers by address on one shared [`Runtime`], with
//!   writers sharded to cores by a hash of their address.
//! - [`ListenerConfig::with_channel`] delivers messages to a bounded channel
//!   ([`MessageReceiver`]) instead of a callback; a lagging consumer pauses reading so TCP
//!   pushes back.
//! - The [`frame`] module is the sans-I/O codec, usable on its own: it is the crate
//!   `buffstreams-frame`, which needs only `bytes` (and `libc` for large frames).
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use buffstreams::{Listener, ListenerConfig, Writer, WriterConfig};
//!
//! let received = Arc::new(AtomicU64::new(0));
//! let counter = received.clone();
//! let listener = Listener::bind(ListenerConfig::new("127.0.0.1:0", move |msg, _conn| {
//!     counter.fetch_add(msg.len() as u64, Ordering::Relaxed);
//!     Ok(())
//! }))?;
//! let writer = Writer::dial(WriterConfig::new(listener.local_addr().to_string()))?;
//! writer.write(b"hello")?;
//! writer.close()?;
//! listener.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Guarantees
//!
//! - **Order.** Messages written by one thread to one writer arrive in that order. Frames
//!   written concurrently from several threads never interleave. A listener's handler sees each
//!   connection's messages in order, on the core that owns the connection. A [`Manager`] keeps
//!   per-address order: every write to an address goes through one core's queue.
//! - **Delivery** means *handed to the local kernel*: [`Writer::flush`] returns when everything
//!   accepted so far was passed to `send`. TCP does not tell whether the peer application read
//!   it.
//! - **Nothing accepted is lost silently.** If a connection fails, frames the kernel did not
//!   take go back to the front of the writer's queue (a frame cut in the middle is re-sent
//!   whole), and the [`RetryPolicy`] reconnects in the background (exponential back-off with
//!   jitter; by default 8 attempts, 20 ms doubling to 2 s) while new writes keep queueing. If it
//!   gives up, every queued message is handed back to [`WriterConfig::on_failed`] with the
//!   reason, and the next write tries one reconnect itself ([`WriteError::Reconnect`] if that
//!   fails). [`RetryPolicy::never`] gives Go BuffStreams' behaviour: no background retries, the
//!   next write reconnects. [`Writer::close`] returns what could not be sent as an [`Unsent`]
//!   error, [`Manager::shutdown`] in its report; for accepted connections unsent messages go to
//!   [`ListenerConfig::on_close`].
//! - **Across a reconnect** the frames re-sent are whole and keep their order: the new
//!   connection carries no torn frame and no duplicate. **Not guaranteed:** bytes the local
//!   kernel had already accepted on a connection that then failed are gone with it; TCP gives
//!   no way to know whether the peer read them, so the peer may miss messages written before
//!   the failure.
//!   The soak (`docs/soak.md`) checks that nothing is duplicated, reordered, or both received
//!   and handed back, and that losses happen only at such unclean connection ends.
//! - **Back-pressure.** Each send queue is bounded ([`DEFAULT_SEND_QUEUE_BYTES`] per writer,
//!   [`DEFAULT_CONN_SEND_QUEUE_BYTES`] per accepted connection, allocated on its first write;
//!   `send_queue_bytes` on either config). [`Writer::write`] waits for room,
//!   [`Writer::try_write`] returns `Full` with the message, [`Writer::write_async`] waits
//!   without blocking a thread. Inside a handler, where waiting would stall the core, a write
//!   returns [`WriteError::Full`] instead. A [`BufferedWriter`] holds at most its batch
//!   (64 KiB-1 MiB) besides. A full channel stops its connection from reading.
//! - **Handlers.** An error is logged and reading goes on
//!   ([`HandlerErrorPolicy::LogAndContinue`], the default, as in Go BuffStreams) or closes the
//!   connection ([`HandlerErrorPolicy::Close`]). A panic in a handler closes that connection;
//!   the core keeps running.
//!
//! ## Limits for untrusted peers
//!
//! A listener's memory and time are bounded by its configuration, never by what peers announce.
//! Each limit is a [`ListenerConfig`] setter; what they closed or refused is counted in
//! [`Listener::stats`] ([`ListenerStats`]).
//!
//! | limit | default | over it |
//! |---|---|---|
//! | [`max_message_size`](ListenerConfig::max_message_size) | [`DEFAULT_MAX_MESSAGE_SIZE`], 8 MiB (65 535 for `U16*`: [`default_max_message_size`]) | the connection closes before anything is allocated |
//! | [`partial_frame_budget`](ListenerConfig::partial_frame_budget) | [`DEFAULT_PARTIAL_FRAME_BUDGET`], 64 MiB per listener | frames over 16 KiB split across receives reserve their announced length first; when it is short, that connection stops reading until others finish |
//! | [`partial_frame_budget_policy`](ListenerConfig::partial_frame_budget_policy) | [`BudgetPolicy::Wait`] | [`BudgetPolicy::CloseLargest`] closes the connection holding the most ([`ConnError::OverBudget`]) |
//! | [`frame_timeout`](ListenerConfig::frame_timeout) | [`DEFAULT_FRAME_TIMEOUT`], 30 s | a frame not finished in time closes its connection ([`CloseReason::FrameTimeout`]) |
//! | [`idle_timeout`](ListenerConfig::idle_timeout) | none | no byte for that long closes the connection ([`CloseReason::IdleTimeout`]) |
//! | [`max_connections`](ListenerConfig::max_connections) | none (`RLIMIT_NOFILE`) | connections over it are accepted and closed at once |
//!
//! A malformed frame (over the maximum, a varint that does not end, a negative or badly padded
//! BuffStreams header, a stream that ends inside a frame) closes that connection only, with
//! [`ConnError::Frame`]. What stopped connections keep is bounded too
//! ([`Listener::held_bytes`]): a few KiB each under pressure. The details and measurements are
//! in `docs/limits.md` in the repository.
//!
//! ## Wire formats
//!
//! A [`Framing`], the same on both ends, says how each message's extent is marked. The length
//! counts the payload only, never the header.
//!
//! - [`Framing::U32Be`] (the default, as tokio-util's `LengthDelimitedCodec`),
//!   [`Framing::U32Le`], [`Framing::U16Be`], [`Framing::U16Le`], [`Framing::U64Be`],
//!   [`Framing::U64Le`]: a fixed-width length before each message.
//! - [`Framing::Varint`]: an unsigned LEB128 length, protobuf's "delimited" convention (prost's
//!   `encode_length_delimited`, Java's `writeDelimitedTo`).
//! - [`Framing::BuffStreams`]: the Go BuffStreams 2.x header, whose width follows the maximum
//!   message size, which must match the Go side's.
//! - [`Framing::Delimited`]: no header; a terminating byte the payload must not contain.
//!
//! The [`frame`] module draws each layout byte by byte and holds the codec
//! ([`frame::Codec`], [`frame::Decoder`]).
//!
//! ## Kernel requirements
//!
//! The io_uring engine needs Linux [`MIN_KERNEL`] (6.0) or newer: multishot receive with a
//! provided-buffer ring. Where io_uring is missing, disabled (`kernel.io_uring_disabled`) or
//! blocked (a seccomp profile), [`Backend::Auto`] (the default) falls back to the epoll backend,
//! with the same API and behaviour, and logs why; [`Backend::IoUring`] returns a [`StartError`]
//! that says what to change instead. [`Runtime::backend`] says which one runs, and [`probe`]
//! reports what this kernel offers ([`KernelReport`]). Which io_uring features are used, and
//! from which kernel, is in `docs/kernel-features.md`.
//!
//! ## Cargo features
//!
//! - `cli` (default): the `buffstreams` command line tool; `default-features = false` drops it.
//! - `prost`: [`Writer::write_message`], [`Conn::write_message`] and
//!   [`BufferedWriter::write_message`] encode a `prost::Message` straight into the send memory;
//!   [`Message::decode_as`] decodes one (see [`protobuf`]).
//! - `tokio-uring`: [`tokio_uring::FramedStream`], framed messages over a `tokio_uring` TCP
//!   stream with this crate's codec.
//! - `monoio`: [`monoio::FramedStream`], the same over a monoio 0.2.4 stream (`TcpStream`,
//!   `UnixStream`).
//!
//! ## Guides
//!
//! In the repository:
//! [`docs/guide.md`](docs/guide.md) (the Manager, channel delivery and broadcast, Protocol
//! Buffers and async code, busy polling, interoperability),
//! [`docs/limits.md`](docs/limits.md) (limits and held memory),
//! [`docs/kernel-features.md`](docs/kernel-features.md),
//! [`docs/benchmarks.md`](docs/benchmarks.md) (every figure, with the run it came from),
//! [`docs/soak.md`](docs/soak.md),
//! [`ARCHITECTURE.md`](ARCHITECTURE.md) and [`CONTRIBUTING.md`](CONTRIBUTING.md).
#![deny(missing_docs)]
// Every public type must be nameable (re-exported below), e.g. a future an API returns.
#![warn(unnameable_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// One path per public item: the crate root re-exports everything the messaging API takes or
// hands back; the modules behind it are private. `frame` is public as the sans-I/O codec
// namespace, the crate buffstreams-frame (its `Framing`, `FrameError` and `BudgetPolicy` are
// at the root too), as are the feature modules `protobuf`, `tokio_uring` and `monoio`.
#[macro_use]
mod sys;
mod acked;
#[cfg(any(feature = "tokio-uring", feature = "monoio"))]
mod adapter;
mod channel;
mod endpoint;
mod engine;
mod error;
mod listener;
mod log_limit;
mod manager;
#[cfg(feature = "monoio")]
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
pub mod monoio;
mod options;
#[cfg(feature = "prost")]
#[cfg_attr(docsrs, doc(cfg(feature = "prost")))]
pub mod protobuf;
mod stream;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
#[cfg(feature = "tokio-uring")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
pub mod tokio_uring;
mod writer;

/// The sans-I/O frame codec, the crate [`buffstreams_frame`]: wire formats,
/// [`Codec`](frame::Codec), the streaming [`Decoder`](frame::Decoder) and the
/// [`AssemblyBudget`](frame::AssemblyBudget).
#[doc(inline)]
pub use buffstreams_frame as frame;

pub use channel::{
    IntoMessageIter, Message, MessageIter, MessageReceiver, RecvError, RecvMessage,
    RecvTimeoutError, TryMessageIter, TryRecvError,
};

pub use acked::{
    AckError, AckedStats, DedupStore, SessionId, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL,
};
pub use endpoint::{Endpoint, UnixAddr};
pub use engine::handle::{ConnInfo, PeerCred};
pub use engine::{Backend, CoreStats, Runtime, RuntimeConfig};
pub use error::{
    BatchError, BoxError, CloseReason, ConnError, DialError, FailReason, Failed, HandlerError,
    ListenError, StartError, TryWriteError, Unsent, WriteError,
};
pub use frame::{BudgetPolicy, FrameError, Framing};
pub use listener::{
    Broadcast, Listener, ListenerConfig, ListenerStats, DEFAULT_FRAME_TIMEOUT,
    DEFAULT_PARTIAL_FRAME_BUDGET,
};
pub use manager::{Manager, ManagerError, ShutdownReport};
pub use options::{
    default_max_message_size, StreamOptions, DEFAULT_CONN_SEND_QUEUE_BYTES,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SEND_QUEUE_BYTES,
};
pub use stream::conn::{Conn, ConnWrite};
pub use stream::handler::HandlerErrorPolicy;
pub use writer::DEFAULT_MAX_UNACKED_BYTES;
pub use writer::{
    BufferedWriter, RetryPolicy, WriteFuture, Writer, WriterConfig, BUFFERED_WRITERS_PER_CORE,
    BUFFERED_WRITER_BYTES, BUFFERED_WRITER_MIN_BYTES, DEFAULT_NOTSENT_LOWAT, LOWAT_MAX_MSS,
};

pub use engine::{probe, KernelReport, MIN_KERNEL};

/// The README's examples, compiled as doc tests so they cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
