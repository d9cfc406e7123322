//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the receive side's registered buffers.
//!
//! One ring per core. The kernel picks a free buffer for every multishot receive completion and
//! tells us its id; we parse frames in place and hand the buffer back with [`BufRing::recycle`],
//! publishing all buffers returned in one loop turn with a single tail store ([`BufRing::commit`]).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

/// The kernel's `struct io_uring_buf`; the `resv` field of entry 0 doubles as the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Anonymous, private, page-aligned memory released on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
        // result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `new`, unmapped only here.
        // The owner (BufRing) is dropped only after the ring that could write into it is gone.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
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
}

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
        let ring = Mapping::new(ring_len)?;
        let bufs = Mapping::new(usize::from(entries) * buf_size as usize)?;
        let mut this = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            local_tail: 0,
            bgid,
        };
        // SAFETY: the mapping is private to this BufRing, page aligned, `entries` entries long,
        // and lives until this BufRing drops, which the core arranges after the ring is gone.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                this.ring.ptr.as_ptr() as u64,
                entries,
                bgid,
                0,
            )?;
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

    /// The bytes the kernel wrote into buffer `bid`.
    ///
    /// Returns `None` for an id or length the ring never handed out (a kernel contract
    /// violation, reported as an error by the caller instead of trusted).
    pub(crate) fn filled(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.entries || len > self.buf_size as usize {
            return None;
        }
        let offset = usize::from(bid) * self.buf_size as usize;
        // SAFETY: `bid < entries` and `len <= buf_size`, so the range lies inside `bufs`. The
        // kernel handed this buffer to us in a completion and does not touch it again until we
        // recycle it, which needs `&mut self` and so cannot happen while this borrow lives.
        Some(unsafe { std::slice::from_raw_parts(self.bufs.ptr.as_ptr().add(offset), len) })
    }

    /// Hands buffer `bid` back to the kernel (visible after the next [`BufRing::commit`]).
    pub(crate) fn recycle(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let mask = self.entries - 1;
        let index = usize::from(self.local_tail & mask);
        let addr = self.bufs.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `index < entries`, so the entry lies inside the ring mapping. The kernel only
        // reads entries between its head and the published tail; this one is past the published
        // tail until `commit`, so the kernel is not reading it now. The fields are written through
        // raw pointers, never a reference, because `resv` of entry 0 is the tail the kernel reads.
        unsafe {
            let entry = self.ring.ptr.as_ptr().cast::<RawBuf>().add(index);
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
            let tail = std::ptr::addr_of_mut!((*self.ring.ptr.as_ptr().cast::<RawBuf>()).resv);
            (*tail.cast::<AtomicU16>()).store(self.local_tail, Ordering::Release);
        }
    }
}
