//! The few raw syscalls the epoll backend makes on sockets it owns: nonblocking receive,
//! `accept4`, and draining the wake-up eventfd (its sends are `direct::send_outbox`, shared
//! with the io_uring core). Every `unsafe` block of the backend is here.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One nonblocking `recv` into `buf`: `Ok(0)` is the peer's EOF.
pub(super) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the whole call, and `fd`
    // is a socket borrowed from its owner for the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Accepts one connection (blocking, close-on-exec: every call on it passes `MSG_DONTWAIT`) and returns it with the peer's address
/// (`None` if the kernel gave an address that is not IPv4 or IPv6).
pub(super) fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: `try_init` hands us zeroed storage of the maximum size and its length; accept4
    // writes at most that many bytes of a sockaddr of the family it reports, and updates the
    // length, which is what `try_init` requires.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: a successful accept4 returns a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, addr.as_socket()))
}

/// Resets the wake-up eventfd's counter (a nonblocking 8-byte read; "nothing to read" is fine).
pub(super) fn drain_eventfd(fd: std::os::fd::RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64 on our stack. The eventfd is nonblocking
    // (EFD_NONBLOCK), so this never waits; EAGAIN just means it was already drained.
    unsafe {
        libc::read(fd, std::ptr::addr_of_mut!(value).cast(), 8);
    }
}
