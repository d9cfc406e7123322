//! A writer handle for one thread that batches like `std::io::BufWriter`: frames go into send
//! memory the handle owns, with no lock and no atomic per message, and reach the connection a
//! batch at a time.

use std::collections::VecDeque;

use crate::engine::handle::{Chunk, CHUNK_SIZE};
use crate::error::{FailReason, WriteError};
use crate::frame::{Codec, FixedHeader};
use crate::stream::outbound::complete;
use crate::stream::retry::{retry, OnDown};
use crate::writer::dial::Writer;
use crate::writer::share::CoreShare;
use crate::writer::shared::report;

/// Most bytes a [`BufferedWriter`] gathers before it hands them on by itself (a single larger
/// message goes alone): 1 MiB, when few handles share the core.
pub const BUFFERED_WRITER_BYTES: usize = 1 << 20;

/// Fewest bytes a [`BufferedWriter`] sized by its core gathers before it hands them on: 64 KiB,
/// `std::io::BufWriter`'s size in the benchmark, when many handles share the core.
pub const BUFFERED_WRITER_MIN_BYTES: usize = 64 << 10;

/// Bytes the [`BufferedWriter`]s of one core gather at most between them, shared out evenly:
/// 4 MiB, so that their batches stay in the last-level cache and in the core's chunk pool.
pub const BUFFERED_WRITERS_PER_CORE: usize = 4 << 20;

/// Frames too large to share a chunk (over 16 KiB) are gathered up to at least this much.
const LARGE_BATCH_MIN: usize = 256 << 10;

/// A [`Writer`] handle for one thread that batches writes, the way `std::io::BufWriter` does:
/// each message is framed into memory this handle owns (one copy, no lock, no atomic), and when
/// the next message would take the batch past the handle's batch size, or on
/// [`flush`](BufferedWriter::flush), the batch joins the writer's queue with one lock and is
/// sent at once: straight from this thread when no send is under way on the connection (a
/// blocking `sendmsg` per 1 MiB, in which the kernel waits for room as the peer reads, as a
/// `write` under `std::io::BufWriter` does, for at most about 100 ms), otherwise by the owning
/// core, which also finishes what this thread left. This is the fastest way to stream from a
/// thread that is not the core's.
///
/// **Batch size.** [`Writer::buffered`] sizes batches by how many handles share the writer's
/// core: [`BUFFERED_WRITERS_PER_CORE`] (4 MiB) shared out among them, but never less than
/// [`BUFFERED_WRITER_MIN_BYTES`] (64 KiB) or more than [`BUFFERED_WRITER_BYTES`] (1 MiB). On a
/// real network's MTU a large batch pays only with the socket's unsent bytes bounded
/// ([`WriterConfig::notsent_lowat`](crate::WriterConfig::notsent_lowat), on by default).
/// Large sends are what make a TCP stream cheap (fewer wake-ups of the reader and fewer ACKs
/// per byte), while many connections with large batches each run slower (their batches do not
/// stay in cache); measured in `docs/benchmarks.md`, "Batch size".
/// [`Writer::buffered_with_capacity`] fixes the size instead.
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
    /// Bytes of small frames a batch gathers before it is handed on.
    limit: usize,
    /// Set by `buffered_with_capacity`: `limit` does not follow the core's handle count.
    fixed_limit: bool,
    /// This handle counted among its core's batching handles.
    share: CoreShare,
}

impl Writer {
    /// A batching handle for this thread, its batch size following how many handles share the
    /// core: see [`BufferedWriter`].
    pub fn buffered(&self) -> BufferedWriter<'_> {
        self.buffered_handle(None)
    }

    /// A batching handle for this thread that hands its batch on whenever the next message would
    /// take it past `bytes` (at least one byte; a single larger message goes alone): for a
    /// bound on how long a message waits in the handle, or on the memory it holds.
    ///
    /// ```no_run
    /// use buffstreams::{Writer, WriterConfig};
    /// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// let mut out = writer.buffered_with_capacity(64 * 1024); // as std::io::BufWriter would
    /// out.write(b"hello")?;
    /// out.flush()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn buffered_with_capacity(&self, bytes: usize) -> BufferedWriter<'_> {
        self.buffered_handle(Some(bytes.max(1)))
    }

    fn buffered_handle(&self, capacity: Option<usize>) -> BufferedWriter<'_> {
        let mut handle = BufferedWriter {
            writer: self,
            codec: self.inner.out.codec,
            fixed: self.inner.out.codec.fixed_header(),
            open: None,
            full: VecDeque::new(),
            bytes: 0,
            limit: capacity.unwrap_or(BUFFERED_WRITER_MIN_BYTES),
            fixed_limit: capacity.is_some(),
            share: CoreShare::join(&self.inner.core),
        };
        handle.size_batches();
        handle
    }
}

/// The batch size of each of `handles` handles sharing a core.
pub(crate) fn batch_bytes(handles: usize) -> usize {
    (BUFFERED_WRITERS_PER_CORE / handles.max(1))
        .clamp(BUFFERED_WRITER_MIN_BYTES, BUFFERED_WRITER_BYTES)
}

impl BufferedWriter<'_> {
    /// Frames `msg` into the batch; returns the number of bytes framed. If `msg` would take the
    /// batch past its size ([`batch_bytes`](BufferedWriter::batch_bytes); at least 256 KiB for
    /// frames over 16 KiB), hands the batch on first (see
    /// [`flush`](BufferedWriter::flush)): an error from that means `msg` was not taken (the
    /// batch stays, for `flush` or the drop).
    #[inline]
    pub fn write(&mut self, msg: &[u8]) -> Result<usize, WriteError> {
        // The common case in a few instructions: a fixed-width header and room in the open
        // chunk and in the batch. Anything else (another framing, a full chunk or batch, a
        // message over the maximum) takes the general path, which gives the same bytes.
        if let Some(fixed) = self.fixed {
            if let (Some(n), Some(open)) = (fixed.frame_len(msg.len()), self.open.as_mut()) {
                if open.room() >= n && self.bytes + n <= self.limit {
                    fixed.write(msg, open.spare(n));
                    open.commit(n);
                    self.bytes += n;
                    return Ok(n);
                }
            }
        }
        self.write_slow(msg)
    }

    /// [`write`](BufferedWriter::write) off its fast path, kept out of line so that the fast
    /// path stays a few instructions wherever it is inlined.
    #[cold]
    #[inline(never)]
    fn write_slow(&mut self, msg: &[u8]) -> Result<usize, WriteError> {
        self.write_with(msg.len(), |payload| payload.copy_from_slice(msg))
    }

    /// Frames a `len`-byte message that `fill` writes in place (see [`Writer::write_with`]).
    #[inline]
    pub fn write_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WriteError> {
        self.write_encoded(len, complete(fill))
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
        // Hand the batch on before this message would take it past the batch size, as
        // `BufWriter` does. Done before taking the message, so that an error here means it was
        // not taken (the batch stays for `flush` or the drop). Frames too large to share a chunk
        // are gathered up to at least 256 KiB: one send per message would cost a syscall and a
        // short tail segment per message.
        let limit = if room > CHUNK_SIZE {
            self.limit.max(LARGE_BATCH_MIN)
        } else {
            self.limit
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
            if full.unsent_len() > 0 {
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

    /// Bytes of small messages this handle gathers before it hands them on by itself now.
    ///
    /// ```no_run
    /// use buffstreams::{Writer, WriterConfig, BUFFERED_WRITER_BYTES};
    /// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// let out = writer.buffered(); // alone on its core
    /// assert_eq!(out.batch_bytes(), BUFFERED_WRITER_BYTES);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch_bytes(&self) -> usize {
        self.limit
    }

    /// Sizes batches by how many handles share the core now (unless fixed).
    fn size_batches(&mut self) {
        if !self.fixed_limit {
            self.limit = batch_bytes(self.share.handles());
        }
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
        let deadline = inner.out.own_core_deadline();
        let full = &mut self.full;
        retry(inner, OnDown::Dial, || {
            inner.out.sendq.push_chunks(full, deadline)
        })?;
        self.bytes = 0;
        self.size_batches();
        Ok(())
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
            &inner.addr,
            &inner.out.codec,
            rest,
            FailReason::Dropped,
        );
    }
}
