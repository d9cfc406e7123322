//! How a runtime is set up: the [`Backend`] its cores use and the [`RuntimeConfig`] it is started
//! with (core count, pinning, ring and buffer sizes, busy polling), and the CPUs the process may
//! run on.

use std::time::Duration;

/// Which kernel interface the cores use. The public API and behaviour are the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring when the kernel offers everything the engine needs, else epoll (a `tracing`
    /// event says which and why).
    #[default]
    Auto,
    /// io_uring only: starting fails with a typed [`StartError`] if it is unavailable.
    ///
    /// [`StartError`]: crate::StartError
    IoUring,
    /// epoll (through `mio`): works wherever Linux does, e.g. under Docker's default seccomp
    /// profile or with `kernel.io_uring_disabled` set.
    Epoll,
}

/// How a [`Runtime`] is set up. `Default` gives one core per CPU the process may run on, each
/// pinned to its own CPU of that set.
///
/// ```
/// use buffstreams::RuntimeConfig;
/// let cfg = RuntimeConfig { cores: 2, pin: false, ..RuntimeConfig::default() };
/// assert_eq!(cfg.cores, 2);
/// ```
///
/// [`Runtime`]: crate::Runtime
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of core threads; 0 means one per CPU the process may run on (its
    /// `sched_getaffinity` set: `taskset`, a cgroup cpuset).
    pub cores: usize,
    /// io_uring, epoll, or io_uring with an epoll fallback (the default).
    pub backend: Backend,
    /// Pin core `i` to the `(first_cpu + i) % n`-th of the `n` CPUs the process may run on (in
    /// ascending order): under `taskset -c 2,3`, core 0 runs on CPU 2.
    pub pin: bool,
    /// Where in the process's CPU set core 0 is pinned (an index into the allowed CPUs, which is
    /// the CPU number itself when every CPU is allowed).
    pub first_cpu: usize,
    /// Submission queue entries per ring (the completion queue gets 8 times as many).
    pub ring_entries: u32,
    /// Receive buffers per core in the provided-buffer ring (a power of two, at most 32768).
    ///
    /// Keep `recv_buffers * recv_buffer_size` near the CPU's L2 cache: the kernel fills every
    /// free buffer before the core parses them, so a larger ring parses cold data (measured: see
    /// docs/benchmarks.md, 'receive buffers'). A ring that runs dry costs one re-armed receive,
    /// counted in [`CoreStats::recv_no_buffers`].
    ///
    /// [`CoreStats::recv_no_buffers`]: crate::CoreStats::recv_no_buffers
    pub recv_buffers: u16,
    /// Size of each receive buffer; one receive completion carries at most this many bytes.
    pub recv_buffer_size: u32,
    /// On shutdown, how long queued bytes may still be sent before connections are cut.
    pub shutdown_grace: Duration,
    /// Busy polling: when a core runs out of work, it keeps looking for more (commands from
    /// other threads, completions or readiness) for up to this long before it goes to sleep in
    /// the kernel. `None` (the default) or a zero duration: a core sleeps as soon as it has
    /// nothing to do.
    ///
    /// A request that arrives within the window is picked up without the wake-up of a sleeping
    /// thread (a scheduler round trip, several microseconds, more on a VM), which lowers
    /// request/response latency when the peer answers quickly and runs on *another* CPU
    /// (measured: see docs/benchmarks.md, 'busy polling').
    /// The price: after each burst of work (not after a timer tick) the core burns its CPU for
    /// up to this long, and a core that never gets a quiet window longer than this never
    /// sleeps, so it shows 100% of its CPU busy. Keep it short (tens to hundreds of
    /// microseconds: the gap between a reply and the next request) and only for latency-bound,
    /// lightly loaded cores on dedicated CPUs; never when the peer, or other busy threads,
    /// share the core's CPU (the spin holds the CPU they need, and the same ping-pong on one CPU
    /// got many times slower). Both backends spin the same way (io_uring polls its completion
    /// queue, running deferred task work without waiting; epoll polls with a zero timeout).
    /// [`CoreStats::busy_polls`], [`CoreStats::busy_poll_hits`] and [`CoreStats::sleeps`]
    /// show what it did.
    ///
    /// [`CoreStats::busy_polls`]: crate::CoreStats::busy_polls
    /// [`CoreStats::busy_poll_hits`]: crate::CoreStats::busy_poll_hits
    /// [`CoreStats::sleeps`]: crate::CoreStats::sleeps
    pub busy_poll: Option<Duration>,
    /// io_uring only: submission queue polling (`IORING_SETUP_SQPOLL`), with the time the
    /// kernel's polling thread keeps spinning after the last submission before it sleeps
    /// (rounded up to whole milliseconds, at least 1). `None` (the default): no polling thread;
    /// the core submits with `io_uring_enter`.
    ///
    /// Each core's ring gets a kernel thread that picks submissions up as they are written, so
    /// sends and re-armed receives need no system call while it is awake. It costs a CPU: the
    /// thread spins for the whole idle time after every submission, on top of the core's own
    /// thread. It inherits the core thread's CPU affinity: with [`pin`](RuntimeConfig::pin)
    /// (the default) it shares the core's CPU, without it, it may run on any CPU of the
    /// process's set. It excludes `DEFER_TASKRUN` (the ring is set up with `SINGLE_ISSUER`, or
    /// no flag). Only worth it with spare CPUs. When the kernel refuses `SQPOLL`, the core falls
    /// back to the usual set-up flags and logs a warning; [`Runtime::sqpoll`] says whether
    /// every core got it. The epoll backend ignores it.
    ///
    /// [`Runtime::sqpoll`]: crate::Runtime::sqpoll
    pub sqpoll: Option<Duration>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: 0,
            backend: Backend::Auto,
            pin: true,
            first_cpu: 0,
            ring_entries: 1024,
            recv_buffers: 16,
            recv_buffer_size: 64 * 1024,
            shutdown_grace: Duration::from_secs(2),
            busy_poll: None,
            sqpoll: None,
        }
    }
}

impl RuntimeConfig {
    /// The configuration with `cores` core threads.
    ///
    /// ```
    /// use buffstreams::RuntimeConfig;
    /// let cfg = RuntimeConfig::with_cores(4);
    /// assert!(cfg.cores == 4 && cfg.pin);
    /// ```
    pub fn with_cores(cores: usize) -> Self {
        RuntimeConfig {
            cores,
            ..RuntimeConfig::default()
        }
    }

    /// This configuration with busy polling for up to `spin` (see
    /// [`RuntimeConfig::busy_poll`]; a zero duration turns it off).
    ///
    /// ```
    /// use std::time::Duration;
    /// use buffstreams::RuntimeConfig;
    /// let cfg = RuntimeConfig::with_cores(1).busy_poll(Duration::from_micros(100));
    /// assert_eq!(cfg.busy_poll, Some(Duration::from_micros(100)));
    /// ```
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.busy_poll = Some(spin);
        self
    }

    /// This configuration with submission queue polling, the kernel's thread idling for `idle`
    /// (see [`RuntimeConfig::sqpoll`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use buffstreams::RuntimeConfig;
    /// let cfg = RuntimeConfig::with_cores(1).sqpoll(Duration::from_millis(2));
    /// assert_eq!(cfg.sqpoll, Some(Duration::from_millis(2)));
    /// ```
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.sqpoll = Some(idle);
        self
    }

    /// The busy-polling window, if busy polling is on.
    pub(crate) fn spin(&self) -> Option<Duration> {
        self.busy_poll.filter(|d| !d.is_zero())
    }

    pub(crate) fn resolved_cores(&self) -> usize {
        match self.cores {
            0 => online_cpus(),
            n => n,
        }
    }

    pub(crate) fn cpu_for(&self, core: usize) -> Option<usize> {
        let cpus = crate::engine::cpus::allowed_cpus();
        self.pin
            .then(|| cpus[(self.first_cpu.wrapping_add(core)) % cpus.len()])
    }
}

/// Number of CPUs this process may run on.
pub(crate) fn online_cpus() -> usize {
    crate::engine::cpus::allowed_cpus().len()
}
