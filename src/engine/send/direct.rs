//! The one syscall a producer thread makes: a nonblocking `sendmsg` straight from the chunks,
//! when enough waits to be worth a syscall and nobody else is sending on the connection (see
//! `SendQueue`). What the kernel does not take stays queued for the core, whose ring finishes it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::engine::send::chunk::Chunk;

/// At most this many chunks (1 MiB) go into one direct send: a `BufferedWriter`'s largest batch.
pub(crate) const MAX_IOV: usize = 64;

/// One `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` of the unsent bytes of the first chunks of
/// `chunks`; returns how many bytes the kernel took.
pub(crate) fn send_chunks(fd: &OwnedFd, chunks: &VecDeque<Chunk>) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let mut n = 0;
    for chunk in chunks.iter().take(MAX_IOV) {
        let unsent = chunk.unsent();
        iov[n] = libc::iovec {
            iov_base: unsent.as_ptr() as *mut libc::c_void,
            iov_len: unsent.len(),
        };
        n += 1;
    }
    // SAFETY: msghdr is plain C data; all-zero means no name and no control data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n as _;
    // SAFETY: `msg` and `iov` live on this stack frame for the whole call; each iovec covers the
    // unsent bytes of a chunk borrowed for the call, so that memory stays alive and unchanged;
    // the kernel copies it before returning (a plain, not zero-copy, send). `fd` is an open
    // socket kept alive by the caller's reference.
    let sent = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
