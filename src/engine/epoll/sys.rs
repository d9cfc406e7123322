//! The few raw syscalls the epoll backend makes on sockets it owns: nonblocking receive,
//! `accept4`, and draining the wake-up eventfd (its sends are `direct::send_outbox`, shared
//! with the io_uring core). Every `unsafe` block and system call of the backend is here.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One nonblocking `recv` into `buf`: `Ok(0)` is the peer's EOF.
pub(super) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the whole call, and `fd`
    // is a socket borrowed from its owner for the call.
    let n = syscall!(recv(
        fd.as_raw_fd(),
        buf.as_mut_ptr().cast(),
        buf.len(),
        libc::MSG_DONTWAIT,
    ))?;
    Ok(n as usize)
}

/// Accepts one connection (blocking, close-on-exec: every call on it passes `MSG_DONTWAIT`) and returns it with the peer's address
/// (`None` if the kernel gave an address that is not IPv4 or IPv6).
pub(super) fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    let accept = |storage: *mut socket2::SockAddrStorage, len: *mut socket2::socklen_t| {
        // SAFETY: `storage` and `len` are the live storage and its length that `try_init` lends
        // for the call; `listener` is a socket borrowed from its owner.
        syscall!(accept4(
            listener.as_raw_fd(),
            storage.cast(),
            len,
            libc::SOCK_CLOEXEC,
        ))
    };
    // SAFETY: `try_init` hands `accept` zeroed storage of the maximum size and its length;
    // accept4 writes at most that many bytes of a sockaddr of the family it reports, and
    // updates the length, which is what `try_init` requires.
    let (fd, addr) = unsafe { socket2::SockAddr::try_init(accept)? };
    // SAFETY: a successful accept4 returns a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, addr.as_socket()))
}

/// Resets the wake-up eventfd's counter (a nonblocking 8-byte read; "nothing to read" is fine).
pub(super) fn drain_eventfd(fd: std::os::fd::RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64 on our stack. The eventfd is nonblocking
    // (EFD_NONBLOCK), so this never waits; EAGAIN just means it was already drained.
    let _ = syscall!(read(fd, std::ptr::addr_of_mut!(value).cast(), 8));
}
