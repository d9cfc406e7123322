//! The connection table of one core, shared by both backends: every connection and listener
//! the core owns, and the state machine each goes through (reading, paused, flushing, closing,
//! closed), with no I/O of its own.
//!
//! A driver (`uring::driver`, `epoll::driver`) turns kernel events into calls on [`Conns`]
//! ([`Conns::data`], [`Conns::sent`], [`Conns::accepted`], ...), and [`Conns`] asks for I/O
//! through the driver's [`Io`]: arm a receive, start a send, stop reading, end what is in
//! flight, stop watching a socket. So the rules (when a paused connection reads again, what a
//! close waits for, where a failed connection's unsent frames go, when a closing listener's
//! socket is released) are written once, and unit-tested against a fake [`Io`] with no kernel
//! (`tests.rs`).
//!
//! Connections live in generation-numbered slots ([`ConnKey`]): a completion, an event or a
//! command for a connection that has gone carries an old generation and finds nothing, even if
//! its slot was reused meanwhile.
//!
//! `conn.rs` holds a connection's transitions, `listener.rs` a listener's, `slab.rs` the slots.

mod conn;
pub(crate) mod credit;
mod listener;
mod slab;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use self::conn::Flow;
use self::conn::{Entry, Opener};
use self::listener::ListenerSlot;
pub(crate) use self::slab::ConnKey;
use self::slab::Slab;
use crate::engine::core::{Command, CoreShared};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::outbox::Outbox;
use crate::engine::session::TICK;
use crate::engine::stats::CoreStats;

/// What a backend does for the table: the I/O of one core.
pub(crate) trait Io {
    /// The backend's own state of a connection (operations in flight, registration).
    type Conn: Default;
    /// The backend's own state of a listener.
    type Listener: Default;

    /// A connection joined the table: start watching its socket (epoll registers it; io_uring
    /// arms its receive, limited to `credit` bytes; see [`credit`]). An error closes it.
    fn open(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        credit: u32,
        state: &mut Self::Conn,
    ) -> io::Result<()>;
    /// Its reader has room again: read it (io_uring re-arms the receive, limited to `credit`
    /// bytes; epoll reads it on its next turn, which also finds an EOF that came meanwhile).
    fn read(&mut self, key: ConnKey, fd: &OwnedFd, credit: u32, state: &mut Self::Conn);
    /// It may now be handed only `credit` bytes at a time: a receive in flight that may deliver
    /// more ends and is re-armed within it (io_uring; epoll asks for the credit at every read).
    fn narrow(&mut self, key: ConnKey, credit: u32, state: &mut Self::Conn);
    /// Its reader is full: stop reading until [`Io::read`] (io_uring cancels the multishot
    /// receive; what it had already posted still arrives and is held by the session).
    fn stop_reading(&mut self, key: ConnKey, state: &mut Self::Conn);
    /// Whether a send may start (none in flight, the socket not known to be full).
    fn can_send(&self, state: &Self::Conn) -> bool;
    /// Sends the unsent bytes of `out`, which stays unchanged until the send is over.
    fn send(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        out: &mut Outbox,
        state: &mut Self::Conn,
    ) -> Sending;
    /// [`MAX_SENDS_PER_CALL`] sends went out and bytes may be left: come back to it soon
    /// (another connection's turn first).
    fn send_later(&mut self, key: ConnKey, state: &mut Self::Conn);
    /// Whether the kernel still has operations on it, which keep it from being released.
    fn busy(&self, state: &Self::Conn) -> bool;
    /// It is closing while busy: make the operations in flight end (their completions follow).
    fn abort(&mut self, fd: &OwnedFd, state: &mut Self::Conn);
    /// It is released: stop watching the socket, which is closed right after.
    fn release(&mut self, key: ConnKey, fd: &OwnedFd, state: &mut Self::Conn);

    /// A listening socket joined the table as `slot`: accept on it. An error refuses it.
    fn listen(&mut self, slot: u32, fd: &OwnedFd, state: &mut Self::Listener) -> io::Result<()>;
    /// Stop accepting on it: it is closing.
    fn stop_listening(&mut self, slot: u32, state: &mut Self::Listener);
    /// Whether an accept is still in flight on it, which keeps it from being released.
    fn listener_busy(&self, state: &Self::Listener) -> bool;
    /// It is released: stop watching the socket, which is closed right after.
    fn release_listener(&mut self, slot: u32, fd: &OwnedFd, state: &mut Self::Listener);
    /// A timer is due at `at` (a tick, an accept retry, the shutdown deadline).
    fn wake_at(&mut self, at: Instant);
}

/// How a send went.
#[derive(Debug)]
pub(crate) enum Sending {
    /// Submitted: [`Conns::sent`] follows with the result.
    Pending,
    /// The kernel took this many bytes now (if fewer than asked, the socket is full and the
    /// backend waits until it has room before [`Io::can_send`] says yes again).
    Sent(usize),
    /// The socket is full; nothing was sent.
    Blocked,
    /// The connection failed.
    Failed(io::Error),
}

/// Sends one connection may make in a row before the others get their turn.
pub(crate) const MAX_SENDS_PER_CALL: u32 = 16;

/// How long a listener waits before accepting again after running out of descriptors/memory.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Every connection and listener of one core (see the module docs).
pub(crate) struct Conns<I: Io> {
    shared: Arc<CoreShared>,
    conns: Slab<Entry<I::Conn>>,
    listeners: Vec<Option<ListenerSlot<I::Listener>>>,
    /// The core's counters, published by the driver once per loop turn.
    pub(crate) stats: CoreStats,
    /// The shutdown deadline, once shutting down.
    stopping: Option<Instant>,
    /// When sessions are ticked next (while a listener wants ticks).
    next_tick: Instant,
    /// Chunks a send finished with, on their way back to their queue.
    done: Vec<Chunk>,
}

impl<I: Io> Conns<I> {
    /// An empty table for the core `shared` describes.
    pub(in crate::engine) fn new(shared: Arc<CoreShared>) -> Conns<I> {
        Conns {
            stats: CoreStats {
                core: shared.index(),
                ..CoreStats::default()
            },
            shared,
            conns: Slab::default(),
            listeners: Vec::new(),
            stopping: None,
            next_tick: Instant::now(),
            done: Vec::new(),
        }
    }

    /// The core this table belongs to.
    pub(in crate::engine) fn shared(&self) -> &Arc<CoreShared> {
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
    pub(in crate::engine) fn command(&mut self, cmd: Command, io: &mut I) {
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
            } => {
                if self.stopping() {
                    sendq.detach(&mut Outbox::new(), None, false);
                    return;
                }
                tracing::debug!(conn = info.id, peer = %info.peer, "connection opened");
                self.insert(fd, sendq, session, Opener::Writer, io);
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
            crate::engine::core::take_deferred(&mut batch);
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
            .chain(ticking.then_some(self.next_tick))
            .min();
        (due, next)
    }

    /// The connection attached to `sendq`, if it is on this core.
    fn attached(&self, sendq: &Arc<crate::engine::send::SendQueue>) -> Option<ConnKey> {
        let key = ConnKey::from_u64(sendq.attached_key()?);
        let c = self.conns.get(key)?;
        Arc::ptr_eq(&c.sendq, sendq).then_some(key)
    }
}
