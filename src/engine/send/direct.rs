//! Sends made by a plain syscall rather than the ring: an outbox's ([`send_outbox`], the epoll
//! backend's and the io_uring core's lone reply, always `MSG_DONTWAIT`); and a producer
//! thread's ([`send_batch`]): the chunks of a batch it hands on, or of a queue it flushes, when
//! nobody else is sending on the connection (see `SendQueue`). The engine's sockets are
//! blocking, so a producer's `sendmsg` waits for room inside the kernel as the peer reads, as a
//! `write` under `std::io::BufWriter` does, bounded by `SO_SNDTIMEO` ([`FINISH_WITHIN`]). What
//! is left then stays queued for the core, whose ring finishes it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::engine::send::chunk::Chunk;
use crate::engine::send::outbox::Outbox;

/// At most this many chunks (1 MiB) go into one `sendmsg`.
pub(crate) const MAX_IOV: usize = 64;

/// At most this many chunks go out in one producer's direct send (several `sendmsg`s): a
/// `BufferedWriter`'s largest batch (1 MiB of frames, which seldom fill their 16 KiB chunks to
/// the byte, so it spans a few more than 64) with room to spare.
pub(crate) const MAX_BATCH_CHUNKS: usize = 4 * MAX_IOV;

/// How long a producer thread goes on sending a batch the socket did not take at once (and the
/// `SO_SNDTIMEO` of the engine's sockets). Waking the core for the rest costs a wake-up and two
/// context switches per batch, and a streaming producer would wait for room in the queue next
/// anyway; a peer that stops reading holds a producer's send no longer than this (twice this
/// at most, for a call that starts just before the deadline).
pub(crate) const FINISH_WITHIN: Duration = Duration::from_millis(100);

/// One `sendmsg` of the unsent bytes of the first chunks of `chunks`, skipping the first `skip`
/// of them (already sent); returns how many bytes the kernel took. Without `MSG_DONTWAIT`: a
/// blocking socket waits for room inside the call, for at most its `SO_SNDTIMEO` (see
/// [`bound_blocking_sends`]); a nonblocking one takes what fits.
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
    for chunk in chunks.iter() {
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
        if n == MAX_IOV {
            break;
        }
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
    let sent = syscall!(sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))?;
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
    let sent = syscall!(sendmsg(
        fd.as_raw_fd(),
        msg,
        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL
    ))?;
    Ok(sent as usize)
}

/// Bounds a blocking send on `fd` to [`FINISH_WITHIN`] (`SO_SNDTIMEO`), so that a producer's
/// [`send_batch`] never waits longer for a peer that stopped reading. Called when a socket is
/// attached to a send queue; the engine's own sends never block (the ring's sends and every
/// syscall of the core's pass `MSG_DONTWAIT`), so the timeout bounds producers' sends only.
pub(crate) fn bound_blocking_sends(fd: &OwnedFd) -> io::Result<()> {
    socket2::SockRef::from(fd).set_write_timeout(Some(FINISH_WITHIN))
}

/// Sends `chunks` from this thread, until it is all sent, the connection fails, or
/// [`FINISH_WITHIN`] passes, [`MAX_IOV`] chunks per `sendmsg`. Each call may block: on a
/// blocking socket (the engine's sockets are; every send of the core's own passes
/// `MSG_DONTWAIT`) the kernel waits for room inside the call as the peer reads, as `write(2)`
/// does under `std::io::BufWriter`, for at most the socket's `SO_SNDTIMEO`; on a nonblocking one
/// this thread waits in `poll` for room between calls. So the whole batch is sent, without
/// handing its tail to the core (a wake-up and two `io_uring_enter`s). Returns the bytes the
/// kernel took (an error before any byte counts as none: the core's own send meets it and
/// closes the connection). A call that starts just before the deadline may end up to
/// `FINISH_WITHIN` after it.
pub(crate) fn send_batch(fd: &OwnedFd, chunks: &VecDeque<Chunk>) -> usize {
    let total: usize = chunks.iter().map(|c| c.unsent().len()).sum();
    let deadline = Instant::now() + FINISH_WITHIN;
    let mut sent = 0;
    while sent < total {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match send_chunks(fd, chunks, sent) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A nonblocking socket, or a blocking one whose timeout passed with nothing taken.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !writable(fd, left) {
                    break;
                }
            }
            Err(_) => break,
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
    let ready = syscall!(poll(&mut pfd, 1, ms));
    ready.is_ok_and(|n| n > 0) && pfd.revents & libc::POLLOUT != 0
}
