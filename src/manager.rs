//! The manager: one runtime, and the listeners and writers on it, cached by address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::endpoint::Endpoint;
use crate::engine::{CoreStats, Runtime, RuntimeConfig};
use crate::error::{DialError, ListenError, StartError, TryWriteError, Unsent, WriteError};
use crate::listener::Listener;
use crate::listener::ListenerConfig;
use crate::writer::{WriteFuture, Writer, WriterConfig};

/// Why a manager operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// No writer was dialed for this address (the manager does not dial on demand: dial first,
    /// with the configuration you want).
    #[error("no writer dialed for {0:?}")]
    NotDialed(String),
    /// A writer for this address already exists.
    #[error("a writer for {0:?} is already dialed")]
    AlreadyDialed(String),
    /// No listener on this address.
    #[error("no listener on {0:?}")]
    NotListening(String),
    /// The manager was shut down.
    #[error("the manager is shut down")]
    Shutdown,
    /// Listening failed.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Dialing failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The write was refused.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What [`Manager::shutdown`] could not deliver.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Per writer address, the messages accepted but not handed to the kernel by the deadline.
    pub unsent: Vec<(String, Unsent)>,
}

impl ShutdownReport {
    /// Total number of messages that were not sent.
    pub fn unsent_messages(&self) -> usize {
        self.unsent.iter().map(|(_, u)| u.unsent.len()).sum()
    }
}

type Writers = HashMap<String, Writer>;

struct ManagerInner {
    runtime: Runtime,
    /// Read on every write without a lock (a snapshot swapped on dial and close).
    writers: ArcSwap<Writers>,
    listeners: Mutex<HashMap<String, Listener>>,
    /// Serialises changes to `writers` and the shut-down flag.
    changes: Mutex<bool>,
    grace: Duration,
}

/// A thread-safe registry of listeners and dialed writers, keyed by address, on one shared
/// runtime. `Send + Sync + Clone`: share it between any number of threads.
///
/// Each writer lives on core `hash(address) % cores`, so every write to one address, from any
/// thread, goes through one core's queue in order. Writing looks the writer up in a lock-free
/// snapshot: no lock per message, and a busy core is not woken per message.
///
/// `write_to` an address that was not dialed is an error ([`ManagerError::NotDialed`]): the
/// manager does not guess a configuration for you.
///
/// ```no_run
/// use buffstreams::{ListenerConfig, Manager, WriterConfig};
/// let manager = Manager::new(Default::default())?;
/// let addr = manager.listen(ListenerConfig::new("127.0.0.1:0", |msg, _| {
///     println!("{} bytes", msg.len());
///     Ok(())
/// }))?;
/// manager.dial(WriterConfig::new(addr.to_string()))?;
/// manager.write_to(&addr.to_string(), b"hello")?;
/// let report = manager.shutdown(std::time::Duration::from_secs(1));
/// assert_eq!(report.unsent_messages(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<ManagerInner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("cores", &self.inner.runtime.cores())
            .field("writers", &self.writers())
            .field("listeners", &self.listeners())
            .finish()
    }
}

impl Manager {
    /// Starts the runtime (see [`RuntimeConfig`]; the default is one pinned core per CPU).
    ///
    /// ```no_run
    /// use buffstreams::{Manager, RuntimeConfig};
    /// let manager = Manager::new(RuntimeConfig::with_cores(2))?;
    /// # Ok::<(), buffstreams::StartError>(())
    /// ```
    pub fn new(config: RuntimeConfig) -> Result<Manager, StartError> {
        let grace = config.shutdown_grace;
        Ok(Manager::with_runtime(Runtime::new(config)?, grace))
    }

    /// A manager on an existing runtime; `grace` bounds the drain when the last handle drops.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use buffstreams::{Manager, Runtime, RuntimeConfig};
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let manager = Manager::with_runtime(runtime, Duration::from_secs(5));
    /// # Ok::<(), buffstreams::StartError>(())
    /// ```
    pub fn with_runtime(runtime: Runtime, grace: Duration) -> Manager {
        Manager {
            inner: Arc::new(ManagerInner {
                runtime,
                writers: ArcSwap::from_pointee(HashMap::new()),
                listeners: Mutex::new(HashMap::new()),
                changes: Mutex::new(false),
                grace,
            }),
        }
    }

    /// The runtime the manager's listeners and writers run on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Per-core counters.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.inner.runtime.stats()
    }

    fn check_open(&self) -> Result<std::sync::MutexGuard<'_, bool>, ManagerError> {
        let shut = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        if *shut {
            return Err(ManagerError::Shutdown);
        }
        Ok(shut)
    }

    /// Starts a listener; returns where it listens (the real port if the config asked for 0;
    /// its string form is what [`dial`](Manager::dial) and `write_to` take).
    /// It is kept under both the configured address and the bound one.
    pub fn listen(&self, config: ListenerConfig) -> Result<Endpoint, ManagerError> {
        let _open = self.check_open()?;
        let asked = config.address.clone();
        let listener = Listener::bind_on(&self.inner.runtime, config)?;
        let bound = listener.endpoint();
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        listeners.insert(bound.to_string(), listener.clone());
        listeners.insert(asked, listener);
        Ok(bound)
    }

    /// Dials a writer and keeps it under `config`'s address string (what `write_to` takes).
    ///
    /// ```no_run
    /// use buffstreams::{Manager, RuntimeConfig, WriterConfig};
    /// let manager = Manager::new(RuntimeConfig::default())?;
    /// let writer = manager.dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// writer.write(b"hello")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial(&self, config: WriterConfig) -> Result<Writer, ManagerError> {
        let _open = self.check_open()?;
        let address = config.address.clone();
        if self.inner.writers.load().contains_key(&address) {
            return Err(ManagerError::AlreadyDialed(address));
        }
        let writer = Writer::dial_on(&self.inner.runtime, config)?;
        let mut next = Writers::clone(&self.inner.writers.load());
        next.insert(address, writer.clone());
        self.inner.writers.store(Arc::new(next));
        Ok(writer)
    }

    /// The writer dialed for `address`, if any.
    pub fn writer(&self, address: &str) -> Option<Writer> {
        self.inner.writers.load().get(address).cloned()
    }

    /// Writes `msg` to the writer dialed for `address` (see [`Writer::write`]: waits while its
    /// queue is full; returns the bytes framed).
    pub fn write_to(&self, address: &str, msg: &[u8]) -> Result<usize, ManagerError> {
        match self.inner.writers.load().get(address) {
            Some(writer) => Ok(writer.write(msg)?),
            None => Err(self.missing(address)),
        }
    }

    /// Like [`write_to`](Manager::write_to) but never waits (see [`Writer::try_write`]); the
    /// message comes back in the error.
    pub fn try_write_to(
        &self,
        address: &str,
        msg: impl Into<Bytes>,
    ) -> Result<usize, TryWriteError> {
        match self.inner.writers.load().get(address) {
            Some(writer) => writer.try_write(msg),
            None => Err(TryWriteError {
                message: msg.into(),
                reason: WriteError::Closed,
            }),
        }
    }

    /// Like [`write_to`](Manager::write_to) but as a future that waits for room without
    /// blocking a thread (see [`Writer::write_async`]).
    pub async fn write_to_async(&self, address: &str, msg: &[u8]) -> Result<usize, ManagerError> {
        let writer = self.writer(address).ok_or_else(|| self.missing(address))?;
        let future: WriteFuture<'_> = writer.write_async(msg);
        Ok(future.await?)
    }

    fn missing(&self, address: &str) -> ManagerError {
        if *self.inner.changes.lock().unwrap_or_else(|e| e.into_inner()) {
            ManagerError::Shutdown
        } else {
            ManagerError::NotDialed(address.to_string())
        }
    }

    /// Waits until everything written to `address` was handed to the kernel.
    pub fn flush(&self, address: &str) -> Result<(), ManagerError> {
        let writer = self.writer(address).ok_or_else(|| self.missing(address))?;
        Ok(writer.flush()?)
    }

    /// Closes the listener kept under `address` (configured or bound address).
    pub fn close_listener(&self, address: &str) -> Result<(), ManagerError> {
        let listener = {
            let mut listeners = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let listener = listeners
                .remove(address)
                .ok_or_else(|| ManagerError::NotListening(address.to_string()))?;
            // Drop the other name it was kept under too.
            listeners.retain(|_, l| l.endpoint() != listener.endpoint());
            listener
        };
        listener.close();
        Ok(())
    }

    /// Closes the writer dialed for `address` (sending what is queued, for at most `timeout`)
    /// and forgets it. `Ok(Err(unsent))` hands back what could not be sent.
    pub fn close_writer(
        &self,
        address: &str,
        timeout: Duration,
    ) -> Result<Result<(), Unsent>, ManagerError> {
        let writer = {
            let _changes = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
            let mut next = Writers::clone(&self.inner.writers.load());
            let writer = next
                .remove(address)
                .ok_or_else(|| ManagerError::NotDialed(address.to_string()))?;
            self.inner.writers.store(Arc::new(next));
            writer
        };
        Ok(writer.close_timeout(timeout))
    }

    /// Addresses with a dialed writer.
    pub fn writers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.writers.load().keys().cloned().collect();
        v.sort();
        v
    }

    /// Addresses with a listener (configured and bound addresses).
    pub fn listeners(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Stops taking work, closes every listener, drains every writer for at most `deadline`
    /// (all in parallel), hands back what could not be sent, closes every socket and joins the
    /// core threads. Idempotent; later operations fail with [`ManagerError::Shutdown`].
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.shutdown(deadline)
    }
}

impl ManagerInner {
    fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let writers = {
            let mut shut = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            if *shut {
                return ShutdownReport::default();
            }
            *shut = true;
            let writers = self.writers.swap(Arc::new(HashMap::new()));
            Writers::clone(&writers)
        };
        let listeners: Vec<Listener> = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.drain().map(|(_, l)| l).collect()
        };
        let end = Instant::now() + deadline;
        let mut report = ShutdownReport::default();
        std::thread::scope(|scope| {
            let closing: Vec<_> = writers
                .into_iter()
                .map(|(address, writer)| {
                    scope.spawn(move || {
                        let left = end.saturating_duration_since(Instant::now());
                        (address, writer.close_timeout(left))
                    })
                })
                .collect();
            for listener in &listeners {
                listener.close();
            }
            for handle in closing {
                if let Ok((address, Err(unsent))) = handle.join() {
                    report.unsent.push((address, unsent));
                }
            }
        });
        drop(listeners);
        self.runtime.shutdown();
        tracing::info!(unsent = report.unsent_messages(), "manager shut down");
        report
    }
}

impl Drop for ManagerInner {
    fn drop(&mut self) {
        let report = self.shutdown(self.grace);
        if report.unsent_messages() > 0 {
            tracing::warn!(
                unsent = report.unsent_messages(),
                "manager dropped without shutdown(): messages were not sent"
            );
        }
    }
}
