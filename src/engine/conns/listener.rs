//! Listening sockets in the table: accepting (the listener's acceptor builds each connection's
//! queue and session), pausing after `EMFILE` and the like, and closing in order: the
//! connections first, then the socket, then the ack, so the port can be bound again as soon as
//! the closer hears back.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::conns::entry::Opener;
use crate::engine::conns::io::Io;
use crate::engine::conns::listener_entry::{ListenerSlot, ACCEPT_RETRY};
use crate::engine::conns::table::Conns;
use crate::engine::handle::{Acceptor, CoreHandle};
use crate::engine::session::{ConnInfo, TICK};

impl<I: Io> Conns<I> {
    /// Starts accepting on a listening socket for listener `id`. `false` if the backend could
    /// not take it (the socket is closed).
    pub(crate) fn add_listener(
        &mut self,
        id: u64,
        fd: OwnedFd,
        acceptor: Arc<dyn Acceptor>,
        io: &mut I,
    ) -> bool {
        let slot = match self.listeners.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listeners.push(None);
                self.listeners.len() - 1
            }
        };
        let mut state = I::Listener::default();
        if let Err(err) = io.listen(slot as u32, &fd, &mut state) {
            // Dropping the ack tells the binding thread this core could not take it.
            tracing::error!(core = self.shared.index(), %err, "cannot accept on a listening socket");
            return false;
        }
        let ticks = acceptor.ticks();
        self.listeners[slot] = Some(ListenerSlot {
            id,
            fd,
            acceptor,
            retry_at: None,
            closing: None,
            conns: 0,
            ticks,
            io: state,
        });
        if ticks {
            self.next_tick = Instant::now() + TICK;
            io.wake_at(self.next_tick);
        }
        true
    }

    /// The slot of listener `id` on this core.
    pub(crate) fn listener_slot(&self, id: u64) -> Option<u32> {
        self.listeners
            .iter()
            .position(|l| matches!(l, Some(l) if l.id == id))
            .map(|slot| slot as u32)
    }

    /// The socket and backend state of listener `slot`, while it accepts (not closing, not
    /// waiting to retry).
    pub(crate) fn accepting(&mut self, slot: u32) -> Option<(&OwnedFd, &mut I::Listener)> {
        match self.listeners.get_mut(slot as usize) {
            Some(Some(l)) if l.closing.is_none() && l.retry_at.is_none() => {
                Some((&l.fd, &mut l.io))
            }
            _ => None,
        }
    }

    /// The backend state of listener `slot`, whatever it is doing.
    pub(crate) fn listener_state(&mut self, slot: u32) -> Option<&mut I::Listener> {
        match self.listeners.get_mut(slot as usize) {
            Some(Some(l)) => Some(&mut l.io),
            _ => None,
        }
    }

    /// Listener `slot` accepted `fd` (from `peer`, when the kernel said): its acceptor builds
    /// the connection, or refuses it (over the connection cap; the socket is closed).
    pub(crate) fn accepted(
        &mut self,
        slot: u32,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        io: &mut I,
    ) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            return;
        };
        if l.closing.is_some() {
            return; // dropping `fd` closes it
        }
        let info = ConnInfo::accepted(&fd, peer, self.shared.index());
        let core = CoreHandle(self.shared.clone());
        let fd = match l.acceptor.hand_off(fd, info.clone(), &core) {
            Ok(()) => return, // counted when it comes back (`adopt_accepted`)
            Err(fd) => fd,
        };
        let (id, peer) = (info.id, info.peer);
        let Some((conn, session)) = l.acceptor.open(info, &core) else {
            self.stats.refused += 1;
            return;
        };
        l.conns += 1;
        self.stats.accepted += 1;
        tracing::debug!(conn = id, peer = %peer, "connection accepted");
        self.insert(Arc::new(fd), conn.0, session, Opener::Listener(slot), io);
    }

    /// A connection listener `id` handed off comes back ready: it counts as the listener's
    /// (`None` if the listener is gone or closing: the caller closes it).
    pub(super) fn adopt_accepted(&mut self, id: u64) -> Option<Opener> {
        let slot = self.listener_slot(id)?;
        let l = self.listeners.get_mut(slot as usize)?.as_mut()?;
        if l.closing.is_some() {
            return None;
        }
        l.conns += 1;
        self.stats.accepted += 1;
        Some(Opener::Listener(slot))
    }

    /// Accepting on `slot` failed with something a retry may cure (out of descriptors or
    /// memory): pause it for [`ACCEPT_RETRY`].
    pub(crate) fn accept_failed(&mut self, slot: u32, err: &io::Error, io: &mut I) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            return;
        };
        if l.closing.is_some() {
            return;
        }
        tracing::warn!(core = self.shared.index(), %err, "accept failed; retrying shortly");
        let at = Instant::now() + ACCEPT_RETRY;
        l.retry_at = Some(at);
        io.wake_at(at);
    }

    /// Clears and returns the listeners whose accept retry is due at `now`.
    pub(super) fn due_retries(&mut self, now: Instant) -> Vec<u32> {
        let mut due = Vec::new();
        for (slot, l) in self.listeners.iter_mut().enumerate() {
            if let Some(l) = l {
                if l.retry_at.is_some_and(|at| at <= now) {
                    l.retry_at = None;
                    due.push(slot as u32);
                }
            }
        }
        due
    }

    /// Whether any open listener's sessions want ticks.
    pub(super) fn ticking(&self) -> bool {
        self.listeners
            .iter()
            .flatten()
            .any(|l| l.ticks && l.closing.is_none())
    }

    /// Stops accepting on `slot`, closes its connections, then its socket, then acks.
    pub(crate) fn close_listener(&mut self, slot: u32, ack: Option<SyncSender<()>>, io: &mut I) {
        let Some(Some(l)) = self.listeners.get_mut(slot as usize) else {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        };
        if l.closing.is_some() {
            // Already closing: this closer hears now, the first when it is done.
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        }
        l.closing = Some(ack);
        io.stop_listening(slot, &mut l.io);
        self.close_accepted_by(slot, io);
        self.maybe_finish_listener(slot, io);
    }

    /// A connection `slot` accepted is gone.
    pub(super) fn conn_left(&mut self, slot: u32, io: &mut I) {
        if let Some(Some(l)) = self.listeners.get_mut(slot as usize) {
            l.conns = l.conns.saturating_sub(1);
        }
        self.maybe_finish_listener(slot, io);
    }

    /// Closes a closing listener's socket once its last connection is gone and no accept is
    /// in flight, then acks. A backend calls this after an accept's final completion.
    pub(crate) fn maybe_finish_listener(&mut self, slot: u32, io: &mut I) {
        let done = matches!(
            self.listeners.get(slot as usize),
            Some(Some(l)) if l.closing.is_some() && l.conns == 0 && !io.listener_busy(&l.io)
        );
        if !done {
            return;
        }
        if let Some(mut l) = self.listeners[slot as usize].take() {
            io.release_listener(slot, &l.fd, &mut l.io);
            drop(l.fd);
            if let Some(Some(ack)) = l.closing {
                let _ = ack.send(());
            }
            tracing::debug!(listener = l.id, "listening socket closed");
        }
    }

    /// Releases every listener now, whatever is left on them (the loop is ending).
    pub(crate) fn force_close_listeners(&mut self, io: &mut I) {
        for slot in 0..self.listeners.len() as u32 {
            if let Some(Some(l)) = self.listeners.get_mut(slot as usize) {
                l.closing.get_or_insert(None);
                l.conns = 0;
            }
            self.maybe_finish_listener(slot, io);
        }
    }
}
