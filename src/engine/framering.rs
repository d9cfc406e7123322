//! A bounded, lock-free, multi-producer single-consumer ring of byte records.
//!
//! Producers (user threads writing messages) reserve room with one compare-and-swap on the tail,
//! write their frame, then publish it by storing its header word. The consumer (the owning core,
//! or a closer once the core let go) copies published records out in reservation order, zeroes
//! what it read and advances the head. No lock is taken per record; per-producer order is
//! reservation order.
//!
//! Layout: records start at 8-byte aligned offsets and are `8 + round_up(len, 8)` bytes: one
//! header word `(len << 3) | kind`, then the bytes. A header of 0 means "not published yet", so
//! every word the consumer has read is zeroed before the head passes it. A record that would
//! cross the end of the ring is preceded by a `PAD` record that fills the rest of the ring.
//! Records too large for the ring (`BIG`) hold a pointer to a heap copy instead of the bytes.
//!
//! The ring's memory is allocated by the first push, so a connection that never writes (most
//! accepted ones) costs nothing.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use bytes::BytesMut;

const KIND_DATA: u64 = 1;
const KIND_PAD: u64 = 2;
const KIND_BIG: u64 = 3;
const WORD: usize = 8;

fn round_up(n: usize) -> usize {
    (n + WORD - 1) & !(WORD - 1)
}

/// Cache-line padding, so producers hammering the tail do not slow the consumer's head.
#[repr(align(128))]
struct Padded<T>(T);

/// See the module docs.
pub(crate) struct FrameRing {
    /// Null until the first push allocates it.
    mem: AtomicPtr<u8>,
    cap: usize,
    /// Next byte offset (monotonic) to reserve.
    tail: Padded<AtomicU64>,
    /// Everything before this offset (monotonic) is consumed and zeroed.
    head: Padded<AtomicU64>,
    /// Bytes held in `BIG` records' heap copies.
    big_bytes: AtomicUsize,
    /// The bound for `BIG` bytes (the ring's own size bounds the rest).
    big_limit: usize,
}

// SAFETY: the ring owns its memory; all cross-thread access to it follows the publication
// protocol described in the module docs (header words are atomics with release/acquire; record
// bytes are written only by the producer that reserved them and read only after the header is
// published; head and tail are atomics).
unsafe impl Send for FrameRing {}
// SAFETY: as above.
unsafe impl Sync for FrameRing {}

/// A reservation could not be made now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// Not enough free room: wait for the consumer.
    Ring,
}

impl FrameRing {
    /// A ring of at least `bytes` bytes (rounded up to a power of two, minimum 4 KiB).
    pub(crate) fn new(bytes: usize) -> FrameRing {
        let cap = bytes.clamp(4096, 1 << 40).next_power_of_two();
        FrameRing {
            mem: AtomicPtr::new(std::ptr::null_mut()),
            cap,
            tail: Padded(AtomicU64::new(0)),
            head: Padded(AtomicU64::new(0)),
            big_bytes: AtomicUsize::new(0),
            big_limit: cap,
        }
    }

    /// The ring's memory, if a push allocated it.
    fn mem(&self) -> Option<NonNull<u8>> {
        NonNull::new(self.mem.load(Ordering::Acquire))
    }

    /// The ring's memory, allocating it on first use: an anonymous mapping, so it is zeroed by
    /// the kernel lazily, page by page, as the ring first goes around (a `calloc` of this
    /// alignment would write every byte up front).
    fn mem_or_alloc(&self) -> NonNull<u8> {
        if let Some(mem) = self.mem() {
            return mem;
        }
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
        // result is checked against MAP_FAILED.
        let fresh = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let layout = || {
            std::alloc::Layout::from_size_align(self.cap, 4096)
                .unwrap_or(std::alloc::Layout::new::<[u64; 512]>())
        };
        if fresh == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(layout());
        }
        let Some(fresh) = NonNull::new(fresh.cast::<u8>()) else {
            std::alloc::handle_alloc_error(layout());
        };
        match self.mem.compare_exchange(
            std::ptr::null_mut(),
            fresh.as_ptr(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => match NonNull::new(winner) {
                Some(winner) => {
                    // SAFETY: `fresh` is the mapping made just above, never shared.
                    unsafe { libc::munmap(fresh.as_ptr().cast(), self.cap) };
                    winner
                }
                // Unreachable (the exchange only fails on a non-null value); keep ours.
                None => fresh,
            },
        }
    }

    /// Header word at ring offset `off` (8-aligned, `< cap`) of the ring memory `mem`.
    fn header(&self, mem: NonNull<u8>, off: usize) -> &AtomicU64 {
        debug_assert!(off % WORD == 0 && off < self.cap);
        // SAFETY: `mem` is this ring's allocation (it lives as long as `self`); `off` is 8-aligned
        // and inside it, and the allocation is 4096-aligned, so this is a valid, aligned u64.
        unsafe { &*mem.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// Whether nothing is reserved or held (all that was pushed has been consumed).
    pub(crate) fn is_empty(&self) -> bool {
        self.head.0.load(Ordering::Acquire) == self.tail.0.load(Ordering::Acquire)
    }

    /// Whether a published record waits at the head (the consumer's "anything to do?").
    pub(crate) fn has_published(&self) -> bool {
        let Some(mem) = self.mem() else {
            return false;
        };
        let head = self.head.0.load(Ordering::Acquire) as usize;
        self.header(mem, head & (self.cap - 1))
            .load(Ordering::SeqCst)
            != 0
    }

    /// Whether a `len`-byte record would fit now (a hint: other producers may take the room).
    pub(crate) fn can_fit(&self, len: usize) -> bool {
        if WORD + round_up(len) > self.cap / 4 {
            let held = self.big_bytes.load(Ordering::Acquire);
            return held == 0 || held + len <= self.big_limit;
        }
        let used = self
            .tail
            .0
            .load(Ordering::Acquire)
            .saturating_sub(self.head.0.load(Ordering::SeqCst));
        // Worst case the record needs padding to the end of the ring as well.
        used as usize + 2 * (WORD + round_up(len)) <= self.cap
    }

    /// Reserves room for a `len`-byte record, lets `fill` write exactly those bytes, and
    /// publishes it. Lock-free: one CAS on the tail, one swap to publish. The publication is
    /// sequentially consistent, so a caller's SeqCst load after it pairs with the consumer's
    /// SeqCst "arm, then look at the head" (see `SendQueue`).
    pub(crate) fn push(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), Full> {
        if WORD + round_up(len) > self.cap / 4 {
            return self.push_big(len, fill);
        }
        let rec = WORD + round_up(len);
        let mem = self.mem_or_alloc();
        let off = self.reserve(mem, rec)?;
        // SAFETY: [off, off + rec) lies inside the ring (a record never crosses the end: the
        // reservation padded to the end first) and was reserved by us alone: no other producer
        // can reserve it, and the consumer does not read it until we publish the header.
        let body = unsafe { std::slice::from_raw_parts_mut(mem.as_ptr().add(off + WORD), len) };
        fill(body);
        // Publish with a sequentially consistent swap: it orders this store before the caller's
        // check of the consumer's "armed" flag (one locked instruction, no separate fence).
        self.header(mem, off)
            .swap(((len as u64) << 3) | KIND_DATA, Ordering::SeqCst);
        Ok(())
    }

    fn push_big(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), Full> {
        let held = self.big_bytes.load(Ordering::Acquire);
        if held > 0 && held + len > self.big_limit {
            return Err(Full::Ring);
        }
        let mut copy = vec![0u8; len].into_boxed_slice();
        fill(&mut copy);
        let mem = self.mem_or_alloc();
        let off = self.reserve(mem, WORD + 16)?;
        self.big_bytes.fetch_add(len, Ordering::AcqRel);
        let ptr = Box::into_raw(copy) as *mut u8 as usize as u64;
        // SAFETY: as in `push`: 16 reserved bytes after the header, ours alone until published.
        unsafe {
            let body = mem.as_ptr().add(off + WORD).cast::<u64>();
            body.write(ptr);
            body.add(1).write(len as u64);
        }
        self.header(mem, off)
            .swap(((len as u64) << 3) | KIND_BIG, Ordering::SeqCst);
        Ok(())
    }

    /// Claims `rec` bytes, first padding to the ring's end if they would cross it (the padding
    /// record is published at once); returns the ring offset of the claimed bytes.
    fn reserve(&self, mem: NonNull<u8>, rec: usize) -> Result<usize, Full> {
        let mut tail = self.tail.0.load(Ordering::Relaxed);
        loop {
            let head = self.head.0.load(Ordering::Acquire);
            let off = tail as usize & (self.cap - 1);
            let to_end = self.cap - off;
            let pad = if rec > to_end { to_end } else { 0 };
            let need = (pad + rec) as u64;
            // A stale `tail` (other producers moved on, the consumer even past it) may sit below
            // `head`: saturate, and let the compare-exchange below fail and reload it.
            if (tail + need).saturating_sub(head) > self.cap as u64 {
                if self.tail.0.load(Ordering::Acquire) != tail {
                    tail = self.tail.0.load(Ordering::Relaxed);
                    continue;
                }
                return Err(Full::Ring);
            }
            match self.tail.0.compare_exchange_weak(
                tail,
                tail + need,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if pad > 0 {
                        self.header(mem, off)
                            .store(((pad as u64) << 3) | KIND_PAD, Ordering::Release);
                        return Ok(0);
                    }
                    return Ok(off);
                }
                Err(now) => tail = now,
            }
        }
    }

    /// Consumer: appends published records, in order, to `out` until an unpublished one, the
    /// reserved end, or `out` holding `max` bytes. Returns the number of records consumed.
    ///
    /// Only one consumer may run at a time (the send queue calls it under its control lock).
    pub(crate) fn consume_into(&self, out: &mut BytesMut, max: usize) -> usize {
        let Some(mem) = self.mem() else {
            return 0;
        };
        let start = self.head.0.load(Ordering::Acquire);
        let mut head = start;
        let mut records = 0;
        // At most one lap: what was consumed is zeroed only after the loop.
        while out.len() < max && head - start < self.cap as u64 {
            let off = head as usize & (self.cap - 1);
            let word = self.header(mem, off).load(Ordering::Acquire);
            if word == 0 {
                break;
            }
            let (len, kind) = ((word >> 3) as usize, word & 7);
            let rec = match kind {
                KIND_PAD => len,
                KIND_BIG => {
                    // SAFETY: a published BIG record holds a pointer and length written by
                    // `push_big` from `Box::into_raw`; we own it from here on (exactly once: the
                    // header is zeroed below before the head moves past it).
                    let copy = unsafe {
                        let body = mem.as_ptr().add(off + WORD).cast::<u64>();
                        let ptr = body.read() as usize as *mut u8;
                        let n = body.add(1).read() as usize;
                        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
                    };
                    out.extend_from_slice(&copy);
                    self.big_bytes.fetch_sub(copy.len(), Ordering::AcqRel);
                    records += 1;
                    WORD + 16
                }
                _ => {
                    // SAFETY: the header is published (acquire), so the producer's writes to
                    // these `len` bytes happened before; nobody writes them until we zero them
                    // and move the head.
                    let body =
                        unsafe { std::slice::from_raw_parts(mem.as_ptr().add(off + WORD), len) };
                    out.extend_from_slice(body);
                    records += 1;
                    WORD + round_up(len)
                }
            };
            head += rec as u64;
        }
        if head != start {
            // Zero everything consumed (at most one wrap) so that every word is a valid
            // "unpublished" header for the next lap's producers, which cannot reserve any of it
            // before the head store below. One call per batch, not per record.
            let from = start as usize & (self.cap - 1);
            let len = (head - start) as usize;
            let first = len.min(self.cap - from);
            // SAFETY: [from, from + first) and [0, len - first) lie inside the ring and hold
            // only records consumed above; no producer writes them until the head moves.
            unsafe {
                std::ptr::write_bytes(mem.as_ptr().add(from), 0, first);
                std::ptr::write_bytes(mem.as_ptr(), 0, len - first);
            }
            self.head.0.store(head, Ordering::SeqCst);
        }
        records
    }
}

impl Drop for FrameRing {
    fn drop(&mut self) {
        // Free the heap copies of BIG records nobody consumed.
        let mut sink = BytesMut::new();
        while self.consume_into(&mut sink, usize::MAX) > 0 {
            sink.clear();
        }
        if let Some(mem) = self.mem() {
            // SAFETY: mapped by `mem_or_alloc` with this length; no producer or consumer remains
            // (&mut self).
            unsafe { libc::munmap(mem.as_ptr().cast(), self.cap) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(producer: u8, seq: u32, len: usize) -> Vec<u8> {
        let mut v = vec![producer; len.max(5)];
        v[1..5].copy_from_slice(&seq.to_le_bytes());
        v.truncate(len.max(5));
        v
    }

    #[test]
    fn fifo_with_wraparound_and_padding() {
        let ring = FrameRing::new(4096);
        let mut out = BytesMut::new();
        let mut expect = Vec::new();
        for i in 0..10_000u32 {
            let len = 5 + (i as usize * 37) % 300;
            let rec = record(1, i, len);
            if ring.push(rec.len(), |b| b.copy_from_slice(&rec)).is_err() {
                ring.consume_into(&mut out, usize::MAX);
                ring.push(rec.len(), |b| b.copy_from_slice(&rec)).unwrap();
            }
            expect.extend_from_slice(&rec);
        }
        ring.consume_into(&mut out, usize::MAX);
        assert_eq!(&out[..], &expect[..]);
        assert!(ring.is_empty());
    }

    #[test]
    fn full_ring_refuses_until_consumed() {
        let ring = FrameRing::new(4096);
        let mut n = 0;
        while ring.push(100, |b| b.fill(7)).is_ok() {
            n += 1;
        }
        assert!(n > 0 && n < 4096 / 100 + 1);
        let mut out = BytesMut::new();
        assert_eq!(ring.consume_into(&mut out, usize::MAX), n);
        assert!(ring.push(100, |b| b.fill(7)).is_ok());
    }

    #[test]
    fn big_records_are_bounded_and_freed() {
        let ring = FrameRing::new(4096);
        let big = vec![9u8; 3000];
        // One big record is let in whatever its size; a second would hold 6000 > 4096 bytes.
        ring.push(big.len(), |b| b.copy_from_slice(&big)).unwrap();
        assert_eq!(
            ring.push(big.len(), |b| b.copy_from_slice(&big)),
            Err(Full::Ring)
        );
        let mut out = BytesMut::new();
        ring.consume_into(&mut out, usize::MAX);
        assert_eq!(&out[..], &big[..]);
        ring.push(big.len(), |b| b.copy_from_slice(&big)).unwrap();
        drop(ring); // frees the unconsumed copy (checked by Miri/ASan runs)
    }

    #[test]
    fn concurrent_producers_keep_their_order_and_never_interleave() {
        const PRODUCERS: u8 = 6;
        const EACH: u32 = 50_000;
        let ring = Arc::new(FrameRing::new(64 * 1024));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for seq in 0..EACH {
                        let rec = record(p, seq, 5 + (seq as usize % 200));
                        while ring.push(rec.len(), |b| b.copy_from_slice(&rec)).is_err() {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u32; PRODUCERS as usize];
        let mut out = BytesMut::new();
        let total = u64::from(PRODUCERS) * u64::from(EACH);
        let mut seen = 0u64;
        while seen < total {
            out.clear();
            if ring.consume_into(&mut out, usize::MAX) == 0 {
                std::thread::yield_now();
                continue;
            }
            // Records are self-describing here: producer byte, seq, then filler of the
            // producer byte, with length 5 + seq % 200.
            let mut at = 0;
            while at < out.len() {
                let p = out[at];
                let seq = u32::from_le_bytes([out[at + 1], out[at + 2], out[at + 3], out[at + 4]]);
                let len = 5 + (seq as usize % 200);
                assert_eq!(seq, next[p as usize], "producer {p} out of order");
                assert_eq!(&out[at..at + len], &record(p, seq, len)[..]);
                next[p as usize] += 1;
                at += len;
                seen += 1;
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert!(ring.is_empty());
    }
}
