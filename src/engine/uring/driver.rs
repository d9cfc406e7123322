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
use crate::engine::conns::{ConnKey, Conns, Io};
use crate::engine::core::{CoreShared, Driver};
use crate::engine::uring::bufring::BufRing;
use crate::engine::uring::build_ring;
use crate::engine::uring::enter::Enter;
use crate::engine::RuntimeConfig;
use crate::error::StartError;

/// `IORING_ENTER_GETEVENTS` (the crate keeps its `sys` module private).
const IORING_ENTER_GETEVENTS: u32 = 1;

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
}

impl Driver for Core {
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Core, StartError> {
        let (ring, flags) = build_ring(cfg.ring_entries)?;
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
            registered_ring_fd = enter.is_registered(),
            incremental_buffers = bufs.incremental(),
            "ring ready"
        );
        let group = bufs.group();
        Ok(Core {
            enter,
            io: Ring::new(ring, group),
            bufs,
            conns: Conns::new(shared.clone()),
            shared,
            cqes: Vec::with_capacity(256),
            rearm: Vec::new(),
        })
    }

    fn run(mut self) {
        self.io.arm_wake(self.shared.wake_fd());
        loop {
            if let Some(commands) = self.shared.take_commands() {
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
                if self.io.ops == 0 && !self.io.backlogged() {
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
            let want = u32::from(!busy && self.shared.about_to_sleep());
            let entered = self.enter(want);
            self.shared.awake();
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
    /// Submits what is queued and waits for `want` completions, running deferred task work.
    fn enter(&mut self, want: u32) -> io::Result<()> {
        let to_submit = self.io.ring.submission().len() as u32;
        self.conns.stats.enters += 1;
        // SAFETY: every SQE queued points at memory that lives until its completion (see
        // `Ring::push`).
        let res = unsafe { self.enter.enter(to_submit, want, IORING_ENTER_GETEVENTS) };
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
            if let Some((fd, state)) = self.conns.io_state(key) {
                self.io.read(key, fd, state);
            }
        }
        rearm.clear();
        self.rearm = rearm;
    }

    /// If the loop cannot go on, wait (bounded) for the kernel to finish with our memory.
    fn teardown(mut self) {
        self.conns.close_all(&mut self.io);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.io.ops > 0 && Instant::now() < deadline {
            self.io.cancel_all();
            self.io.flush_backlog();
            if self.enter(1).is_err() {
                break;
            }
            self.reap();
        }
        if self.io.ops > 0 {
            tracing::error!(
                core = self.shared.index(),
                ops = self.io.ops,
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
            // may be later); what it may still point at is leaked, never freed under it.
            io.leak_memory();
            std::mem::forget(bufs);
            std::mem::forget(conns);
        }
    }
}
