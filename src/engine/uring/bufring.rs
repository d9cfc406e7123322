//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the receive side's registered buffers.
//!
//! One ring per core. The kernel picks a free buffer for every multishot receive completion and
//! tells us its id; we parse frames in place and hand the buffer back with [`BufRing::recycle`],
//! publishing all buffers returned in one loop turn with a single tail store ([`BufRing::commit`]).
//!
//! Where the kernel supports it (6.12, `IOU_PBUF_RING_INC`), buffers are consumed incrementally:
//! a 110-byte receive takes 110 bytes of a buffer, not all of it, so a small ring serves many
//! connections; a completion flagged `BUF_MORE` leaves the rest of its buffer with the kernel.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

use buffstreams_frame::mapping::Mapping;

/// The kernel's `struct io_uring_buf`; the `resv` field of entry 0 doubles as the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A registered ring of `entries` receive buffers of `buf_size` bytes each.
///
/// Must be dropped after the `IoUring` it is registered with (the core declares the ring first),
/// and only once no operation that selects from it is in flight.
pub(crate) struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: u32,
    local_tail: u16,
    bgid: u16,
    /// Registered with `IOU_PBUF_RING_INC`.
    incremental: bool,
    /// Bytes of each buffer already handed out by earlier completions (incremental mode).
    offsets: Vec<u32>,
}

/// The bytes one receive completion delivered, located in the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Filled {
    bid: u16,
    start: usize,
    len: usize,
    /// The buffer is finished with: recycle it after use.
    done: bool,
}

impl Filled {
    /// The buffer id.
    pub(crate) fn bid(&self) -> u16 {
        self.bid
    }

    /// Whether the kernel is done with the buffer (it must then be recycled).
    pub(crate) fn done(&self) -> bool {
        self.done
    }
}

const IOU_PBUF_RING_INC: u16 = 2;

impl BufRing {
    /// Allocates the ring and its buffers, fills the ring and registers it as group `bgid`.
    pub(crate) fn new(
        uring: &IoUring,
        entries: u16,
        buf_size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two <= 32768 and buffers non-empty",
            ));
        }
        let ring_len = usize::from(entries) * std::mem::size_of::<RawBuf>();
        let ring = Mapping::new(ring_len, true)?;
        let bufs = Mapping::new(usize::from(entries) * buf_size as usize, true)?;
        let mut this = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            local_tail: 0,
            bgid,
            incremental: true,
            offsets: vec![0; usize::from(entries)],
        };
        let register = |flags: u16| {
            // SAFETY: the mapping is private to this BufRing, page aligned, `entries` entries
            // long, and lives until this BufRing drops, which the core arranges after the ring.
            unsafe {
                uring.submitter().register_buf_ring_with_flags(
                    this.ring.as_ptr() as u64,
                    entries,
                    bgid,
                    flags,
                )
            }
        };
        if let Err(err) = register(IOU_PBUF_RING_INC) {
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
            register(0)?;
            this.incremental = false;
        }
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.commit();
        Ok(this)
    }

    /// The buffer group id to name in `RecvMulti`.
    pub(crate) fn group(&self) -> u16 {
        self.bgid
    }

    /// Whether buffers are consumed incrementally (`IOU_PBUF_RING_INC`).
    pub(crate) fn incremental(&self) -> bool {
        self.incremental
    }

    /// Locates the `len` bytes a completion delivered into buffer `bid`; `buf_more` is the
    /// completion's `IORING_CQE_F_BUF_MORE` flag. Returns `None` for an id or length the ring
    /// never handed out (a kernel contract violation, reported by the caller, not trusted).
    pub(crate) fn take(&mut self, bid: u16, len: usize, buf_more: bool) -> Option<Filled> {
        let offset = *self.offsets.get(usize::from(bid))? as usize;
        if offset + len > self.buf_size as usize {
            return None;
        }
        let done = !(self.incremental && buf_more);
        self.offsets[usize::from(bid)] = if done { 0 } else { (offset + len) as u32 };
        Some(Filled {
            bid,
            start: usize::from(bid) * self.buf_size as usize + offset,
            len,
            done,
        })
    }

    /// The bytes of a completion located by [`BufRing::take`].
    pub(crate) fn bytes(&self, filled: &Filled) -> &[u8] {
        // SAFETY: `take` checked that [start, start + len) lies inside buffer `bid` and inside
        // the mapping. The kernel wrote these bytes before posting the completion and does not
        // touch them again: in incremental mode it only writes past them, otherwise not at all
        // until the buffer is recycled, which needs `&mut self` and so cannot overlap this borrow.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(filled.start), filled.len) }
    }

    /// Hands buffer `bid` back to the kernel (visible after the next [`BufRing::commit`]).
    pub(crate) fn recycle(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let mask = self.entries - 1;
        let index = usize::from(self.local_tail & mask);
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `index < entries`, so the entry lies inside the ring mapping. The kernel only
        // reads entries between its head and the published tail; this one is past the published
        // tail until `commit`, so the kernel is not reading it now. The fields are written through
        // raw pointers, never a reference, because `resv` of entry 0 is the tail the kernel reads.
        unsafe {
            let entry = self.ring.as_ptr().cast::<RawBuf>().add(index);
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.buf_size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.local_tail = self.local_tail.wrapping_add(1);
    }

    /// Publishes every recycled buffer to the kernel with one release store of the tail.
    pub(crate) fn commit(&self) {
        // SAFETY: the tail is the `resv` field of the first ring entry, a 2-byte aligned u16
        // inside our mapping that the kernel reads concurrently; we only ever access it
        // atomically, as liburing's `io_uring_buf_ring_advance` does.
        unsafe {
            let tail = std::ptr::addr_of_mut!((*self.ring.as_ptr().cast::<RawBuf>()).resv);
            (*tail.cast::<AtomicU16>()).store(self.local_tail, Ordering::Release);
        }
    }
}
