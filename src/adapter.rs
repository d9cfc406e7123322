//! What the runtime adapters (`tokio_uring`, `monoio`) share, without I/O: a codec, a read
//! buffer that grows only with the bytes that arrive (never with a length a peer announces),
//! and a write buffer of frames fed and not yet flushed. Each adapter only moves these buffers
//! through its runtime's owned-buffer reads and writes.

use bytes::{Bytes, BytesMut};

use crate::frame::{Codec, FrameError};

/// How much a read asks for, and how much the write buffer holds before a feed flushes it.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// What the read side needs next.
pub(crate) enum NextRead {
    /// A whole message was buffered.
    Message(Bytes),
    /// The peer closed the stream cleanly between frames.
    Ended,
    /// More bytes: read into [`FramedBuffers::read_buf`].
    Read,
}

/// A stream's codec and buffers (see the module docs).
pub(crate) struct FramedBuffers {
    pub(crate) codec: Codec,
    /// Received bytes not yet decoded.
    read: BytesMut,
    /// Frames fed and not yet flushed.
    write: BytesMut,
    /// The stream ended (a clean end between frames).
    eof: bool,
}

impl std::fmt::Debug for FramedBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedStream")
            .field("codec", &self.codec)
            .field("buffered_read", &self.read.len())
            .field("buffered_write", &self.write.len())
            .finish()
    }
}

impl FramedBuffers {
    pub(crate) fn new(codec: Codec) -> FramedBuffers {
        FramedBuffers {
            codec,
            read: BytesMut::with_capacity(BUF_SIZE),
            write: BytesMut::with_capacity(BUF_SIZE),
            eof: false,
        }
    }

    /// The next buffered message, the clean end, or a request for more bytes. A stream that
    /// ended inside a frame is [`FrameError::Truncated`].
    pub(crate) fn next_read(&mut self) -> Result<NextRead, FrameError> {
        if let Some(payload) = self.codec.decode_from(&mut self.read)? {
            return Ok(NextRead::Message(payload));
        }
        match (self.eof, self.read.len()) {
            (false, _) => Ok(NextRead::Read),
            (true, 0) => Ok(NextRead::Ended),
            (true, buffered) => Err(FrameError::Truncated { buffered }),
        }
    }

    /// The read buffer, with room for one more read after the bytes it holds: memory follows
    /// what arrives. Give it back with [`read_done`](Self::read_done).
    pub(crate) fn read_buf(&mut self) -> BytesMut {
        self.read.reserve(BUF_SIZE);
        std::mem::take(&mut self.read)
    }

    /// The buffer from [`read_buf`](Self::read_buf) back after a read; `ended` if the read
    /// returned 0 bytes (the peer closed).
    pub(crate) fn read_done(&mut self, buf: BytesMut, ended: bool) {
        self.read = buf;
        self.eof |= ended;
    }

    /// Whether the write buffer is full: flush before feeding more.
    pub(crate) fn write_full(&self) -> bool {
        self.write.len() >= BUF_SIZE
    }

    /// Frames `payload` into the write buffer.
    pub(crate) fn feed(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        self.codec.encode(payload, &mut self.write).map(|_| ())
    }

    /// Frames a `len`-byte message that `fill` writes in place into the write buffer; a refused
    /// one (over the maximum, or holding the delimiter) leaves nothing behind.
    #[cfg_attr(not(feature = "monoio"), allow(dead_code))] // only monoio's adapter offers it yet
    pub(crate) fn feed_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), FrameError> {
        let start = self.write.len();
        let room = self.codec.frame_len(len).ok_or(FrameError::TooLarge {
            len: len as u64,
            max: self.codec.max_message_size(),
        })?;
        self.write.resize(start + room, 0);
        match self.codec.encode_with(len, &mut self.write[start..], fill) {
            Ok(n) => {
                self.write.truncate(start + n);
                Ok(())
            }
            Err(err) => {
                self.write.truncate(start);
                Err(err)
            }
        }
    }

    /// The frames to flush, if any. Give the buffer back with
    /// [`write_done`](Self::write_done).
    pub(crate) fn write_buf(&mut self) -> Option<BytesMut> {
        (!self.write.is_empty()).then(|| std::mem::take(&mut self.write))
    }

    /// The buffer from [`write_buf`](Self::write_buf) once written (or failed): kept, empty,
    /// for its allocation.
    pub(crate) fn write_done(&mut self, mut buf: BytesMut) {
        buf.clear();
        self.write = buf;
    }

    /// Bytes fed and not yet flushed.
    pub(crate) fn buffered_write(&self) -> usize {
        self.write.len()
    }
}
