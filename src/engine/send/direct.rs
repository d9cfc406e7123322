//! Sends made by a plain syscall rather than the ring: an outbox's ([`send_outbox`], the epoll
//! backend's and the io_uring core's lone reply); and a producer thread's nonblocking `sendmsg` straight from the chunks of a
//! batch it hands on, when nobody else is sending on the connection (see `SendQueue`), and, if
//! the socket's buffer was too full to take it all, more of them as the buffer drains (waiting
//! in `poll` for room, as a blocking `write` would) for at most [`FINISH_WITHIN`]. What is left
//! then stays queued for the core, whose ring finishes it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::engine::send::chunk::Chunk;
use crate::engine::send::outbox::Outbox;

/// At most this many chunks (1 MiB) go into one direct send: a `BufferedWriter`'s largest batch.
pub(crate) const MAX_IOV: usize = 64;

/// How long a producer thread goes on sending a batch the socket did not take at once. Waking
/// the core for the rest costs a wake-up and two context switches per batch, and a streaming
/// producer would wait for room in the queue next anyway (measured here with 1 MiB batches of
/// 110-byte messages: 9-12% less client CPU per message; see the README).
pub(crate) const FINISH_WITHIN: Duration = Duration::from_millis(100);

/// One `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` of the unsent bytes of the first chunks of
/// `chunks`, skipping the first `skip` of them (already sent); returns how many bytes the
/// kernel took.
pub(crate) fn send_chunks(
    fd: &OwnedFd,
    chunks: &VecDeque<Chunk>,
    skip: usize,
) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let mut n = 0;
    let mut skip = skip;
    for chunk in chunks.iter().take(MAX_IOV) {
        let unsent = chunk.unsent();
        if skip >= unsent.len() {
            skip -= unsent.len();
            continue;
        }
        let rest = &unsent[skip..];
        skip = 0;
        iov[n] = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: msghdr is plain C data; all-zero means no name and no control data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n as _;
    // SAFETY: `msg` and `iov` live on this stack frame for the whole call; each iovec covers
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

/// One nonblocking `sendmsg` of the unsent bytes of `out` (at most [`MAX_CHUNKS_PER_SEND`]
/// chunks; [`Outbox::span_len`] says how many bytes that covers), as much as the kernel takes.
/// The epoll backend sends with it, and the io_uring core for a lone reply (no operation, no
/// completion to wait for). `MSG_NOSIGNAL`: a peer that went away gives `EPIPE`, never a
/// `SIGPIPE` that would kill the process.
///
/// [`MAX_CHUNKS_PER_SEND`]: crate::engine::send::outbox::MAX_CHUNKS_PER_SEND
pub(crate) fn send_outbox(fd: &OwnedFd, out: &mut Outbox) -> io::Result<usize> {
    let msg = out.msghdr();
    // SAFETY: `msg` points at a msghdr owned by `out` whose iovecs cover live chunk memory
    // owned by `out`; `out` is borrowed mutably for the whole call, so none of it changes or
    // moves, and the kernel copies the bytes before returning (a plain, not zero-copy, send).
    // `fd` is an open socket kept alive by the caller's reference.
    let sent =
        unsafe { libc::sendmsg(fd.as_raw_fd(), msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Sends `chunks` from this thread: once at once, then, while the socket's buffer drains, the
/// rest, until it is all sent, the connection fails, or [`FINISH_WITHIN`] passes. Returns the
/// bytes the kernel took (an error before any byte counts as none: the core's own send meets
/// it and closes the connection).
pub(crate) fn send_batch(fd: &OwnedFd, chunks: &VecDeque<Chunk>) -> usize {
    let total: usize = chunks.iter().take(MAX_IOV).map(|c| c.unsent().len()).sum();
    let mut sent = send_chunks(fd, chunks, 0).unwrap_or(0);
    if sent == 0 || sent >= total {
        return sent;
    }
    let deadline = Instant::now() + FINISH_WITHIN;
    while sent < total {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !writable(fd, left) {
            break;
        }
        match send_chunks(fd, chunks, sent) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

/// Waits until `fd` can take more bytes (or reports an error or hang-up), for at most `wait`.
fn writable(fd: &OwnedFd, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `pfd` is one live pollfd on this stack frame, and the count passed is 1.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    ready > 0 && pfd.revents & libc::POLLOUT != 0
}
