//! `io_uring_enter` through a registered ring descriptor (`IORING_REGISTER_RING_FDS`, 5.18+):
//! the kernel then skips looking the ring's file up on every enter.
//!
//! An enter through the registered index is cheaper than through the plain descriptor
//! (measured: see docs/benchmarks.md, 'registered ring'). The `io-uring` crate keeps the registered index inside
//! a `Submitter` that `IoUring::submitter()` builds afresh on every call, so the index is kept
//! here and the two system calls are made directly. On a kernel without the feature, enters use
//! the plain descriptor.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::IoUring;

/// `IORING_REGISTER_RING_FDS` / `IORING_UNREGISTER_RING_FDS` (io_uring_register opcodes 20, 21).
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;
/// `IORING_ENTER_REGISTERED_RING`: the descriptor argument is a registered index.
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;

/// `struct io_uring_rsrc_update` of the kernel's uapi.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// How a core enters its ring: the registered index when the kernel gave one. Must be dropped
/// before the ring (it unregisters through the ring's descriptor). It is not `Send`: the
/// registration belongs to the thread that made it, like the ring's single issuer.
pub(crate) struct Enter {
    fd: RawFd,
    registered: Option<u32>,
    /// Not `Send`: the registered index belongs to the thread that registered it.
    _thread: PhantomData<*const ()>,
}

impl Enter {
    /// Registers `ring`'s descriptor for the calling thread, or falls back to the plain one.
    pub(crate) fn new(ring: &IoUring) -> Enter {
        let fd = ring.as_raw_fd();
        let mut update = RsrcUpdate {
            // u32::MAX: let the kernel pick a free index and write it back here.
            offset: u32::MAX,
            resv: 0,
            data: fd as u64,
        };
        // SAFETY: `update` is a live, correctly laid out io_uring_rsrc_update for the one entry
        // passed; the kernel reads it and writes the chosen index back before returning.
        let res = syscall!(syscall(
            libc::SYS_io_uring_register,
            fd,
            IORING_REGISTER_RING_FDS,
            std::ptr::addr_of_mut!(update),
            1,
        ));
        Enter {
            fd,
            registered: matches!(res, Ok(1)).then_some(update.offset),
            _thread: PhantomData,
        }
    }

    /// Whether enters go through a registered index.
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// `io_uring_enter(to_submit, min_complete, flags)` with no extra argument.
    ///
    /// # Safety
    /// Every SQE queued must point at memory that stays valid until its completion, as for
    /// `io_uring::Submitter::enter`.
    pub(crate) unsafe fn enter(&self, to_submit: u32, want: u32, flags: u32) -> io::Result<()> {
        let (fd, flags) = match self.registered {
            Some(index) => (index as libc::c_long, flags | IORING_ENTER_REGISTERED_RING),
            None => (self.fd as libc::c_long, flags),
        };
        // SAFETY: no argument pointer is passed (null, size 0); what the SQEs point at is the
        // caller's promise.
        syscall!(syscall(
            libc::SYS_io_uring_enter,
            fd,
            to_submit,
            want,
            flags,
            std::ptr::null::<libc::c_void>(),
            0usize,
        ))?;
        Ok(())
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let Some(index) = self.registered else {
            return;
        };
        let update = RsrcUpdate {
            offset: index,
            resv: 0,
            data: 0,
        };
        // SAFETY: as in `new`; the ring's descriptor is still open (this is dropped first).
        // A failure leaves the registration to be released when the thread exits.
        let _ = syscall!(syscall(
            libc::SYS_io_uring_register,
            self.fd,
            IORING_UNREGISTER_RING_FDS,
            std::ptr::addr_of!(update),
            1,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    #[test]
    fn a_nop_completes_through_the_registered_ring() {
        let mut ring = IoUring::new(8).expect("ring");
        let enter = Enter::new(&ring);
        if crate::engine::kernel::kernel_version().is_some_and(|v| v >= (5, 18)) {
            assert!(enter.is_registered(), "5.18+ registers the ring descriptor");
        }
        for round in 0..3u64 {
            let nop = opcode::Nop::new().build().user_data(round);
            // SAFETY: a NOP points at no memory.
            unsafe { ring.submission().push(&nop) }.expect("room");
            // SAFETY: as above.
            unsafe { enter.enter(1, 1, 1) }.expect("enter");
            let cqe = ring.completion().next().expect("a completion");
            assert_eq!(cqe.user_data(), round);
        }
    }
}
