//! A writer: dials an address and writes framed messages through the core that owns it.
//!
//! `dial.rs` holds the [`Writer`] handle, `shared.rs` what its clones share (flush, close,
//! failed messages), `link.rs` its reconnects, `connect.rs` opening its socket, `encode.rs` writing in place and in batches,
//! `future.rs` the async write, `buffered.rs` the batching handle, `config.rs` its options.

mod acked;
mod buffered;
mod config;
mod connect;
mod dial;
mod encode;
mod future;
mod link;
mod share;
mod shared;
#[cfg(feature = "tls")]
mod tls;

pub(crate) use acked::say_hello;
pub use acked::DEFAULT_MAX_UNACKED_BYTES;
pub use buffered::{
    BufferedWriter, BUFFERED_WRITERS_PER_CORE, BUFFERED_WRITER_BYTES, BUFFERED_WRITER_MIN_BYTES,
};
pub use config::{RetryPolicy, WriterConfig, DEFAULT_NOTSENT_LOWAT, LOWAT_MAX_MSS};
pub use dial::Writer;
pub use future::WriteFuture;

#[cfg(test)]
mod link_tests;
