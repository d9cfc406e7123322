//! The buffer a frame split across receives is assembled in.
//!
//! Small frames use a `Vec`. With the `mmap` feature (the default), past [`MAP_ABOVE`] the bytes
//! move to a memory mapping of their own, which grows in place or by remapping pages (`mremap`,
//! no copy) and is unmapped when the frame is delivered or its decoder dropped. So the memory of
//! a large frame goes back to the system at once, whatever the allocator would have kept: a
//! burst of peers that each held an 8 MiB frame leaves nothing behind once they are gone.
//! Without the feature, every frame is assembled in a `Vec`, grown and freed the same way.

#[cfg(feature = "mmap")]
use std::alloc::{handle_alloc_error, Layout};
use std::fmt;

#[cfg(feature = "mmap")]
use crate::mapping::Mapping;

/// Frames assembled in more than this many bytes get a mapping of their own (`mmap` feature).
#[cfg(any(feature = "mmap", test))]
pub(crate) const MAP_ABOVE: usize = 128 * 1024;

/// A growable byte buffer: a `Vec` up to [`MAP_ABOVE`] bytes, a private mapping beyond (a `Vec`
/// throughout without the `mmap` feature).
#[derive(Default)]
pub(crate) struct Assembly {
    vec: Vec<u8>,
    map: Option<Mapped>,
}

impl fmt::Debug for Assembly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembly")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("mapped", &self.map.is_some())
            .finish()
    }
}

impl Assembly {
    pub(crate) fn len(&self) -> usize {
        self.map.as_ref().map_or(self.vec.len(), Mapped::len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.as_ref().map_or(self.vec.capacity(), |m| m.cap())
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.map {
            Some(m) => m.as_slice(),
            None => &self.vec,
        }
    }

    /// Grows the capacity to at least `capacity` bytes.
    pub(crate) fn reserve_total(&mut self, capacity: usize) {
        if capacity <= self.capacity() {
            return;
        }
        match &mut self.map {
            Some(m) => m.grow(capacity),
            #[cfg(feature = "mmap")]
            None if capacity > MAP_ABOVE => {
                let mut m = Mapped::new(capacity);
                m.extend(&self.vec);
                self.vec = Vec::new();
                self.map = Some(m);
            }
            None => self.vec.reserve_exact(capacity - self.vec.len()),
        }
    }

    /// Appends `bytes`, growing to exactly what they need if the capacity is short.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve_total(self.len() + bytes.len());
        match &mut self.map {
            Some(m) => m.extend(bytes),
            None => self.vec.extend_from_slice(bytes),
        }
    }

    /// Empties the buffer, keeping its memory only if it is a `Vec` of at most `keep` bytes.
    pub(crate) fn clear(&mut self, keep: usize) {
        if self.map.take().is_some() || self.vec.capacity() > keep {
            self.vec = Vec::new();
        } else {
            self.vec.clear();
        }
    }
}

/// Without the `mmap` feature no frame is mapped: this type has no values, and the branches that
/// use it are never taken.
#[cfg(not(feature = "mmap"))]
enum Mapped {}

#[cfg(not(feature = "mmap"))]
impl Mapped {
    fn len(&self) -> usize {
        match *self {}
    }

    fn cap(&self) -> usize {
        match *self {}
    }

    fn grow(&mut self, _capacity: usize) {
        match *self {}
    }

    fn extend(&mut self, _bytes: &[u8]) {
        match *self {}
    }

    fn as_slice(&self) -> &[u8] {
        match *self {}
    }
}

/// A mapping, the first `len` bytes of it written.
#[cfg(feature = "mmap")]
struct Mapped {
    map: Mapping,
    len: usize,
}

/// Aborts as a failed allocation of `bytes` does.
#[cfg(feature = "mmap")]
fn out_of_memory(bytes: usize) -> ! {
    handle_alloc_error(Layout::from_size_align(bytes.max(1), 1).unwrap_or(Layout::new::<u8>()))
}

#[cfg(feature = "mmap")]
impl Mapped {
    fn new(capacity: usize) -> Mapped {
        match Mapping::new(capacity, false) {
            Ok(map) => Mapped { map, len: 0 },
            Err(_) => out_of_memory(capacity),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn cap(&self) -> usize {
        self.map.len()
    }

    fn grow(&mut self, capacity: usize) {
        if self.map.remap(capacity).is_err() {
            out_of_memory(capacity);
        }
    }

    /// Appends `bytes`, which must fit in the capacity.
    fn extend(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.cap(), "Mapped::extend past the capacity");
        // SAFETY: [len, end) lies inside the mapping (checked above), which this owns alone
        // (`&mut self`); `bytes` cannot overlap it, as nothing else holds a reference into it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len = end;
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping were written by `extend`; the mapping
        // lives as long as `self`, and nothing writes it while this borrow lasts.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_a_vec_into_a_mapping_and_keeps_every_byte() {
        let mut a = Assembly::default();
        let mut expect = Vec::new();
        let mut i = 0u32;
        while a.len() < 3 * MAP_ABOVE {
            let piece: Vec<u8> = (0..1000).map(|k| (i * 7 + k) as u8).collect();
            if a.len() + piece.len() > a.capacity() {
                a.reserve_total(a.capacity().saturating_mul(2).max(4096));
            }
            a.extend_from_slice(&piece);
            expect.extend_from_slice(&piece);
            i += 1;
        }
        // Mapped past MAP_ABOVE, with the feature; a Vec throughout without it.
        let mapped = cfg!(feature = "mmap");
        assert_eq!((a.map.is_some(), a.vec.capacity() == 0), (mapped, mapped));
        assert_eq!(a.as_slice(), &expect[..]);
        a.clear(16 * 1024);
        assert_eq!((a.len(), a.capacity(), a.map.is_some()), (0, 0, false));
        a.extend_from_slice(b"abc");
        a.clear(16 * 1024);
        assert!(a.capacity() >= 3, "a small Vec is kept");
    }

    #[test]
    #[cfg(feature = "mmap")]
    fn a_large_frame_is_unmapped_when_cleared() {
        const BIG: usize = 8 << 20;
        let mut a = Assembly::default();
        a.reserve_total(BIG);
        a.extend_from_slice(&vec![0x5a; BIG]);
        let (addr, len) = a.map.as_ref().map(|m| (m.map.as_ptr(), m.cap())).unwrap();
        let mut pages = vec![0u8; len / 4096];
        let mapped = |pages: &mut Vec<u8>| {
            // SAFETY: mincore only reports on the range (ENOMEM once unmapped, no access);
            // `pages` is live and has one byte per page of it.
            unsafe { libc::mincore(addr.cast(), len, pages.as_mut_ptr()) == 0 }
        };
        assert!(mapped(&mut pages) && pages.iter().all(|p| p & 1 == 1));
        a.clear(16 * 1024);
        assert!(!mapped(&mut pages), "the frame's pages are still mapped");
    }

    #[test]
    #[cfg(not(feature = "mmap"))]
    fn without_mmap_a_large_frame_is_a_vec_freed_when_cleared() {
        const BIG: usize = 8 << 20;
        let mut a = Assembly::default();
        a.reserve_total(BIG);
        a.extend_from_slice(&vec![0x5a; BIG]);
        assert_eq!((a.len(), a.map.is_none()), (BIG, true));
        assert!(a.capacity() >= BIG);
        assert!(a.as_slice().iter().all(|&b| b == 0x5a));
        a.clear(16 * 1024);
        assert_eq!((a.len(), a.capacity()), (0, 0));
    }
}
