//! A listener: one `SO_REUSEPORT` socket per core on the same address; each core accepts and
//! owns its connections for their whole life. `bind` makes the sockets, `acceptor` builds each
//! connection's session.

mod acceptor;
mod acked;
mod bind;
mod broadcast;
mod config;
mod registry;
mod stats;
#[cfg(feature = "tls")]
mod tls;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use crate::channel::ChannelSender;
use crate::endpoint::Endpoint;
use crate::engine::handle::{Acceptor, ConnInfo};
use crate::engine::Runtime;
use crate::error::{CloseReason, FrameError, ListenError};
use crate::frame::{AssemblyBudget, Codec};
use crate::log_limit::LogLimit;
use crate::stream::conn::Conn;
use crate::stream::delivery::Delivery;
use crate::stream::session::CloseHook;

use self::acceptor::FramedAcceptor;
use self::bind::{Bound, SocketFile};
pub use self::broadcast::Broadcast;
pub use self::config::{ListenerConfig, DEFAULT_FRAME_TIMEOUT, DEFAULT_PARTIAL_FRAME_BUDGET};
use self::registry::Registry;
use self::stats::ListenerCounters;
pub use self::stats::ListenerStats;

/// A running listener. Cheap to clone: one clone can [`wait`](Listener::wait) while another
/// [`close`](Listener::close)s. Dropping the last clone closes it.
///
/// ```no_run
/// use buffstreams::{Listener, ListenerConfig};
/// let listener = Listener::bind(ListenerConfig::new("127.0.0.1:0", |msg, _conn| {
///     println!("{} bytes", msg.len());
///     Ok(())
/// }))?;
/// println!("listening on {}", listener.local_addr());
/// listener.close();
/// # Ok::<(), buffstreams::ListenError>(())
/// ```
#[derive(Clone)]
pub struct Listener {
    inner: Arc<ListenerInner>,
}

struct ListenerInner {
    id: u64,
    /// Where it listens (with the real port when bound to port 0).
    endpoint: Endpoint,
    /// A Unix domain socket's file, removed on close.
    file: Mutex<Option<SocketFile>>,
    codec: Codec,
    registry: Arc<Registry>,
    /// With channel delivery, the listener's hold on the channel: released once every core has
    /// closed the listener's connections, which ends the receiver (once drained).
    channel: Mutex<Option<ChannelSender>>,
    runtime: Runtime,
    /// What the connections' partly received frames hold.
    budget: Option<Arc<AssemblyBudget>>,
    counters: Arc<ListenerCounters>,
    closed: Mutex<bool>,
    closed_cv: Condvar,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("endpoint", &self.inner.endpoint)
            .field("cores", &self.inner.runtime.cores())
            .finish()
    }
}

fn log_unsent(info: &ConnInfo, _reason: &CloseReason, unsent: Vec<Bytes>) {
    if !unsent.is_empty() {
        tracing::warn!(
            conn = info.id,
            unsent = unsent.len(),
            "connection closed with queued messages unsent (set ListenerConfig::on_close to get them)"
        );
    }
}

impl Listener {
    /// Binds `config.address` with its own runtime (`config`'s core count) and starts accepting
    /// in the background. Returns once every core is accepting.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// let listener = Listener::bind(ListenerConfig::new("127.0.0.1:0", |_msg, _conn| Ok(())))?;
    /// println!("listening on {}", listener.local_addr());
    /// # Ok::<(), buffstreams::ListenError>(())
    /// ```
    pub fn bind(config: ListenerConfig) -> Result<Listener, ListenError> {
        let runtime = Runtime::new(config.runtime_config())?;
        Listener::bind_on(&runtime, config)
    }

    /// Binds on an existing runtime: one listening socket per core of `runtime`.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig, Runtime, RuntimeConfig};
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
    /// let a = Listener::bind_on(&runtime, ListenerConfig::new("127.0.0.1:5031", |_, _| Ok(())))?;
    /// let b = Listener::bind_on(&runtime, ListenerConfig::new("127.0.0.1:5032", |_, _| Ok(())))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_on(runtime: &Runtime, config: ListenerConfig) -> Result<Listener, ListenError> {
        let codec = Codec::new(config.options.framing, config.options.max_len())?;
        let sessions = config.session_table()?;
        let asked = Endpoint::parse(&config.address)
            .ok_or_else(|| ListenError::Resolve(config.address.clone()))?;
        let Bound {
            sockets,
            endpoint,
            file,
        } = Bound::new(asked, runtime.cores(), config.backlog, config.unix_mode)?;
        let registry = Arc::new(Registry::default());
        let user_hook: CloseHook = config
            .on_close
            .clone()
            .unwrap_or_else(|| Arc::new(log_unsent));
        let counters = Arc::new(ListenerCounters::new(runtime.cores(), sessions.clone()));
        let (hook_registry, hook_counters) = (registry.clone(), counters.clone());
        let on_close: CloseHook = Arc::new(move |info, reason, unsent| {
            let conn = hook_registry.lock().remove(&info.id);
            drop(conn);
            hook_counters.closed(reason);
            user_hook(info, reason, unsent);
        });
        // With a channel, the listener holds a sender of its own until it has closed every
        // connection (so the receiver ends only then).
        let channel = match &config.delivery {
            Delivery::Channel(link) => Some(link.sender()),
            Delivery::Discard | Delivery::Handler(_) => None,
        };
        let limits = config.session_limits(codec.max_message_size());
        let id = next_listener_id();
        let framed = FramedAcceptor {
            codec,
            delivery: config.delivery.clone(),
            policy: config.options.policy,
            on_close,
            send_queue_bytes: config.conn_send_queue_bytes(),
            registry: registry.clone(),
            limits: limits.clone(),
            max_connections: config.max_connections,
            refused_log: LogLimit::default(),
            counters: counters.clone(),
            sessions,
        };
        #[cfg(feature = "tls")]
        let acceptor: Arc<dyn Acceptor> = match &config.tls {
            Some(tls) => Arc::new(self::tls::TlsAcceptor::start(id, framed, tls)?),
            None => Arc::new(framed),
        };
        #[cfg(not(feature = "tls"))]
        let acceptor: Arc<dyn Acceptor> = Arc::new(framed);
        if let Some(budget) = &limits.budget {
            // Under pressure, receives armed earlier (a streaming connection's has no limit)
            // are brought within the smaller credit at once, not at their next re-arm.
            let cores = runtime.all_cores().to_vec();
            budget.on_pressure(Box::new(move || {
                for core in &cores {
                    core.narrow_receives();
                }
            }));
        }
        let mut acks = Vec::with_capacity(sockets.len());
        for (core, socket) in runtime.all_cores().iter().zip(sockets) {
            acks.push(core.add_listener(id, OwnedFd::from(socket), acceptor.clone()));
        }
        let listener = Listener {
            inner: Arc::new(ListenerInner {
                id,
                endpoint: endpoint.clone(),
                file: Mutex::new(file),
                codec,
                registry,
                channel: Mutex::new(channel),
                runtime: runtime.clone(),
                budget: limits.budget,
                counters,
                closed: Mutex::new(false),
                closed_cv: Condvar::new(),
            }),
        };
        if acks.iter().any(|done| done.recv().is_err()) {
            listener.close();
            return Err(ListenError::RuntimeClosed);
        }
        tracing::info!(addr = %endpoint, cores = runtime.cores(), "listening");
        Ok(listener)
    }

    /// The bound address (with the real port when bound to port 0).
    /// On a Unix domain socket, `0.0.0.0:0`: see [`endpoint`](Listener::endpoint).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .endpoint
            .tcp()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the listener listens: its TCP address (with the real port when bound to port 0)
    /// or its Unix domain socket. Its string form is what a
    /// [`WriterConfig`](crate::WriterConfig) takes to dial it.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig, Writer, WriterConfig};
    /// let listener = Listener::bind(ListenerConfig::new("unix:@my-service", |_, _| Ok(())))?;
    /// let writer = Writer::dial(WriterConfig::new(listener.endpoint().to_string()))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoint(&self) -> Endpoint {
        self.inner.endpoint.clone()
    }

    /// The runtime the listener runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// This listener's counters: its connections and messages only, also on a runtime it
    /// shares. The runtime's per-core counters (bytes, sends, kernel calls, for everything on
    /// it) are [`Runtime::stats`](crate::Runtime::stats).
    pub fn stats(&self) -> ListenerStats {
        self.inner
            .counters
            .snapshot(self.inner.registry.lock().len())
    }

    /// Bytes reserved now by the connections' partly received frames (at most the
    /// [`partial_frame_budget`](ListenerConfig::partial_frame_budget)).
    pub fn partial_frame_bytes(&self) -> usize {
        self.inner.budget.as_ref().map_or(0, |b| b.used())
    }

    /// Bytes received now by stopped connections (their channel full, or waiting for the budget)
    /// and kept until they read again: what the kernel had handed them when they stopped. Each
    /// receive is limited (see [`partial_frame_budget`](ListenerConfig::partial_frame_budget)),
    /// so this stays at a few KiB per stopped connection while the budget is under pressure.
    pub fn held_bytes(&self) -> usize {
        self.inner.budget.as_ref().map_or(0, |b| b.held())
    }

    /// The live connections (accepted and not yet closed), by id.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let mut infos: Vec<ConnInfo> = self
            .inner
            .registry
            .lock()
            .values()
            .map(Conn::info)
            .collect();
        infos.sort_unstable_by_key(|info| info.id);
        infos
    }

    /// Writes `msg` to every live connection; never waits. The message is framed once and the
    /// frame queued on each connection. A connection whose send queue is full (its peer reads
    /// too slowly) does not hold up the others: it is reported in
    /// [`Broadcast::failed`] with [`WriteError::Full`](crate::WriteError::Full).
    ///
    /// Errors only if `msg` cannot be framed (too large, or holding the delimiter). Messages
    /// broadcast from one thread reach each connection in order (minus those it refused).
    ///
    /// ```no_run
    /// # fn demo(listener: &buffstreams::Listener) -> Result<(), buffstreams::FrameError> {
    /// let report = listener.broadcast(b"tick")?;
    /// for (conn, err) in &report.failed {
    ///     eprintln!("connection {} missed it: {err}", conn.id);
    /// }
    /// println!("queued for {} connections", report.queued);
    /// # Ok(()) }
    /// ```
    pub fn broadcast(&self, msg: &[u8]) -> Result<Broadcast, FrameError> {
        self.broadcast_to(msg, |_| true)
    }

    /// [`broadcast`](Listener::broadcast) to the live connections for which `filter` returns
    /// `true`.
    ///
    /// ```no_run
    /// # fn demo(listener: &buffstreams::Listener) -> Result<(), buffstreams::FrameError> {
    /// // only the peers on loopback
    /// listener.broadcast_to(b"local news", |conn| conn.peer.ip().is_loopback())?;
    /// # Ok(()) }
    /// ```
    pub fn broadcast_to<F>(&self, msg: &[u8], filter: F) -> Result<Broadcast, FrameError>
    where
        F: FnMut(&ConnInfo) -> bool,
    {
        let frame = self.inner.codec.prepare(msg)?;
        Ok(Broadcast::send(&self.inner.registry, &frame, filter))
    }

    /// Stops accepting, closes every connection (handlers running now finish first: they run on
    /// the cores that carry out the close) and closes the sockets, so the port can be bound again
    /// at once. Idempotent; returns when every core is done. With
    /// [channel delivery](ListenerConfig::with_channel), the receiver then ends once it has
    /// handed out what is queued.
    pub fn close(&self) {
        if self.inner.on_own_core() {
            // Called from a handler: that core cannot carry out the close while it runs this
            // handler, so the close is waited for on another thread.
            let this = self.clone();
            let _ = std::thread::Builder::new()
                .name("buffstreams-close".into())
                .spawn(move || this.inner.close());
            return;
        }
        self.inner.close();
    }

    /// Blocks until the listener is closed (from another clone, or another thread).
    pub fn wait(&self) {
        let mut closed = self.inner.closed.lock().unwrap_or_else(|e| e.into_inner());
        while !*closed {
            closed = self
                .inner
                .closed_cv
                .wait(closed)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether [`close`](Listener::close) has completed.
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ListenerInner {
    fn on_own_core(&self) -> bool {
        self.runtime
            .all_cores()
            .iter()
            .any(|core| core.is_current())
    }

    fn close(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
        let waits: Vec<_> = self
            .runtime
            .all_cores()
            .iter()
            .map(|core| core.remove_listener(self.id))
            .collect();
        for done in waits {
            // Err: that core already ended, and with it the socket.
            let _ = done.recv();
        }
        // Every connection is closed: with channel delivery, the receiver ends once drained.
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(channel);
        *closed = true;
        self.closed_cv.notify_all();
        // Unix domain socket: its file goes with it.
        drop(self.file.lock().unwrap_or_else(|e| e.into_inner()).take());
        tracing::info!(addr = %self.endpoint, "listener closed");
    }
}

impl Drop for ListenerInner {
    fn drop(&mut self) {
        if self.on_own_core() {
            // Dropped inside a handler: ask the cores to close without waiting for them.
            for core in self.runtime.all_cores() {
                drop(core.remove_listener(self.id));
            }
            return;
        }
        self.close();
    }
}

fn next_listener_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
