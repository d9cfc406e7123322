//! The epoll loop of one core: every socket registered edge-triggered with one `mio::Poll`,
//! reads into one per-core buffer, coalesced sends, one `epoll_wait` per loop turn.
//!
//! A turn: run the queued commands, run due timers, publish the counters, then poll (blocking
//! only when nothing is runnable and [`CoreShared::about_to_sleep`] agrees), handle the events,
//! and serve the connections left on the ready list by the previous turn (those that hit the
//! per-turn read or send cap while the kernel still had more for them), so one busy connection
//! cannot starve the others and no edge is lost.
//!
//! Sockets are registered once, readable and writable. A read shorter than the buffer, or a
//! send the kernel took only part of, means the socket is drained or full: the kernel raises a
//! new edge when that changes, so neither needs the extra syscall that would return `EAGAIN`.
//! The writable edge is acted on only while a send waits for room.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::engine::core::{dispatch, run_deferred, Commands, CoreShared, Driver};
use crate::engine::epoll::conn::ConnSlot;
use crate::engine::epoll::listener::ListenerSlot;
use crate::engine::epoll::sys;
use crate::engine::send::chunk::Chunk;
use crate::engine::send::SendQueue;
use crate::engine::session::{Acceptor, Session, TICK};
use crate::engine::stats::CoreStats;
use crate::engine::RuntimeConfig;
use crate::error::{CloseReason, StartError};

/// The token of the wake-up eventfd.
const WAKE: Token = Token(usize::MAX);
/// Listener tokens carry this bit; connection tokens are plain slot numbers.
pub(super) const LISTENER_TAG: usize = 1 << (usize::BITS - 2);
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// The epoll driver of one core.
pub(crate) struct Core {
    pub(super) poll: Poll,
    pub(super) shared: Arc<CoreShared>,
    /// The one receive buffer of this core (`recv_buffer_size` bytes): every read lands here
    /// and is handed to the connection's session before the next read.
    pub(super) buf: Box<[u8]>,
    pub(super) listeners: Vec<Option<ListenerSlot>>,
    pub(super) conns: Vec<Option<ConnSlot>>,
    /// Connection slots free for reuse.
    pub(super) free_conns: Vec<u32>,
    /// Slots freed during this turn: reused only from the next turn on, so an event for a
    /// closed connection still in this turn's batch never reaches a new one in its slot.
    pub(super) released: Vec<u32>,
    /// Connections to serve next turn without waiting for a new edge (see the module docs).
    pub(super) ready: Vec<u32>,
    /// The ready list being served this turn (kept to reuse its allocation).
    serving: Vec<u32>,
    /// The shutdown deadline, once shutting down.
    pub(super) stopping: Option<Instant>,
    pub(super) local: CoreStats,
    /// Chunks a send finished with, on their way back to their queue.
    pub(super) done: Vec<Chunk>,
    /// When sessions are ticked next (while a listener wants ticks).
    next_tick: Instant,
}

impl Driver for Core {
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Core, StartError> {
        let poll = Poll::new().map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut SourceFd(&shared.wake_fd()), WAKE, Interest::READABLE)
            .map_err(StartError::Setup)?;
        tracing::debug!(core = shared.index(), "epoll poller ready");
        Ok(Core {
            poll,
            buf: vec![0u8; cfg.recv_buffer_size as usize].into_boxed_slice(),
            local: CoreStats {
                core: shared.index(),
                ..CoreStats::default()
            },
            done: Vec::new(),
            shared,
            listeners: Vec::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            released: Vec::new(),
            ready: Vec::new(),
            serving: Vec::new(),
            stopping: None,
            next_tick: Instant::now(),
        })
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            if let Some(commands) = self.shared.take_commands() {
                for cmd in commands {
                    dispatch(&mut self, cmd);
                }
            }
            run_deferred(&mut self);
            let next_timer = self.run_timers();
            if self.stopping.is_some()
                && self.local.connections == 0
                && self.listeners.iter().all(Option::is_none)
            {
                break;
            }
            // Published before polling, so counters are current whenever the core sleeps.
            self.shared.publish(&self.local);
            let timeout = if !self.ready.is_empty() || !self.shared.about_to_sleep() {
                Some(Duration::ZERO)
            } else {
                next_timer.map(|at| at.saturating_duration_since(Instant::now()))
            };
            self.local.enters += 1;
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.awake();
            match polled {
                Ok(()) => {}
                // A signal: mio cleared `events` before waiting, so this turn just has none.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::error!(core = self.shared.index(), %err, "epoll_wait failed; core stops");
                    break;
                }
            }
            let mut serving = std::mem::take(&mut self.serving);
            std::mem::swap(&mut serving, &mut self.ready);
            for event in events.iter() {
                self.event(event);
            }
            for &slot in &serving {
                self.serve_ready(slot);
            }
            serving.clear();
            self.serving = serving;
            self.free_conns.append(&mut self.released);
            self.local.turns += 1;
        }
        self.teardown();
    }
}

impl Core {
    /// Closes whatever is left (only if the loop ended early, on a poller error).
    fn teardown(mut self) {
        for slot in 0..self.conns.len() as u32 {
            self.close_conn(slot, CloseReason::Local);
        }
        for slot in 0..self.listeners.len() as u32 {
            if let Some(Some(l)) = self.listeners.get_mut(slot as usize) {
                l.closing.get_or_insert(None);
                l.conns = 0;
            }
            self.maybe_finish_listener(slot);
        }
        self.shared.publish(&self.local);
    }

    // ---- events ----------------------------------------------------------------------------

    fn event(&mut self, event: &mio::event::Event) {
        let token = event.token();
        if token == WAKE {
            sys::drain_eventfd(self.shared.wake_fd());
            return;
        }
        if token.0 & LISTENER_TAG != 0 {
            self.accept_all((token.0 & !LISTENER_TAG) as u32);
            return;
        }
        let slot = token.0 as u32;
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let failed = event.is_error();
        if event.is_read_closed() || failed {
            // Read on to the EOF or the error even after a short read.
            c.read_closed = true;
        }
        let read = event.is_readable() || event.is_read_closed() || failed;
        // Writable edges matter only while a send waits for room.
        let write = c.write_blocked && (event.is_writable() || event.is_write_closed() || failed);
        if write {
            c.write_blocked = false;
        }
        if read {
            if c.queued {
                // It is on the ready list already; read there.
                c.want_read = true;
            } else {
                self.read_pass(slot);
            }
        }
        if write {
            self.start_send(slot);
        }
    }

    /// Puts `slot` on the ready list (once) to be served next turn.
    pub(super) fn schedule(&mut self, slot: u32) {
        if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
            if !c.queued {
                c.queued = true;
                self.ready.push(slot);
            }
        }
    }

    fn serve_ready(&mut self, slot: u32) {
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !c.queued {
            return;
        }
        c.queued = false;
        let read = std::mem::take(&mut c.want_read);
        let send = std::mem::take(&mut c.want_send);
        if read {
            self.read_pass(slot);
        }
        if send {
            self.start_send(slot);
        }
    }

    /// Runs due timers (accept retries, session ticks, the shutdown deadline); returns when the
    /// next is due.
    fn run_timers(&mut self) -> Option<Instant> {
        let any_retry = self
            .listeners
            .iter()
            .flatten()
            .any(|l| l.retry_at.is_some());
        let ticking = self
            .listeners
            .iter()
            .flatten()
            .any(|l| l.ticks && l.closing.is_none());
        if !any_retry && !ticking && self.stopping.is_none() {
            return None;
        }
        let now = Instant::now();
        if ticking && now >= self.next_tick {
            self.next_tick = now + TICK;
            for slot in 0..self.conns.len() as u32 {
                let reason = match &mut self.conns[slot as usize] {
                    Some(c) => c.session.on_tick(now),
                    None => None,
                };
                if let Some(reason) = reason {
                    self.close_conn(slot, reason);
                }
            }
        }
        for slot in 0..self.listeners.len() as u32 {
            let due = match &mut self.listeners[slot as usize] {
                Some(l) if l.retry_at.is_some_and(|at| at <= now) => {
                    l.retry_at = None;
                    true
                }
                _ => false,
            };
            if due {
                // Edge-triggered: connections that queued up meanwhile raise no new edge.
                self.accept_all(slot);
            }
        }
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                for slot in 0..self.conns.len() as u32 {
                    self.close_conn(slot, CloseReason::Local);
                }
            }
        }
        self.listeners
            .iter()
            .flatten()
            .filter_map(|l| l.retry_at)
            .chain(self.stopping)
            .chain(ticking.then_some(self.next_tick))
            .min()
    }

    // ---- commands --------------------------------------------------------------------------

    fn begin_shutdown(&mut self, grace: Duration) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now() + grace);
        for slot in 0..self.listeners.len() as u32 {
            self.close_listener(slot, None);
        }
        for slot in 0..self.conns.len() as u32 {
            if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
                c.close_when_flushed = true;
            }
            self.start_send(slot);
        }
    }
}

impl Commands for Core {
    fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    fn add_listener(&mut self, id: u64, fd: OwnedFd, acceptor: Arc<dyn Acceptor>) -> bool {
        let slot = match self.listeners.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.listeners.push(None);
                self.listeners.len() - 1
            }
        };
        // The socket comes blocking (io_uring needs nothing else); accepting until
        // EAGAIN needs it nonblocking.
        let registered = socket2::SockRef::from(&fd)
            .set_nonblocking(true)
            .and_then(|()| {
                self.poll.registry().register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(LISTENER_TAG | slot),
                    Interest::READABLE,
                )
            });
        if let Err(err) = registered {
            // Dropping the ack tells the binding thread this core could not take it.
            tracing::error!(core = self.shared.index(), %err, "cannot register a listening socket");
            return false;
        }
        let acceptor_ticks = acceptor.ticks();
        self.listeners[slot] = Some(ListenerSlot {
            id,
            fd,
            acceptor,
            retry_at: None,
            closing: None,
            conns: 0,
            ticks: acceptor_ticks,
        });
        self.accept_all(slot as u32);
        true
    }

    fn listener_slot(&self, id: u64) -> Option<u32> {
        self.listeners
            .iter()
            .position(|l| matches!(l, Some(l) if l.id == id))
            .map(|slot| slot as u32)
    }

    fn close_listener(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        Core::close_listener(self, slot, ack);
    }

    fn add_conn(&mut self, fd: OwnedFd, sendq: Arc<SendQueue>, session: Box<dyn Session>) {
        self.insert_conn(fd, sendq, session, None, true);
    }

    fn drains(&self, slot: u32, queue: *const SendQueue) -> bool {
        matches!(self.conns.get(slot as usize), Some(Some(c)) if std::ptr::eq(Arc::as_ptr(&c.sendq), queue))
    }

    fn start_send(&mut self, slot: u32) {
        Core::start_send(self, slot);
    }

    fn resume_conn(&mut self, slot: u32) {
        Core::resume_conn(self, slot);
    }

    fn close_when_flushed(&mut self, slot: u32, ack: Option<SyncSender<()>>) {
        if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
            c.close_when_flushed = true;
            c.close_acks.extend(ack);
        }
    }

    fn close_now(&mut self, slot: u32) {
        self.close_conn(slot, CloseReason::Local);
    }

    fn begin_shutdown(&mut self, grace: Duration) {
        Core::begin_shutdown(self, grace);
    }
}
