//! The epoll loop of one core: every socket registered edge-triggered with one `mio::Poll`,
//! reads into one per-core buffer, nonblocking sends, one `epoll_wait` per loop turn.
//!
//! A turn: run the queued commands, run due timers, publish the counters, then poll (blocking
//! only when nothing is runnable and [`CoreShared::about_to_sleep`] agrees), handle the events,
//! and serve the connections left on the ready list by the previous turn, so one busy
//! connection cannot starve the others and no edge is lost. What an event means for its
//! connection is the table's business (`conns`).
//!
//! The writable edge is acted on only while a send waits for room.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::engine::config::RuntimeConfig;
use crate::engine::conns::slab::ConnKey;
use crate::engine::conns::table::Conns;
use crate::engine::core::{CoreShared, Driver};
use crate::engine::epoll::poller::{Poller, LISTENER_TAG};
use crate::engine::epoll::sys;
use crate::error::StartError;

/// The token of the wake-up eventfd.
const WAKE: Token = Token(usize::MAX);
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// The epoll driver of one core.
pub(crate) struct Core {
    pub(super) io: Poller,
    pub(super) conns: Conns<Poller>,
    shared: Arc<CoreShared>,
    /// The one receive buffer of this core (`recv_buffer_size` bytes): every read lands here
    /// and is handed to the connection's session before the next read.
    pub(super) buf: Box<[u8]>,
    /// The ready list being served this turn (kept to reuse its allocation).
    serving: Vec<ConnKey>,
    /// `RuntimeConfig::busy_poll`: how long to poll before sleeping.
    spin: Option<Duration>,
}

impl Driver for Core {
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Core, StartError> {
        let poll = Poll::new().map_err(StartError::Setup)?;
        poll.registry()
            .register(&mut SourceFd(&shared.wake_fd()), WAKE, Interest::READABLE)
            .map_err(StartError::Setup)?;
        tracing::debug!(core = shared.index(), spin = ?cfg.spin(), "epoll poller ready");
        if cfg.sqpoll.is_some() {
            tracing::debug!(
                core = shared.index(),
                "sqpoll is io_uring's; epoll ignores it"
            );
        }
        Ok(Core {
            io: Poller {
                poll,
                ready: Vec::new(),
                fresh: Vec::new(),
            },
            conns: Conns::new(shared.clone()),
            shared,
            buf: vec![0u8; cfg.recv_buffer_size as usize].into_boxed_slice(),
            serving: Vec::new(),
            spin: cfg.spin(),
        })
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        // The last poll brought events or left connections to serve (busy polling follows
        // work only, not a timer's expiry).
        let mut polled_work = false;
        loop {
            let mut worked = std::mem::take(&mut polled_work);
            if let Some(commands) = self.shared.take_commands() {
                worked = true;
                for cmd in commands {
                    self.conns.command(cmd, &mut self.io);
                }
            }
            self.conns.run_deferred(&mut self.io);
            for slot in std::mem::take(&mut self.io.fresh) {
                self.accept_pass(slot);
            }
            let next_timer = self.run_timers();
            if self.conns.stopping() && self.conns.is_empty() {
                break;
            }
            // Published before polling, so counters are current whenever the core sleeps.
            self.shared.publish(&self.conns.stats);
            let idle = self.io.ready.is_empty();
            let polled = match self.spin {
                Some(limit) if idle && worked => self.busy_poll(&mut events, limit, next_timer),
                _ => Ok(false),
            }
            .and_then(|found| {
                if found {
                    return Ok(());
                }
                let timeout = if !idle || !self.shared.about_to_sleep() {
                    Some(Duration::ZERO)
                } else {
                    self.conns.stats.sleeps += 1;
                    next_timer.map(|at| at.saturating_duration_since(Instant::now()))
                };
                self.conns.stats.enters += 1;
                let polled = self.io.poll.poll(&mut events, timeout);
                self.shared.awake();
                polled
            });
            match polled {
                Ok(()) => {}
                // A signal: mio cleared `events` before waiting, so this turn just has none.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::error!(core = self.shared.index(), %err, "epoll_wait failed; core stops");
                    break;
                }
            }
            polled_work = !events.is_empty() || !self.io.ready.is_empty();
            let mut serving = std::mem::take(&mut self.serving);
            std::mem::swap(&mut serving, &mut self.io.ready);
            for event in events.iter() {
                self.event(event);
            }
            for &key in &serving {
                self.serve_ready(key);
            }
            serving.clear();
            self.serving = serving;
            self.conns.stats.turns += 1;
        }
        self.teardown();
    }
}

impl Core {
    /// Busy polling (`RuntimeConfig::busy_poll`): the core found nothing to do and, instead of
    /// sleeping at once, polls for up to `limit` (and not past the next timer): `epoll_wait`
    /// with a zero timeout, commands from other threads, work its own thread deferred. Returns
    /// whether it found any (the events are in `events`); if not, the caller sleeps as it
    /// would have without the spin. It never announces sleep, so senders meanwhile write no
    /// eventfd and the spin sees their work through the doorbell's pending flag
    /// (`doorbell.rs`).
    fn busy_poll(
        &mut self,
        events: &mut Events,
        limit: Duration,
        next_timer: Option<Instant>,
    ) -> io::Result<bool> {
        self.conns.stats.busy_polls += 1;
        let start = Instant::now();
        loop {
            self.conns.stats.enters += 1;
            match self.io.poll.poll(events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            if !events.is_empty()
                || self.shared.has_commands()
                || crate::engine::core::has_deferred()
            {
                self.conns.stats.busy_poll_hits += 1;
                return Ok(true);
            }
            let now = Instant::now();
            if now.duration_since(start) >= limit || next_timer.is_some_and(|at| now >= at) {
                // Counters are current whenever the core sleeps.
                self.shared.publish(&self.conns.stats);
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// Closes whatever is left (only if the loop ended early, on a poller error).
    fn teardown(mut self) {
        self.conns.close_all(&mut self.io);
        self.conns.force_close_listeners(&mut self.io);
        self.shared.publish(&self.conns.stats);
    }

    fn event(&mut self, event: &mio::event::Event) {
        let token = event.token();
        if token == WAKE {
            sys::drain_eventfd(self.shared.wake_fd());
            return;
        }
        if token.0 & LISTENER_TAG != 0 {
            self.accept_pass((token.0 & !LISTENER_TAG) as u32);
            return;
        }
        let key = ConnKey::from_u64(token.0 as u64);
        let Some((_, state)) = self.conns.io_state(key) else {
            return; // a connection that has gone (its slot may hold another now)
        };
        let failed = event.is_error();
        if event.is_read_closed() || failed {
            // Read on to the EOF or the error even after a short read.
            state.read_closed = true;
        }
        let read = event.is_readable() || event.is_read_closed() || failed;
        // Writable edges matter only while a send waits for room.
        let write =
            state.write_blocked && (event.is_writable() || event.is_write_closed() || failed);
        if write {
            state.write_blocked = false;
        }
        if read {
            if state.queued {
                // It is on the ready list already; read there.
                state.want_read = true;
            } else {
                self.read_pass(key);
            }
        }
        if write {
            self.conns.flush(key, &mut self.io);
        }
    }

    fn serve_ready(&mut self, key: ConnKey) {
        let Some((_, state)) = self.conns.io_state(key) else {
            return;
        };
        if !state.queued {
            return;
        }
        state.queued = false;
        let read = std::mem::take(&mut state.want_read);
        let send = std::mem::take(&mut state.want_send);
        if read {
            self.read_pass(key);
        }
        if send {
            self.conns.flush(key, &mut self.io);
        }
    }

    /// Runs due timers (session ticks, accept retries, the shutdown deadline) if any are set;
    /// returns when the next is due.
    fn run_timers(&mut self) -> Option<Instant> {
        if !self.conns.has_timers() {
            return None;
        }
        let (due, next) = self.conns.run_timers(Instant::now(), &mut self.io);
        for slot in due {
            // Edge-triggered: connections that queued up meanwhile raise no new edge.
            self.accept_pass(slot);
        }
        next
    }
}
