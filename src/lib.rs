//! # buffstreams
//!
//! Length-prefixed messages (Protocol Buffers, or any bytes) over TCP, on per-core io_uring
//! runtimes. The Rust successor of the Go library BuffStreams: a fixed header before every
//! message carries its size; the library adds it on write and strips it on read.
//!
//! - A [`Listener`] binds one `SO_REUSEPORT` socket per core on the same address; each core
//!   accepts, owns its connections, receives through multishot receives over a kernel-registered
//!   buffer ring, and calls your handler with each complete message (`&[u8]`, borrowed from the
//!   receive buffer without a copy when the frame lies in one buffer).
//! - A [`Writer`] dials an address and writes messages from any number of threads; frames never
//!   interleave, and many small frames share one `send`. After a failure the next write
//!   reconnects; nothing accepted is dropped silently. [`Writer::write_with`] encodes in place,
//!   [`Writer::write_batch`] frames many messages at once, and a [`BufferedWriter`] batches
//!   like `std::io::BufWriter` and sends from its own thread: the fastest way to stream.
//! - A [`Manager`] keeps listeners and writers by address on one shared [`Runtime`], with
//!   writers sharded to cores by a hash of their address, retries ([`RetryPolicy`]) and failed
//!   messages handed back ([`WriterConfig::on_failed`]).
//! - [`ListenerConfig::with_channel`] delivers messages to a bounded channel instead of a
//!   callback; a lagging consumer pauses reading so TCP pushes back.
//! - The [`frame`] module is the sans-I/O codec (fixed-width, varint, Go BuffStreams header,
//!   delimiter), usable on its own.
//! - Without io_uring (old kernel, seccomp, `kernel.io_uring_disabled`) the same API runs on an
//!   epoll backend ([`Backend`]).
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
//! ## Cargo features
//!
//! - `prost`: [`Writer::write_message`], [`Conn::write_message`] and
//!   [`BufferedWriter::write_message`] encode a `prost::Message` straight into the send memory;
//!   [`Message::decode_as`] decodes one (see [`protobuf`]).
//! - `cli` (default): the `buffstreams` command line tool; `default-features = false` drops it.
//! - `tokio-uring`: [`tokio_uring::FramedStream`], framed
//!   messages over a `tokio_uring` TCP stream with this crate's codec.
//!
//! Limits for a server facing untrusted peers (a memory budget for partly received frames,
//! timeouts, a connection cap) are on [`ListenerConfig`]; what the kernel offers is
//! [`probe`]'s answer.
#![deny(missing_docs)]
// Every public type must be nameable (re-exported below), e.g. a future an API returns.
#![warn(unnameable_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// One path per public item: the crate root re-exports everything the messaging API takes or
// hands back; the modules behind it are private. `frame` is public as the sans-I/O codec
// namespace (its `Framing`, `FrameError` and `BudgetPolicy` are at the root only), as are the
// feature modules `protobuf` and `tokio_uring`.
#[macro_use]
mod sys;
mod channel;
mod config;
mod conn;
mod engine;
mod error;
pub mod frame;
mod framed;
mod handler;
mod listener;
mod log_limit;
mod manager;
mod mapping;
mod options;
#[cfg(feature = "prost")]
#[cfg_attr(docsrs, doc(cfg(feature = "prost")))]
pub mod protobuf;
#[cfg(feature = "tokio-uring")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
pub mod tokio_uring;
mod writer;

pub use channel::{
    IntoIter, Iter, Message, MessageReceiver, Recv, RecvError, RecvTimeoutError, TryIter,
    TryRecvError,
};
pub use config::{ListenerConfig, DEFAULT_FRAME_TIMEOUT, DEFAULT_PARTIAL_FRAME_BUDGET};
pub use conn::{Conn, ConnWrite};
pub use engine::session::ConnInfo;
pub use engine::{Backend, CoreStats, Runtime, RuntimeConfig};
pub use error::{
    BatchError, BoxError, CloseReason, ConnError, DialError, FailReason, Failed, HandlerError,
    ListenError, StartError, TryWriteError, Unsent, WriteError,
};
pub use frame::budget::BudgetPolicy;
pub use frame::error::FrameError;
pub use frame::framing::Framing;
pub use handler::HandlerErrorPolicy;
pub use listener::{Broadcast, Listener};
pub use manager::{Manager, ManagerError, ShutdownReport};
pub use options::{
    default_max_message_size, StreamOptions, DEFAULT_CONN_SEND_QUEUE_BYTES,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SEND_QUEUE_BYTES,
};
pub use writer::{
    BufferedWriter, RetryPolicy, WriteFuture, Writer, WriterConfig, BUFFERED_WRITERS_PER_CORE,
    BUFFERED_WRITER_BYTES, BUFFERED_WRITER_MIN_BYTES, DEFAULT_NOTSENT_LOWAT, LOWAT_MAX_MSS,
};

/// The oldest kernel the io_uring engine supports, as `(major, minor)`.
pub const MIN_KERNEL: (u32, u32) = engine::probe::MIN_KERNEL;
pub use engine::probe::{probe, KernelReport};

/// The README's examples, compiled as doc tests so they cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
