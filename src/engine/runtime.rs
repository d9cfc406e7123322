//! The [`Runtime`]: a set of per-core threads, started through `spawn`, the one place that picks
//! a backend's driver (`uring::driver` or `epoll::driver`), and stopped when its last clone is
//! gone.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::config::{Backend, RuntimeConfig};
use crate::engine::core::{spawn_with, Command, CoreShared};
use crate::engine::dialer::Dialer;
use crate::engine::handle::CoreHandle;
use crate::engine::stats::CoreStats;
use crate::error::StartError;

struct RuntimeInner {
    backend: Backend,
    cores: Vec<CoreHandle>,
    dialer: Dialer,
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
                dialer: Dialer::default(),
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
    /// so all writes to one address go through one core's queue, in order. `addr` is what the
    /// writer dials: an [`Endpoint`](crate::Endpoint), or a `SocketAddr` (which hashes as the
    /// TCP endpoint does).
    pub fn core_for<A: std::hash::Hash + ?Sized>(&self, addr: &A) -> usize {
        use std::hash::Hasher;
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
    pub(crate) fn dialer(&self) -> &Dialer {
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
        Backend::Epoll => spawn_with::<crate::engine::epoll::driver::Core>(index, cfg),
        Backend::IoUring | Backend::Auto => {
            spawn_with::<crate::engine::uring::driver::Core>(index, cfg)
        }
    }
}
