//! The io_uring loop of one core: commands from other threads, then the submissions of the
//! turn (receives re-armed, sends started, buffers handed back), one `io_uring_enter` that
//! submits them and waits (only when nothing is runnable), then the completions. What each
//! completion means for its connection is the table's business (`conns`); `ops.rs` builds the
//! submissions and `complete.rs` reads the completions.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::cqueue;

use super::ops::Ring;
use crate::engine::config::RuntimeConfig;
use crate::engine::conns::io::Io;
use crate::engine::conns::slab::ConnKey;
use crate::engine::conns::table::Conns;
use crate::engine::core::{CoreShared, Driver};
use crate::engine::uring::bufring::BufRing;
use crate::engine::uring::enter::Enter;
use crate::engine::uring::{build_ring, RingOptions, RingSetup};
use crate::error::StartError;

/// `IORING_ENTER_GETEVENTS` and `IORING_ENTER_SQ_WAKEUP` (the crate keeps its `sys` module
/// private).
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_SQ_WAKEUP: u32 = 2;

/// What busy polling must do to see new completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PollMode {
    /// The ring has `IORING_SETUP_TASKRUN_FLAG`: task work (with `DEFER_TASKRUN`, every
    /// completion) raises `IORING_SQ_TASKRUN`; enter only then.
    TaskrunFlag,
    /// `SQPOLL`: the kernel thread posts completions itself; enter only to wake it.
    Sqpoll,
    /// No flag to read: enter on every poll.
    Always,
}

/// The io_uring driver of one core.
pub(crate) struct Core {
    // Field order is drop order: the ring's registered descriptor goes first (it unregisters
    // through the ring), then the ring, then the memory it may have pointed at (the receive
    // buffers, and the send chunks in the table's outboxes).
    enter: Enter,
    pub(super) io: Ring,
    pub(super) bufs: BufRing,
    pub(super) conns: Conns<Ring>,
    shared: Arc<CoreShared>,
    pub(super) cqes: Vec<cqueue::Entry>,
    /// Connections whose multishot receive ended and should read again (done once per turn,
    /// after the buffers reaped are handed back).
    pub(super) rearm: Vec<ConnKey>,
    /// The last completions reaped held more than the timer's (see [`Core::busy_poll`]).
    pub(super) reaped_work: bool,
    /// `RuntimeConfig::busy_poll`: how long to poll before sleeping.
    pub(super) spin: Option<Duration>,
    /// How busy polling sees completions.
    poll_mode: PollMode,
    /// A kernel thread polls the submission queue: submitting needs no enter while it is awake.
    sqpoll: bool,
}

impl Driver for Core {
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Core, StartError> {
        let spin = cfg.spin();
        let opts = RingOptions {
            // Rounded up: the kernel takes 0 as its default of one second.
            sqpoll_idle_ms: cfg
                .sqpoll
                .map(|idle| u32::try_from(idle.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)),
            taskrun_flag: spin.is_some(),
        };
        let RingSetup {
            ring,
            flags,
            taskrun_flag,
            sqpoll_refused,
        } = build_ring(cfg.ring_entries, opts)?;
        if let Some(err) = sqpoll_refused {
            tracing::warn!(
                core = shared.index(),
                %err,
                flags = flags.describe(),
                "the kernel refused IORING_SETUP_SQPOLL; running without it"
            );
        }
        let sqpoll = flags.sqpoll();
        if sqpoll {
            shared.set_sqpoll();
        }
        let poll_mode = if sqpoll {
            PollMode::Sqpoll
        } else if taskrun_flag {
            PollMode::TaskrunFlag
        } else {
            PollMode::Always
        };
        let bufs = BufRing::new(&ring, cfg.recv_buffers, cfg.recv_buffer_size, 0).map_err(
            |err| match err.raw_os_error() {
                Some(libc::EINVAL) => StartError::MissingFeature {
                    feature: "IORING_REGISTER_PBUF_RING",
                    needs: "5.19",
                },
                _ => StartError::Setup(err),
            },
        )?;
        let enter = Enter::new(&ring);
        tracing::debug!(
            core = shared.index(),
            ?flags,
            taskrun_flag,
            ?spin,
            registered_ring_fd = enter.is_registered(),
            incremental_buffers = bufs.incremental(),
            "ring ready"
        );
        let group = bufs.group();
        Ok(Core {
            enter,
            io: Ring::new(ring, group, cfg.recv_buffer_size),
            bufs,
            conns: Conns::new(shared.clone()),
            shared,
            cqes: Vec::with_capacity(256),
            rearm: Vec::new(),
            reaped_work: false,
            spin,
            poll_mode,
            sqpoll,
        })
    }

    fn run(mut self) {
        self.io.arm_wake(self.shared.wake_fd());
        loop {
            // Whether this turn has work to show for itself (busy polling follows work only).
            let mut worked = std::mem::take(&mut self.reaped_work);
            if let Some(commands) = self.shared.take_commands() {
                worked = true;
                for cmd in commands {
                    self.conns.command(cmd, &mut self.io);
                }
            }
            self.conns.run_deferred(&mut self.io);
            for key in std::mem::take(&mut self.io.later) {
                self.conns.flush(key, &mut self.io);
            }
            if self.conns.stopping() {
                if self.conns.is_empty() && !self.io.withdrawn {
                    self.io.withdraw();
                }
                if self.io.in_flight() == 0 && !self.io.backlogged() {
                    break;
                }
            }
            self.bufs.commit();
            self.rearm_receives();
            self.io.flush_backlog();
            // Publish before (possibly) sleeping, so readers see current counters meanwhile.
            self.shared.publish(&self.conns.stats);
            let busy = !self.io.ring.completion().is_empty()
                || self.io.backlogged()
                || !self.io.later.is_empty();
            let entered = match self.spin {
                Some(limit) if !busy && worked => self.busy_poll(limit),
                _ => Ok(false),
            }
            .and_then(|found| {
                if found {
                    // The poll submitted this turn's operations and ran the task work.
                    return Ok(());
                }
                let want = u32::from(!busy && self.shared.about_to_sleep());
                self.conns.stats.sleeps += u64::from(want);
                let entered = self.enter(want);
                self.shared.awake();
                entered
            });
            if let Err(err) = entered {
                tracing::error!(core = self.shared.index(), %err, "io_uring_enter failed; core stops");
                break;
            }
            self.reap();
            self.conns.stats.turns += 1;
        }
        self.shared.publish(&self.conns.stats);
        self.teardown();
    }
}

impl Core {
    /// Busy polling (`RuntimeConfig::busy_poll`): the core found nothing to do and, instead of
    /// sleeping at once, polls for up to `limit` for commands from other threads, work its own
    /// thread deferred, and completions. Returns whether it found any (then the loop goes on
    /// without sleeping); if not, the caller sleeps as it would have without the spin.
    ///
    /// It never announces sleep (`about_to_sleep`), so senders meanwhile write no eventfd and
    /// the spin sees their work through the doorbell's pending flag (`doorbell.rs`). With
    /// `DEFER_TASKRUN`, completions reach the queue only when this thread enters the kernel
    /// with `GETEVENTS`: the first poll enters (submitting this turn's operations and running
    /// what task work is due, waiting for nothing), and later ones enter when the kernel
    /// flags task work (`IORING_SQ_TASKRUN`), or every time when the ring cannot flag it.
    fn busy_poll(&mut self, limit: Duration) -> io::Result<bool> {
        self.conns.stats.busy_polls += 1;
        let start = Instant::now();
        let mut enter = true;
        loop {
            if enter {
                self.enter(0)?;
            }
            if !self.io.ring.completion().is_empty()
                || self.shared.has_commands()
                || crate::engine::core::has_deferred()
            {
                self.conns.stats.busy_poll_hits += 1;
                return Ok(true);
            }
            if start.elapsed() >= limit {
                // Counters are current whenever the core sleeps.
                self.shared.publish(&self.conns.stats);
                return Ok(false);
            }
            std::hint::spin_loop();
            let sq = self.io.ring.submission();
            enter = sq.cq_overflow()
                || match self.poll_mode {
                    PollMode::TaskrunFlag => sq.taskrun() || !sq.is_empty(),
                    PollMode::Sqpoll => !sq.is_empty() && sq.need_wakeup(),
                    PollMode::Always => true,
                };
        }
    }

    /// Submits what is queued and waits for `want` completions, running deferred task work.
    /// With `SQPOLL` the kernel thread submits: this enters only to wake it (when it sleeps
    /// with work queued), to wait, or to flush an overflowed completion queue.
    fn enter(&mut self, want: u32) -> io::Result<()> {
        let mut flags = IORING_ENTER_GETEVENTS;
        let to_submit = {
            let sq = self.io.ring.submission();
            if self.sqpoll {
                // `need_wakeup` fences after the tail store (made when the pushes' queue
                // handles were dropped), pairing with the kernel thread's barrier before it
                // looks at the tail a last time and sleeps.
                if !sq.is_empty() && sq.need_wakeup() {
                    flags |= IORING_ENTER_SQ_WAKEUP;
                } else if want == 0 && !sq.cq_overflow() {
                    return Ok(());
                }
            }
            sq.len() as u32
        };
        self.conns.stats.enters += 1;
        // SAFETY: every SQE queued points at memory that lives until its completion (see
        // `Ring::push`).
        let res = unsafe { self.enter.enter(to_submit, want, flags) };
        match res {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Re-arms the receives that ended this turn, for connections that still read.
    fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.rearm);
        for &key in &rearm {
            if !self.conns.wants_read(key) {
                continue;
            }
            let credit = self.conns.recv_credit(key);
            if let Some((fd, state)) = self.conns.io_state(key) {
                self.io.read(key, fd, credit, state);
            }
        }
        rearm.clear();
        self.rearm = rearm;
    }

    /// If the loop cannot go on, wait (bounded) for the kernel to finish with our memory.
    fn teardown(mut self) {
        self.conns.close_all(&mut self.io);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.io.in_flight() > 0 && Instant::now() < deadline {
            self.io.cancel_all();
            self.io.flush_backlog();
            if self.enter(1).is_err() {
                break;
            }
            self.reap();
        }
        if self.io.in_flight() > 0 {
            tracing::error!(
                core = self.shared.index(),
                ops = self.io.in_flight(),
                "operations still in flight at shutdown; leaking their buffers"
            );
            let Core {
                enter,
                io,
                bufs,
                conns,
                ..
            } = self;
            drop(enter);
            // The ring goes (the kernel stops using our memory only once it is torn down, which
            // may be later); what it may still point at is leaked, never freed under it: the
            // operations' own memory by `InFlight`'s drop, the rest here.
            drop(io);
            std::mem::forget(bufs);
            std::mem::forget(conns);
        }
    }
}
