//! The connection table of one core ([`Conns`]): its connections and listeners, the commands
//! other threads send it, shutdown and timers. A connection's transitions are in `conn.rs`, a
//! listener's in `listener.rs`.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::conns::entry::{Entry, Opener};
use crate::engine::conns::io::Io;
use crate::engine::conns::listener_entry::ListenerSlot;
use crate::engine::conns::slab::{ConnKey, Slab};
use crate::engine::core::{take_deferred, Command, CoreShared, SendQueue};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::outbox::Outbox;
use crate::engine::session::TICK;
use crate::engine::stats::CoreStats;

/// Every connection and listener of one core (see the module docs).
pub(crate) struct Conns<I: Io> {
    pub(super) shared: Arc<CoreShared>,
    pub(super) conns: Slab<Entry<I::Conn>>,
    pub(super) listeners: Vec<Option<ListenerSlot<I::Listener>>>,
    /// The core's counters, published by the driver once per loop turn.
    pub(crate) stats: CoreStats,
    /// The shutdown deadline, once shutting down.
    pub(super) stopping: Option<Instant>,
    /// When sessions are ticked next (while a listener wants ticks).
    pub(super) next_tick: Instant,
    /// Chunks a send finished with, on their way back to their queue.
    pub(super) done: Vec<Chunk>,
    /// Connections that said goodbye and wait for the peer to close, until when (`conn.rs`).
    pub(super) lingering: Vec<(ConnKey, Instant)>,
}

impl<I: Io> Conns<I> {
    /// An empty table for the core `shared` describes.
    pub(crate) fn new(shared: Arc<CoreShared>) -> Conns<I> {
        Conns {
            stats: CoreStats {
                core: shared.index(),
                ..CoreStats::default()
            },
            shared,
            conns: Slab::default(),
            listeners: Vec::new(),
            stopping: None,
            lingering: Vec::new(),
            next_tick: Instant::now(),
            done: Vec::new(),
        }
    }

    /// The core this table belongs to.
    pub(crate) fn shared(&self) -> &Arc<CoreShared> {
        &self.shared
    }

    /// Whether a shutdown is under way.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Whether every connection and listener is gone.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.listeners.iter().all(Option::is_none)
    }

    /// The backend's state of connection `key`, and its socket, if it is still here.
    pub(crate) fn io_state(&mut self, key: ConnKey) -> Option<(&OwnedFd, &mut I::Conn)> {
        self.conns.get_mut(key).map(|c| (&*c.fd, &mut c.io))
    }

    /// Carries out one command from another thread.
    pub(crate) fn command(&mut self, cmd: Command, io: &mut I) {
        match cmd {
            Command::AddListener {
                id,
                fd,
                acceptor,
                ack,
            } => {
                if !self.stopping() && self.add_listener(id, fd, acceptor, io) {
                    let _ = ack.send(());
                }
            }
            Command::RemoveListener { id, ack } => match self.listener_slot(id) {
                Some(slot) => self.close_listener(slot, Some(ack), io),
                None => {
                    let _ = ack.send(());
                }
            },
            Command::AddConn {
                fd,
                info,
                sendq,
                session,
                listener,
            } => {
                let opener = match listener {
                    None => Some(Opener::Writer),
                    Some(id) => self.adopt_accepted(id),
                };
                let Some(opener) = opener.filter(|_| !self.stopping()) else {
                    sendq.detach(&mut Outbox::new(), None, false, Some(&fd));
                    if listener.is_some() {
                        // Its acceptor registered it: the session's close undoes that.
                        session.on_close(&crate::error::CloseReason::Local);
                    }
                    return;
                };
                tracing::debug!(conn = info.id, peer = %info.peer, "connection opened");
                self.insert(fd, sendq, session, opener, io);
            }
            Command::Flush(sendq) => {
                if let Some(key) = self.attached(&sendq) {
                    self.flush(key, io);
                }
            }
            Command::Resume(sendq) => {
                if let Some(key) = self.attached(&sendq) {
                    self.resume(key, io);
                }
            }
            Command::NarrowReceives => self.narrow_receives(io),
            Command::CloseConn { sendq, force, ack } => match self.attached(&sendq) {
                Some(key) => {
                    self.close_when_flushed(key, ack);
                    if force {
                        self.close(key, crate::error::CloseReason::Local, io);
                    } else {
                        self.flush(key, io);
                    }
                }
                None => {
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
            },
            Command::Shutdown { grace } => self.begin_shutdown(grace, io),
        }
    }

    /// Starts the sends asked for from this core's own thread (`core::defer_flush`),
    /// including those asked for while starting them (a close hook may write).
    pub(crate) fn run_deferred(&mut self, io: &mut I) {
        let mut batch = Vec::new();
        loop {
            take_deferred(&mut batch);
            if batch.is_empty() {
                break;
            }
            for key in batch.drain(..) {
                self.flush(ConnKey::from_u64(key), io);
            }
        }
    }

    /// Closes everything, sending what is queued for at most `grace`.
    pub(crate) fn begin_shutdown(&mut self, grace: Duration, io: &mut I) {
        if self.stopping.is_some() {
            return;
        }
        let deadline = Instant::now() + grace;
        self.stopping = Some(deadline);
        for slot in 0..self.listeners.len() as u32 {
            self.close_listener(slot, None, io);
        }
        for key in self.conns.keys() {
            self.close_when_flushed(key, None);
            self.flush(key, io);
        }
        io.wake_at(deadline);
    }

    /// Closes every connection now (the loop is ending).
    pub(crate) fn close_all(&mut self, io: &mut I) {
        for key in self.conns.keys() {
            self.close(key, crate::error::CloseReason::Local, io);
        }
    }

    /// Whether any timer is set (ticks, an accept retry, a shutdown deadline): without one,
    /// a loop need not read the clock.
    pub(crate) fn has_timers(&self) -> bool {
        self.stopping.is_some()
            || !self.lingering.is_empty()
            || self.ticking()
            || self
                .listeners
                .iter()
                .flatten()
                .any(|l| l.retry_at.is_some())
    }

    /// Runs what is due at `now`: session ticks (timeouts), the shutdown deadline. Returns the
    /// listeners whose accept retry is due (the driver accepts on them again) and when the
    /// next timer is due.
    pub(crate) fn run_timers(&mut self, now: Instant, io: &mut I) -> (Vec<u32>, Option<Instant>) {
        let ticking = self.ticking();
        if ticking && now >= self.next_tick {
            self.next_tick = now + TICK;
            for key in self.conns.keys() {
                let reason = match self.conns.get_mut(key) {
                    Some(c) if c.closing.is_none() => {
                        c.session.as_mut().and_then(|s| s.on_tick(now))
                    }
                    _ => None,
                };
                if let Some(reason) = reason {
                    self.close(key, reason, io);
                }
            }
        }
        // Connections that said goodbye and whose peer did not close in time.
        let mut i = 0;
        while i < self.lingering.len() {
            let (key, until) = self.lingering[i];
            if now >= until {
                self.lingering.swap_remove(i);
                self.close(key, crate::error::CloseReason::Local, io);
            } else {
                i += 1;
            }
        }
        let due = self.due_retries(now);
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                self.close_all(io);
            }
        }
        let next = self
            .listeners
            .iter()
            .flatten()
            .filter_map(|l| l.retry_at)
            .chain(self.stopping.filter(|_| !self.conns.is_empty()))
            .chain(self.lingering.iter().map(|l| l.1))
            .chain(ticking.then_some(self.next_tick))
            .min();
        (due, next)
    }

    /// The connection attached to `sendq`, if it is on this core.
    pub(super) fn attached(&self, sendq: &Arc<SendQueue>) -> Option<ConnKey> {
        let key = ConnKey::from_u64(sendq.attached_key()?);
        let c = self.conns.get(key)?;
        Arc::ptr_eq(&c.sendq, sendq).then_some(key)
    }
}
