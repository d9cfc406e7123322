//! Anonymous memory mappings, the one place this crate and `buffstreams` call `mmap`, `mremap`
//! and `munmap`: `buffstreams`' io_uring receive ring's buffers, and the assembly of large
//! frames (whose memory then goes back to the system when they are done, whatever the allocator
//! would keep).
//!
//! Internal plumbing, public (and hidden from the documentation) only so that `buffstreams` can
//! use it: not a stable API.

use std::io;
use std::ptr::NonNull;

/// Anonymous, private, page-aligned memory of whole pages, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    /// Whole pages.
    len: usize,
}

// SAFETY: a `Mapping` owns its memory alone, as a `Vec<u8>` owns its allocation: moving it to
// another thread moves that ownership. Writing through its pointer is up to its owner, who
// holds it by `&mut` or documents who else may write (the kernel, for the receive ring).
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` offers only the address and the length.
unsafe impl Sync for Mapping {}

/// The system's page size.
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

/// `bytes` rounded up to whole pages.
fn whole_pages(bytes: usize) -> io::Result<usize> {
    let page = page_size();
    bytes
        .checked_add(page - 1)
        .map(|b| b / page * page)
        .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
}

/// `Ok(ptr)`, or the call's `errno` if it returned `MAP_FAILED`.
fn mapped(ptr: *mut libc::c_void) -> io::Result<*mut libc::c_void> {
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr)
    }
}

// `len` is never 0 (`mmap` refuses an empty mapping), so there is no `is_empty`.
#[allow(clippy::len_without_is_empty)]
impl Mapping {
    /// At least `len` bytes (whole pages), zeroed; with `populate`, faulted in at once
    /// (`MAP_POPULATE`).
    pub fn new(len: usize, populate: bool) -> io::Result<Mapping> {
        let len = whole_pages(len)?;
        let populate = if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
        // result is checked against MAP_FAILED before use.
        let ptr = mapped(unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate,
                -1,
                0,
            )
        })?;
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }

    /// Grows (or shrinks) to at least `len` bytes, keeping the contents; the memory may move
    /// (`MREMAP_MAYMOVE`). Unchanged on failure.
    pub fn remap(&mut self, len: usize) -> io::Result<()> {
        let len = whole_pages(len)?;
        // SAFETY: `ptr`/`self.len` are exactly the mapping this owns. With MREMAP_MAYMOVE the
        // kernel may move it; the old address is replaced below and not used again, and the
        // `&mut self` means nobody holds a reference into it.
        let ptr = mapped(unsafe {
            libc::mremap(
                self.ptr.as_ptr().cast(),
                self.len,
                len,
                libc::MREMAP_MAYMOVE,
            )
        })?;
        if let Some(ptr) = NonNull::new(ptr.cast::<u8>()) {
            self.ptr = ptr;
            self.len = len;
        }
        Ok(())
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping this owns, unmapped only here. Its
        // owner makes sure nothing (the kernel included) still writes it: the receive ring's
        // buffers are dropped only after the ring that could write into them.
        let _ = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
