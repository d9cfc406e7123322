//! Send memory: fixed-size chunks that producers fill with whole frames in wire format and the
//! kernel sends from, and the per-core pool they return to.
//!
//! A chunk is written once (header and payload, by the producer that holds the queue's lock)
//! and read once (by the kernel, through the core's send). It is never zeroed or copied again:
//! a recycled chunk just starts over at offset 0.

use std::sync::Mutex;

/// Bytes in a standard chunk. Frames never straddle two chunks; a frame larger than this gets a
/// chunk of its own, sized for it (pooled apart, see [`ChunkPool`]).
pub(crate) const CHUNK_SIZE: usize = 16 * 1024;

/// Standard chunks a core keeps for reuse (4 MiB per core): enough for the busy queues on the
/// core to swap chunks without the allocator; idle connections hold none.
const POOL_MAX: usize = 256;

/// One chunk of send memory. `head <= sent <= len <= buf.len()`:
/// - `[0, head)` was dropped by a [`rewind`](Chunk::rewind) (taken whole by a failed
///   connection's kernel);
/// - `[head, sent)` was taken by the kernel on the current connection;
/// - `[sent, len)` is waiting to be sent.
///
/// On a sealed connection (TLS) the kernel sends `wire` instead: the sealed form of
/// `[head, len)` (see [`Chunk::seal`]), and `wire_sent` counts what it took of that. A sealed
/// chunk takes no more frames, and counts as sent only once its whole sealed form was taken
/// (a record the peer got only part of is worth nothing to it).
pub(crate) struct Chunk {
    buf: Box<[u8]>,
    head: usize,
    sent: usize,
    len: usize,
    /// Where appending stops: the buffer's end, or `len` once sealed (so `room` needs no
    /// branch on the per-message path).
    end: usize,
    /// The sealed bytes (their allocation is kept across uses), valid while `sealed`.
    wire: Vec<u8>,
    wire_sent: usize,
    sealed: bool,
    /// Frames in `[head, len)` (one per [`Chunk::commit`]): an acknowledged queue numbers
    /// them.
    frames: u32,
    /// On an acknowledged queue, the sequence number of the frame at `head` (set when the chunk
    /// is queued).
    seq: u64,
    /// Raw bytes that are no frame (a hello): the chunk never takes frames.
    raw: bool,
}

impl Chunk {
    /// A fresh chunk of `cap` bytes (the only time its memory is written by anyone but a
    /// producer: the allocation is zeroed once).
    pub(crate) fn with_capacity(cap: usize) -> Chunk {
        Chunk {
            buf: vec![0u8; cap].into_boxed_slice(),
            head: 0,
            sent: 0,
            len: 0,
            end: cap,
            wire: Vec::new(),
            wire_sent: 0,
            sealed: false,
            frames: 0,
            seq: 0,
            raw: false,
        }
    }

    /// A chunk holding `bytes`, which are no frame (an acknowledged queue's hello): it takes no
    /// frames and carries no sequence numbers.
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Chunk {
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len();
        self.raw = true;
        self.end = self.len;
        self
    }

    /// Whether it holds raw bytes (see [`Chunk::raw`]).
    pub(crate) fn is_raw(&self) -> bool {
        self.raw
    }

    /// Bytes a producer can still append (none once sealed).
    #[inline]
    pub(crate) fn room(&self) -> usize {
        self.end - self.len
    }

    /// The `n` bytes after the filled part, for a producer to write a frame into; nothing is
    /// appended until [`Chunk::commit`]. The caller checked `n <= room()`.
    #[inline]
    pub(crate) fn spare(&mut self, n: usize) -> &mut [u8] {
        &mut self.buf[self.len..self.len + n]
    }

    /// Appends the `n` bytes just written into [`Chunk::spare`]: one whole frame.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.room());
        self.len += n;
        self.frames += 1;
    }

    /// Frames in the chunk (not yet dropped by a rewind or an acknowledgement).
    #[inline]
    pub(crate) fn frames(&self) -> u32 {
        self.frames
    }

    /// The sequence number of the chunk's first frame (an acknowledged queue's).
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The sequence number after the chunk's last frame.
    #[inline]
    pub(crate) fn seq_end(&self) -> u64 {
        self.seq + u64::from(self.frames)
    }

    /// Numbers the chunk's frames from `seq`; returns the number after its last.
    #[inline]
    pub(crate) fn number_from(&mut self, seq: u64) -> u64 {
        self.seq = seq;
        self.seq_end()
    }

    /// Drops the first `n` frames (acknowledged ones), found by `skip` (the byte length of the
    /// first `n` frames of the bytes it is given), and starts the chunk over unsent.
    pub(crate) fn drop_frames(&mut self, n: u32, skip: impl FnOnce(&[u8], u32) -> usize) {
        self.restart();
        let n = n.min(self.frames);
        if n == 0 {
            return;
        }
        let bytes = skip(self.resendable(), n);
        self.head = (self.head + bytes).min(self.len);
        self.sent = self.head;
        self.frames -= n;
        self.seq += u64::from(n);
    }

    /// Starts the chunk over: every frame in it is sent again, whole, from `head` (unsealed).
    /// What an acknowledged queue does with what a failed connection took but nobody
    /// acknowledged.
    pub(crate) fn restart(&mut self) {
        self.unseal();
    }

    /// The bytes not yet taken by the kernel (of the sealed form, once sealed).
    #[inline]
    pub(crate) fn unsent(&self) -> &[u8] {
        if self.sealed {
            return &self.wire[self.wire_sent..];
        }
        &self.buf[self.sent..self.len]
    }

    /// Whether the chunk holds its sealed form.
    #[inline]
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Seals the frames not yet sent, `[head, len)`, with `seal` (which appends their sealed
    /// form to the vector it is given): from now on the kernel is given that instead. Called by
    /// the one thread sending on the connection, in send order, before any of the chunk was
    /// sent on it (so `sent == head`). On an error nothing changes.
    pub(crate) fn seal<E>(
        &mut self,
        seal: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(!self.sealed && self.sent == self.head);
        self.wire.clear();
        seal(&self.buf[self.head..self.len], &mut self.wire)?;
        self.wire_sent = 0;
        self.sealed = true;
        self.end = self.len;
        Ok(())
    }

    /// The bytes from the start of the first frame not wholly taken by the kernel: what a new
    /// connection must send.
    pub(crate) fn resendable(&self) -> &[u8] {
        &self.buf[self.head..self.len]
    }

    /// Bytes not yet known to be sent, counted against the queue's limit while the chunk is
    /// queued or in flight.
    #[inline]
    pub(crate) fn unsent_len(&self) -> usize {
        self.len - self.head
    }

    /// The kernel took `n` more bytes (of the sealed form, once sealed).
    pub(crate) fn advance(&mut self, n: usize) {
        if self.sealed {
            self.wire_sent = (self.wire_sent + n).min(self.wire.len());
            return;
        }
        self.sent = (self.sent + n).min(self.len);
    }

    /// Whether the kernel took everything appended (its whole sealed form, once sealed).
    #[inline]
    pub(crate) fn is_sent(&self) -> bool {
        if self.sealed {
            return self.wire_sent == self.wire.len();
        }
        self.sent == self.len
    }

    /// Drops what a failed connection did send in full: `head` moves to the start of the frame
    /// that was being sent (found by `frame_start` over the resendable bytes), and that frame
    /// will be sent again from its start.
    ///
    /// A sealed chunk the kernel did not take whole is sent again whole, from `head`, sealed
    /// anew for the next connection: the peer could open none of a record it got part of.
    pub(crate) fn rewind(&mut self, frame_start: impl FnOnce(&[u8], usize) -> usize) {
        if self.sealed {
            self.unseal();
            return;
        }
        let partial = self.sent - self.head;
        let start = if partial == 0 {
            0
        } else {
            frame_start(self.resendable(), partial)
        };
        self.head = (self.head + start).min(self.len);
        self.sent = self.head;
    }

    /// Whether it is a standard chunk ([`CHUNK_SIZE`] bytes).
    pub(crate) fn is_standard(&self) -> bool {
        self.buf.len() == CHUNK_SIZE
    }

    /// Empties it for reuse (what the pool does to a chunk given back).
    pub(crate) fn recycle(mut self) -> Chunk {
        self.reset();
        self
    }

    fn unseal(&mut self) {
        self.sealed = false;
        self.end = if self.raw { self.len } else { self.buf.len() };
        self.wire.clear();
        self.wire_sent = 0;
        self.sent = self.head;
    }

    fn reset(&mut self) {
        self.unseal();
        self.head = 0;
        self.sent = 0;
        self.len = 0;
        self.frames = 0;
        self.seq = 0;
        self.raw = false;
        self.end = self.buf.len();
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("unsent", &self.unsent_len())
            .finish()
    }
}

/// The chunks a core keeps for reuse: at most 256 standard ones (4 MiB) and large ones of up
/// to 1 MiB each, 4 MiB of them in all. Taken once per chunk (every ~16 KiB of frames, or per
/// large frame), never per small message.
#[derive(Default)]
pub(crate) struct ChunkPool {
    free: Mutex<Vec<Chunk>>,
    /// Chunks sized for one large frame (up to [`BIG_MAX`]), kept a few at a time so that a
    /// stream of large messages does not allocate and zero one per message.
    big: Mutex<BigChunks>,
}

/// The pooled large chunks and their total size.
#[derive(Default)]
struct BigChunks {
    chunks: Vec<Chunk>,
    bytes: usize,
}

/// Large-frame chunks above this size are freed after use, not kept.
const BIG_MAX: usize = 1 << 20;
/// Bytes of large-frame chunks a core keeps: a few writers' batches of large frames (a
/// `BufferedWriter` gathers up to 256 KiB of them).
const BIG_POOL_BYTES: usize = 4 << 20;

impl ChunkPool {
    /// A chunk that can hold a `len`-byte frame: a pooled standard one, a new one, or (for a
    /// frame over [`CHUNK_SIZE`]) a pooled large one that fits, or one of its own size.
    pub(crate) fn get(&self, len: usize) -> Chunk {
        if len > CHUNK_SIZE {
            let mut big = self.big.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = big.chunks.iter().position(|c| c.buf.len() >= len) {
                let chunk = big.chunks.swap_remove(i);
                big.bytes -= chunk.buf.len();
                return chunk;
            }
            drop(big);
            return Chunk::with_capacity(len);
        }
        let pooled = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        pooled.unwrap_or_else(|| Chunk::with_capacity(CHUNK_SIZE))
    }

    /// Returns a chunk whose bytes are no longer needed.
    pub(crate) fn put(&self, mut chunk: Chunk) {
        chunk.reset();
        if !chunk.is_standard() {
            if chunk.buf.len() <= BIG_MAX {
                let mut big = self.big.lock().unwrap_or_else(|e| e.into_inner());
                if big.bytes + chunk.buf.len() <= BIG_POOL_BYTES {
                    big.bytes += chunk.buf.len();
                    big.chunks.push(chunk);
                }
            }
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX {
            free.push(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_send_and_rewind_to_a_frame_boundary() {
        let mut c = Chunk::with_capacity(64);
        c.spare(10).copy_from_slice(&[1; 10]);
        c.commit(10);
        c.spare(6).copy_from_slice(&[2; 6]);
        c.commit(6);
        assert_eq!(c.unsent_len(), 16);
        c.advance(13); // the first frame and 3 bytes of the second
        assert_eq!(c.unsent(), &[2; 3]);
        // Frames of 10 and 6 bytes: offset 13 lies in the frame starting at 10.
        c.rewind(|buf, off| {
            assert_eq!(buf.len(), 16);
            assert_eq!(off, 13);
            10
        });
        assert_eq!(c.resendable(), &[2; 6]);
        assert_eq!(c.unsent(), &[2; 6]);
        assert_eq!(c.unsent_len(), 6);
        c.advance(6);
        assert!(c.is_sent());
    }

    #[test]
    fn a_sealed_chunk_takes_no_more_frames_until_unsealed() {
        let mut c = Chunk::with_capacity(64);
        c.spare(10).copy_from_slice(&[1; 10]);
        c.commit(10);
        assert_eq!(c.room(), 54);
        c.seal(|plain, wire| {
            wire.extend_from_slice(plain);
            wire.push(0xff);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(c.room(), 0, "producers open another chunk");
        assert_eq!(c.unsent().len(), 11, "the sealed form goes out");
        c.advance(5);
        c.rewind(|_, _| unreachable!("a sealed chunk goes again whole"));
        assert_eq!(c.room(), 54);
        assert_eq!(c.unsent(), &[1; 10]);
    }

    #[test]
    fn pool_reuses_chunks_by_kind() {
        let pool = ChunkPool::default();
        let mut c = pool.get(100);
        c.commit(100);
        pool.put(c);
        let c = pool.get(1);
        assert_eq!(c.room(), CHUNK_SIZE, "a pooled chunk starts over");
        let big = pool.get(CHUNK_SIZE + 1);
        assert_eq!(big.room(), CHUNK_SIZE + 1);
        pool.put(big);
        assert_eq!(
            pool.free.lock().unwrap().len(),
            0,
            "not mixed with standard chunks"
        );
        assert_eq!(pool.big.lock().unwrap().chunks.len(), 1);
        let again = pool.get(CHUNK_SIZE + 1);
        assert_eq!(
            again.room(),
            CHUNK_SIZE + 1,
            "a large chunk is reused, emptied"
        );
        let huge = Chunk::with_capacity(BIG_MAX + 1);
        pool.put(huge);
        assert_eq!(
            pool.big.lock().unwrap().chunks.len(),
            0,
            "over BIG_MAX is freed"
        );
    }
}
