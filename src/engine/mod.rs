//! The per-core runtime: one thread per core, each owning one io_uring ring (or epoll poller)
//! and every socket it accepted or dialed. [`Runtime`] starts the cores through `spawn`, the one
//! place that picks a backend's driver (`uring::driver` or `epoll::driver`).
//!
//! - `handle`: the one door for the layers above (listener, writer, conn).
//! - `conns`: a core's connections and listeners and the rules of their lives, shared by both
//!   drivers, which only turn its requests into I/O and kernel events into calls on it.
//! - `core`: what other threads share with a core (commands, wake-up, counters); names neither
//!   driver. `send`: send memory and each connection's queue. `session`: the seam where bytes
//!   become messages (the engine never sees a frame format).

// `handle` is the one door for the layers above: every other module is private, so the
// compiler keeps them out.
mod conns;
mod core;
mod cpus;
mod dialer;
mod doorbell;
mod epoll;
pub(crate) mod handle;
mod probe;
mod send;
mod session;
mod stats;
mod uring;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use self::core::{Command, CoreShared};
use self::handle::CoreHandle;
pub use self::probe::{probe, KernelReport, MIN_KERNEL};
pub use self::stats::CoreStats;
use crate::error::StartError;

/// Which kernel interface the cores use. The public API and behaviour are the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// io_uring when the kernel offers everything the engine needs, else epoll (a `tracing`
    /// event says which and why).
    #[default]
    Auto,
    /// io_uring only: starting fails with a typed [`StartError`] if it is unavailable.
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

    fn resolved_cores(&self) -> usize {
        match self.cores {
            0 => online_cpus(),
            n => n,
        }
    }

    pub(crate) fn cpu_for(&self, core: usize) -> Option<usize> {
        let cpus = cpus::allowed_cpus();
        self.pin
            .then(|| cpus[(self.first_cpu.wrapping_add(core)) % cpus.len()])
    }
}

/// Number of CPUs this process may run on.
pub(crate) fn online_cpus() -> usize {
    cpus::allowed_cpus().len()
}

struct RuntimeInner {
    backend: Backend,
    cores: Vec<CoreHandle>,
    dialer: self::dialer::Dialer,
    threads: Mutex<Vec<JoinHandle<()>>>,
    grace: Duration,
}

/// A set of per-core threads, each running its own io_uring ring (or epoll instance, see
/// [`Backend`]). Cheap to clone; the threads
/// stop (after sending what is queued, for at most [`RuntimeConfig::shutdown_grace`]) when the
/// last clone and every listener and writer on it are gone, or on [`Runtime::shutdown`].
///
/// Listeners and writers made with `bind`/`dial` start a runtime of their own; pass one
/// explicitly (`bind_on`/`dial_on`) to share cores.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cores", &self.inner.cores.len())
            .finish()
    }
}

impl Runtime {
    /// Starts the core threads; each creates its ring on its own thread. Fails with a typed
    /// error (saying why and what to do) if io_uring is missing, disabled or blocked.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig, Runtime, RuntimeConfig, Writer, WriterConfig};
    /// let runtime = Runtime::new(RuntimeConfig::with_cores(2))?;
    /// let listener = Listener::bind_on(&runtime, ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())))?;
    /// let writer = Writer::dial_on(&runtime, WriterConfig::new(listener.local_addr().to_string()))?;
    /// println!("running on {:?}", runtime.backend());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: RuntimeConfig) -> Result<Runtime, StartError> {
        let n = config.resolved_cores();
        if n > 1024 {
            return Err(StartError::Config("at most 1024 cores"));
        }
        if config.recv_buffers == 0 || !config.recv_buffers.is_power_of_two() {
            return Err(StartError::Config("recv_buffers must be a power of two"));
        }
        if config.recv_buffer_size == 0 {
            return Err(StartError::Config("recv_buffer_size must be positive"));
        }
        let mut backend = config.backend;
        let mut cores = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut index = 0;
        while index < n {
            let started = spawn(index, &config, backend);
            match started {
                Ok((shared, thread)) => {
                    cores.push(CoreHandle(shared));
                    threads.push(thread);
                    index += 1;
                    if backend == Backend::Auto {
                        backend = Backend::IoUring;
                    }
                }
                Err(err) if backend == Backend::Auto && err.io_uring_unavailable() => {
                    tracing::warn!(reason = %err, "io_uring unavailable; using the epoll backend");
                    backend = Backend::Epoll;
                }
                Err(err) => {
                    for core in &cores {
                        core.0.send(Command::Shutdown {
                            grace: Duration::ZERO,
                        });
                    }
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(err);
                }
            }
        }
        tracing::debug!(cores = n, ?backend, "runtime started");
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                backend,
                cores,
                dialer: self::dialer::Dialer::default(),
                threads: Mutex::new(threads),
                grace: config.shutdown_grace,
            }),
        })
    }

    /// The backend the cores run (`IoUring` or `Epoll`; never `Auto`).
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Whether every core's ring runs with submission queue polling (`IORING_SETUP_SQPOLL`):
    /// `false` without [`RuntimeConfig::sqpoll`], on the epoll backend, or when the kernel
    /// refused it (the cores then run with the usual flags).
    pub fn sqpoll(&self) -> bool {
        self.inner.backend == Backend::IoUring && self.inner.cores.iter().all(|c| c.0.sqpoll())
    }

    /// Number of core threads.
    pub fn cores(&self) -> usize {
        self.inner.cores.len()
    }

    /// A snapshot of every core's counters (updated once per loop turn).
    pub fn stats(&self) -> Vec<CoreStats> {
        self.inner.cores.iter().map(|c| c.0.stats()).collect()
    }

    /// Stops every core now (closing listeners and connections after the shutdown grace) and
    /// joins the threads. Listeners and writers on this runtime stop working.
    pub fn shutdown(&self) {
        self.inner.stop();
    }

    /// The core that owns writers to `addr`: `hash(addr) % cores`, the same for every call,
    /// so all writes to one address go through one core's queue, in order.
    pub fn core_for(&self, addr: &std::net::SocketAddr) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        addr.hash(&mut hasher);
        (hasher.finish() % self.inner.cores.len() as u64) as usize
    }

    /// Core `index` (modulo the number of cores).
    pub(crate) fn core(&self, index: usize) -> &CoreHandle {
        &self.inner.cores[index % self.inner.cores.len()]
    }

    /// Every core, in order.
    pub(crate) fn all_cores(&self) -> &[CoreHandle] {
        &self.inner.cores
    }

    /// The runtime's background reconnect thread.
    pub(crate) fn dialer(&self) -> &self::dialer::Dialer {
        &self.inner.dialer
    }
}

impl RuntimeInner {
    fn stop(&self) {
        self.dialer.stop();
        for core in &self.cores {
            core.0.send(Command::Shutdown { grace: self.grace });
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for thread in threads {
            // A core thread that drops the last handle (from a handler) must not join itself;
            // it ends on its own after the shutdown command.
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts core `index` on a new thread with `backend` (`IoUring` or `Epoll`, already
/// resolved); returns once its loop is set up (or failed to set up).
fn spawn(
    index: usize,
    cfg: &RuntimeConfig,
    backend: Backend,
) -> Result<(Arc<CoreShared>, std::thread::JoinHandle<()>), StartError> {
    match backend {
        Backend::Epoll => self::core::spawn_with::<epoll::driver::Core>(index, cfg),
        Backend::IoUring | Backend::Auto => {
            self::core::spawn_with::<uring::driver::Core>(index, cfg)
        }
    }
}
