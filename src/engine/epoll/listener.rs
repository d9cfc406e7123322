//! Listening sockets on the epoll core: accept until `EAGAIN` on each readable edge, retry
//! after a pause when out of descriptors or memory, close in order (connections, then socket,
//! then the ack, so the port can be bound again at once).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;

use crate::engine::epoll::driver::Core;
use crate::engine::epoll::sys;
use crate::engine::session::{Acceptor, ConnInfo};
use crate::error::CloseReason;

/// How long a listener waits before accepting again after running out of descriptors/memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(super) struct ListenerSlot {
    pub(super) id: u64,
    pub(super) fd: OwnedFd,
    pub(super) acceptor: Arc<dyn Acceptor>,
    /// Accepting is paused until then (after `EMFILE` and the like).
    pub(super) retry_at: Option<Instant>,
    /// Closing; the ack to send once closed.
    pub(super) closing: Option<Option<SyncSender<()>>>,
    /// Connections accepted here and still open.
    pub(super) conns: usize,
    /// Its sessions want the periodic tick (timeouts).
    pub(super) ticks: bool,
}

impl Core {
    /// Accepts every pending connection on listener `slot`.
    pub(super) fn accept_all(&mut self, slot: u32) {
        loop {
            let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
                return;
            };
            if l.closing.is_some() || l.retry_at.is_some() {
                return;
            }
            match sys::accept(l.fd.as_fd()) {
                Ok((fd, peer)) => self.open_accepted(slot, fd, peer),
                Err(err) => match err.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    // This connection failed before we took it (see accept(2)): take the next.
                    Some(
                        libc::EINTR
                        | libc::ECONNABORTED
                        | libc::EPROTO
                        | libc::ENETDOWN
                        | libc::ENOPROTOOPT
                        | libc::EHOSTDOWN
                        | libc::ENONET
                        | libc::EHOSTUNREACH
                        | libc::EOPNOTSUPP
                        | libc::ENETUNREACH,
                    ) => {}
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: pause this listener.
                    _ => {
                        tracing::warn!(core = self.shared.index(), %err, "accept failed; retrying shortly");
                        l.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                        return;
                    }
                },
            }
        }
    }

    fn open_accepted(&mut self, lslot: u32, fd: OwnedFd, peer: Option<std::net::SocketAddr>) {
        let Some(Some(l)) = self.listeners.get_mut(lslot as usize) else {
            return;
        };
        let info = ConnInfo::accepted(&fd, peer, self.shared.index());
        let Some((sendq, session)) = l.acceptor.open(info, &self.shared) else {
            self.local.refused += 1;
            return; // dropping `fd` closes it
        };
        l.conns += 1;
        self.local.accepted += 1;
        tracing::debug!(conn = info.id, peer = %info.peer, "connection accepted");
        self.insert_conn(fd, sendq, session, Some(lslot), false);
    }

    /// Stops accepting on `slot`, closes its connections, then its socket, then acks.
    pub(super) fn close_listener(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        };
        if l.closing.is_some() {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        }
        l.closing = Some(ack);
        for c in 0..self.conns.len() as u32 {
            if matches!(&self.conns[c as usize], Some(conn) if conn.listener == Some(slot)) {
                self.close_conn(c, CloseReason::Local);
            }
        }
        self.maybe_finish_listener(slot);
    }

    /// Closes a closing listener's socket once its last connection is gone, then acks.
    pub(super) fn maybe_finish_listener(&mut self, slot: u32) {
        let done = matches!(
            self.listeners.get(slot as usize),
            Some(Some(l)) if l.closing.is_some() && l.conns == 0
        );
        if !done {
            return;
        }
        if let Some(l) = self.listeners[slot as usize].take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.fd.as_raw_fd()));
            drop(l.fd);
            if let Some(Some(ack)) = l.closing {
                let _ = ack.send(());
            }
            tracing::debug!(listener = l.id, "listening socket closed");
        }
    }
}
