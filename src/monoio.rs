//! Framed messages over a [`monoio`] stream (cargo feature `monoio`), for applications that run
//! a monoio runtime and want this crate's wire formats without its engine.
//!
//! [`FramedStream`] pairs any monoio stream with owned-buffer I/O (its `TcpStream` and
//! `UnixStream` alike) with a [`Codec`]: `read_message` returns the next payload;
//! `feed_message` frames into a 64 KiB write buffer that `flush` hands to the kernel in one
//! write (`write_message` does both), and `feed_with` encodes a message of known length in
//! place. Reads go into a 64 KiB buffer that grows only with the bytes that arrive, never with a
//! length a peer announces (the codec's maximum is checked from the header first).
//!
//! Compared with this crate's own engine ([`Listener`](crate::Listener),
//! [`Writer`](crate::Writer)): one connection per `FramedStream`, driven by one task, one read
//! per `read_message` wait (no multishot receive, no provided-buffer ring), and each payload
//! copied out of the read buffer (`Bytes`). Built against monoio 0.2.4.
//!
//! ```no_run
//! use buffstreams::monoio::FramedStream;
//! use buffstreams::frame::Codec;
//! use buffstreams::Framing;
//!
//! let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().build()?;
//! rt.block_on(async {
//!     let codec = Codec::new(Framing::U32Be, 1 << 20)?;
//!     let stream = monoio::net::TcpStream::connect("127.0.0.1:5031").await?;
//!     let mut framed = FramedStream::new(stream, codec);
//!     framed.write_message(b"ping").await?;
//!     if let Some(reply) = framed.read_message().await? {
//!         println!("{} bytes", reply.len());
//!     }
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;

use ::monoio::buf::IoBufMut;
use ::monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use bytes::Bytes;

use crate::adapter::{FramedBuffers, NextRead};
use crate::frame::{Codec, FrameError};

/// Why a [`FramedStream`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramedError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent a frame the codec rejects (oversized, malformed), or the stream ended in
    /// the middle of one; or a payload to write cannot be framed.
    #[error("frame error: {0}")]
    Frame(#[from] FrameError),
}

/// A monoio stream that reads and writes framed messages (see the [module docs](self)).
pub struct FramedStream<S> {
    stream: S,
    bufs: FramedBuffers,
}

impl<S> std::fmt::Debug for FramedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.bufs.fmt(f)
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> FramedStream<S> {
    /// Frames messages on `stream` with `codec` (the peer must use the same framing and
    /// maximum).
    pub fn new(stream: S, codec: Codec) -> FramedStream<S> {
        FramedStream {
            stream,
            bufs: FramedBuffers::new(codec),
        }
    }

    /// The codec in use.
    pub fn codec(&self) -> &Codec {
        &self.bufs.codec
    }

    /// The stream, for socket options.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The next message; `None` once the peer closed the stream cleanly between frames.
    /// A stream that ends inside a frame is [`FrameError::Truncated`].
    pub async fn read_message(&mut self) -> Result<Option<Bytes>, FramedError> {
        loop {
            match self.bufs.next_read()? {
                NextRead::Message(payload) => return Ok(Some(payload)),
                NextRead::Ended => return Ok(None),
                NextRead::Read => {}
            }
            let buf = self.bufs.read_buf();
            let start = buf.len();
            let (result, slice) = self.stream.read(buf.slice_mut(start..)).await;
            self.bufs
                .read_done(slice.into_inner(), matches!(result, Ok(0)));
            result?;
        }
    }

    /// Frames `payload` into the write buffer, flushing first if it is full (64 KiB). Nothing
    /// reaches the peer until [`flush`](FramedStream::flush).
    pub async fn feed_message(&mut self, payload: &[u8]) -> Result<(), FramedError> {
        if self.bufs.write_full() {
            self.flush().await?;
        }
        Ok(self.bufs.feed(payload)?)
    }

    /// Frames a `len`-byte message that `fill` writes in place into the write buffer (a
    /// serialiser that knows its encoded length needs no buffer of its own), flushing first if
    /// the buffer is full. With a delimiter framing, a payload holding the delimiter is refused.
    pub async fn feed_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), FramedError> {
        if self.bufs.write_full() {
            self.flush().await?;
        }
        Ok(self.bufs.feed_with(len, fill)?)
    }

    /// Frames `payload` and flushes everything fed so far.
    pub async fn write_message(&mut self, payload: &[u8]) -> Result<(), FramedError> {
        self.bufs.feed(payload)?;
        self.flush().await
    }

    /// Writes every buffered frame to the socket.
    pub async fn flush(&mut self) -> Result<(), FramedError> {
        let Some(buf) = self.bufs.write_buf() else {
            return Ok(());
        };
        let (result, buf) = self.stream.write_all(buf).await;
        self.bufs.write_done(buf);
        result?;
        Ok(())
    }

    /// Bytes fed and not yet flushed.
    pub fn buffered_write(&self) -> usize {
        self.bufs.buffered_write()
    }

    /// Gives the stream back (unflushed frames and undecoded bytes are dropped).
    pub fn into_inner(self) -> S {
        self.stream
    }
}
