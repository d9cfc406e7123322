//! Sockets that said goodbye (a TLS `close_notify`) and close cleanly: their sending side is
//! shut (the kernel sends a FIN after the last bytes), and one background thread keeps each
//! open, reading and dropping what the peer still sends, until the peer closes too or
//! [`LINGER`] passes. Closing at once could leave bytes the peer sent meanwhile unread (a TLS
//! 1.3 server's session tickets), and closing a socket with unread bytes makes the kernel
//! reset the connection, which can throw away what the peer had not read yet: the last
//! records and the `close_notify` itself.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a socket lingers at most.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// At most this many sockets linger at once; more are closed at once.
const MAX_LINGERING: usize = 1024;

/// Shuts `fd`'s sending side and keeps it open until the peer closes (or [`LINGER`]).
pub(crate) fn linger(fd: Arc<OwnedFd>) {
    // SAFETY: `fd` is an open socket kept alive by the Arc; shutdown changes only the
    // connection's state.
    if syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR)).is_err() {
        return; // not connected any more: nothing to wait for
    }
    static THREAD: OnceLock<Option<Mutex<Sender<Arc<OwnedFd>>>>> = OnceLock::new();
    let sender = THREAD.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("buffstreams-linger".into())
            .spawn(move || run(rx))
            .ok()
            .map(|_| Mutex::new(tx))
    });
    if let Some(sender) = sender {
        let _ = sender.lock().unwrap_or_else(|e| e.into_inner()).send(fd);
    }
}

fn run(rx: Receiver<Arc<OwnedFd>>) {
    let mut lingering: Vec<(Arc<OwnedFd>, Instant)> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let wait = match lingering.is_empty() {
            true => Duration::from_secs(3600),
            false => Duration::ZERO,
        };
        match rx.recv_timeout(wait) {
            Ok(fd) if lingering.len() < MAX_LINGERING => {
                lingering.push((fd, Instant::now() + LINGER))
            }
            Ok(_) => {} // dropped: closed at once
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(fd) = rx.try_recv() {
            if lingering.len() < MAX_LINGERING {
                lingering.push((fd, Instant::now() + LINGER));
            }
        }
        if lingering.is_empty() {
            continue;
        }
        fds.clear();
        fds.extend(lingering.iter().map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: `fds` is a live vector of initialised pollfds, and its length is passed.
        let _ = syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10));
        let now = Instant::now();
        for i in (0..lingering.len()).rev() {
            let mut done = now >= lingering[i].1;
            if fds[i].revents != 0 {
                // SAFETY: `buf` is a live stack buffer of the length passed; the socket is
                // kept open by the Arc in `lingering`.
                let n = syscall!(recv(
                    lingering[i].0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT
                ));
                done |= !matches!(n, Ok(n) if n > 0)
                    && !matches!(&n, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            }
            if done {
                lingering.swap_remove(i); // the last reference: the socket closes
            }
        }
    }
}
