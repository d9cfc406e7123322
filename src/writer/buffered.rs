//! A writer handle for one thread that batches like `std::io::BufWriter`: frames go into send
//! memory the handle owns, with no lock and no atomic per message, and reach the connection a
//! batch at a time.

use std::collections::VecDeque;
use std::time::Instant;

use crate::engine::send::chunk::{Chunk, CHUNK_SIZE};
use crate::engine::send::PushError;
use crate::error::{FailReason, WriteError};
use crate::frame::{Codec, FixedHeader};
use crate::writer::{push_error, report, Writer};

/// Most bytes a [`BufferedWriter`] gathers before it hands them on by itself (a single larger
/// message goes alone).
pub const BUFFERED_WRITER_BYTES: usize = 64 * 1024;

/// Most bytes a batch of frames too large to share a chunk (over 16 KiB) gathers.
const LARGE_BATCH_BYTES: usize = 256 * 1024;

/// A [`Writer`] handle for one thread that batches writes, the way `std::io::BufWriter` does:
/// each message is framed into memory this handle owns (one copy, no lock, no atomic), and when
/// the next message would take the batch past [`BUFFERED_WRITER_BYTES`] (64 KiB), or on
/// [`flush`](BufferedWriter::flush), the batch joins
/// the writer's queue with one lock and is sent at once: straight from this thread with one
/// nonblocking `sendmsg` when no send is under way on the connection, otherwise by the owning
/// core. This is the fastest way to stream from a thread that is not the core's.
///
/// Messages wait in the handle until the batch is full or `flush` is called: call `flush` when a
/// burst ends (dropping the handle flushes too). Messages from one handle keep their order;
/// other handles' and plain `write`s' messages never interleave with them inside a frame.
///
/// ```no_run
/// use buffstreams::{Writer, WriterConfig};
/// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
/// let mut out = writer.buffered();
/// for i in 0..1_000_000u32 {
///     out.write(&i.to_be_bytes())?;
/// }
/// out.flush()?; // hands the last batch on (Writer::flush waits for the kernel to take it)
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BufferedWriter<'a> {
    writer: &'a Writer,
    codec: Codec,
    /// The codec's fixed-width header, if it has one: `write`'s fast path.
    fixed: Option<FixedHeader>,
    /// The chunk frames are appended to.
    open: Option<Chunk>,
    /// Full chunks, in order, before `open`.
    full: VecDeque<Chunk>,
    bytes: usize,
}

impl Writer {
    /// A batching handle for this thread: see [`BufferedWriter`].
    pub fn buffered(&self) -> BufferedWriter<'_> {
        BufferedWriter {
            writer: self,
            codec: self.inner.codec,
            fixed: self.inner.codec.fixed_header(),
            open: None,
            full: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl BufferedWriter<'_> {
    /// Frames `msg` into the batch; returns the number of bytes framed. If `msg` would take the
    /// batch past 64 KiB (256 KiB for frames over 16 KiB), hands the batch on first (see
    /// [`flush`](BufferedWriter::flush)): an error from that means `msg` was not taken (the
    /// batch stays, for `flush` or the drop).
    #[inline]
    pub fn write(&mut self, msg: &[u8]) -> Result<usize, WriteError> {
        // The common case in a few instructions: a fixed-width header and room in the open
        // chunk and in the batch. Anything else (another framing, a full chunk or batch, a
        // message over the maximum) takes the general path, which gives the same bytes.
        if let Some(fixed) = self.fixed {
            if let (Some(n), Some(open)) = (fixed.frame_len(msg.len()), self.open.as_mut()) {
                if open.room() >= n && self.bytes + n <= BUFFERED_WRITER_BYTES {
                    fixed.write(msg, open.spare(n));
                    open.commit(n);
                    self.bytes += n;
                    return Ok(n);
                }
            }
        }
        self.write_with(msg.len(), |payload| payload.copy_from_slice(msg))
    }

    /// Frames a `len`-byte message that `fill` writes in place (see [`Writer::write_with`]).
    #[inline]
    pub fn write_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WriteError> {
        self.write_encoded(len, crate::conn::complete(fill))
    }

    /// [`write_with`](BufferedWriter::write_with) for an encoder that reports whether it wrote
    /// exactly `len` bytes (nothing is framed if not).
    #[inline]
    pub(crate) fn write_encoded(
        &mut self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<usize, WriteError> {
        // Refused before any memory is set aside for it.
        self.codec.check_len(len)?;
        // Room for the longest header (and a delimiter) is enough whatever the framing.
        let room = len + self.codec.max_overhead();
        // Hand the batch on before this message would take it past 64 KiB, as `BufWriter` does
        // (a send just over a segment boundary would end in a short segment; loopback advertises
        // an MSS of 65,483, though the one in use can be smaller). Done before taking the message,
        // so that an error here means it was not taken (the batch stays for `flush` or the drop).
        // Frames too large to share a chunk are gathered up to 256 KiB instead (one core send's
        // worth): each spans segments anyway, and one send per message would cost a syscall
        // and a short tail segment per message.
        let limit = if room > CHUNK_SIZE {
            LARGE_BATCH_BYTES
        } else {
            BUFFERED_WRITER_BYTES
        };
        if self.bytes + room > limit && self.bytes > 0 {
            self.flush()?;
        }
        let codec = self.codec;
        let chunk = match &mut self.open {
            Some(open) if open.room() >= room => open,
            _ => self.open_chunk(room),
        };
        let mut exact = true;
        let n = codec.encode_with(len, chunk.spare(chunk.room()), |buf| exact = encode(buf))?;
        if !exact {
            // Not committed: the bytes written are overwritten by the next frame.
            return Err(WriteError::EncodedLength { announced: len });
        }
        chunk.commit(n);
        self.bytes += n;
        Ok(n)
    }

    /// Seals the open chunk and opens one with at least `room` bytes free.
    #[cold]
    fn open_chunk(&mut self, room: usize) -> &mut Chunk {
        let pool = self.writer.inner.core.pool();
        if let Some(full) = self.open.take() {
            if full.held() > 0 {
                self.full.push_back(full);
            } else {
                pool.put(full);
            }
        }
        self.open.insert(pool.get(room))
    }

    /// Bytes framed and not yet handed on.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Hands the batch to the writer's queue (waiting for room like [`Writer::write`],
    /// reconnecting if the link is down) and starts sending it. Returns once it is queued; use
    /// [`Writer::flush`] to wait until the kernel has taken it. On an error the batch stays in
    /// this handle (dropping the handle then gives it to [`WriterConfig::on_failed`]).
    ///
    /// [`WriterConfig::on_failed`]: crate::WriterConfig::on_failed
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.bytes == 0 {
            return Ok(());
        }
        let inner = &*self.writer.inner;
        if let Some(open) = self.open.take() {
            self.full.push_back(open);
        }
        let deadline = inner.core.is_current().then(Instant::now);
        loop {
            match inner.sendq.push_chunks(&mut self.full, deadline) {
                Ok(()) => {
                    self.bytes = 0;
                    return Ok(());
                }
                Err(PushError::Down(_)) => inner.reconnect().map_err(WriteError::Reconnect)?,
                Err(err) => return Err(push_error(err)),
            }
        }
    }
}

impl Drop for BufferedWriter<'_> {
    fn drop(&mut self) {
        if self.bytes == 0 || self.flush().is_ok() {
            return;
        }
        // Not lost silently: what could not be queued goes where the writer's failures go.
        let inner = &*self.writer.inner;
        let mut rest = bytes::BytesMut::new();
        for chunk in self.full.drain(..).chain(self.open.take()) {
            rest.extend_from_slice(chunk.resendable());
            inner.core.pool().put(chunk);
        }
        report(
            inner.on_failed.as_ref(),
            inner.addr,
            &inner.codec,
            rest,
            FailReason::Dropped,
        );
    }
}
