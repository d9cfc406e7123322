//! A listener: one `SO_REUSEPORT` socket per core on the same address; each core accepts and
//! owns its connections for their whole life.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{HandlerErrorPolicy, ListenerConfig, MessageHandler};
use crate::conn::{CloseHook, Conn, FramedSession};
use crate::engine::core::{Command, CoreShared};
use crate::engine::sendq::SendQueue;
use crate::engine::session::{Acceptor, ConnInfo, Session};
use crate::engine::{CoreStats, Runtime};
use crate::error::{CloseReason, ListenError};
use crate::frame::Codec;

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
    local_addr: SocketAddr,
    runtime: Runtime,
    closed: Mutex<bool>,
    closed_cv: Condvar,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.inner.local_addr)
            .field("cores", &self.inner.runtime.cores())
            .finish()
    }
}

struct FramedAcceptor {
    codec: Codec,
    handler: MessageHandler,
    policy: HandlerErrorPolicy,
    on_close: CloseHook,
    send_queue_bytes: usize,
}

impl Acceptor for FramedAcceptor {
    fn open(&self, info: ConnInfo, core: &Arc<CoreShared>) -> (Arc<SendQueue>, Box<dyn Session>) {
        let sendq = SendQueue::new(
            core.clone(),
            self.send_queue_bytes,
            Box::new(self.codec),
            false,
        );
        let conn = Conn::new(info, self.codec, sendq.clone());
        let session = FramedSession::new(
            conn,
            Some(self.handler.clone()),
            self.policy,
            Some(self.on_close.clone()),
        );
        (sendq, Box::new(session))
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

pub(crate) fn resolve(address: &str) -> Option<SocketAddr> {
    address.to_socket_addrs().ok()?.next()
}

fn bind_socket(addr: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY on Linux: one syscall here instead of one per accept.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

impl Listener {
    /// Binds `config.address` with its own runtime (`config`'s core count) and starts accepting
    /// in the background. Returns once every core is accepting.
    pub fn bind(config: ListenerConfig) -> Result<Listener, ListenError> {
        let runtime = Runtime::new(config.runtime.clone())?;
        Listener::bind_on(&runtime, config)
    }

    /// Binds on an existing runtime: one listening socket per core of `runtime`.
    pub fn bind_on(runtime: &Runtime, config: ListenerConfig) -> Result<Listener, ListenError> {
        let codec = Codec::new(config.framing, config.max_message_size)?;
        let mut addr =
            resolve(&config.address).ok_or_else(|| ListenError::Resolve(config.address.clone()))?;
        let mut sockets = Vec::with_capacity(runtime.cores());
        for _ in 0..runtime.cores() {
            let socket = bind_socket(addr, config.backlog)
                .map_err(|source| ListenError::Bind { addr, source })?;
            if addr.port() == 0 {
                // Port 0: the first socket picks the port, the others join it.
                if let Some(bound) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                    addr = bound;
                }
            }
            sockets.push(socket);
        }
        let acceptor: Arc<dyn Acceptor> = Arc::new(FramedAcceptor {
            codec,
            handler: config.handler.clone(),
            policy: config.policy,
            on_close: config
                .on_close
                .clone()
                .unwrap_or_else(|| Arc::new(log_unsent)),
            send_queue_bytes: config.send_queue_bytes,
        });
        let id = next_listener_id();
        let mut acks = Vec::with_capacity(sockets.len());
        for (core, socket) in runtime.all_cores().iter().zip(sockets) {
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            core.send(Command::AddListener {
                id,
                fd: OwnedFd::from(socket),
                acceptor: acceptor.clone(),
                ack,
            });
            acks.push(done);
        }
        let listener = Listener {
            inner: Arc::new(ListenerInner {
                id,
                local_addr: addr,
                runtime: runtime.clone(),
                closed: Mutex::new(false),
                closed_cv: Condvar::new(),
            }),
        };
        if acks.iter().any(|done| done.recv().is_err()) {
            listener.close();
            return Err(ListenError::RuntimeClosed);
        }
        tracing::info!(addr = %addr, cores = runtime.cores(), "listening");
        Ok(listener)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The runtime the listener runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Per-core counters of the listener's runtime (accepted connections, messages, …).
    pub fn stats(&self) -> Vec<CoreStats> {
        self.inner.runtime.stats()
    }

    /// Stops accepting, closes every connection (handlers running now finish first: they run on
    /// the cores that carry out the close) and closes the sockets, so the port can be bound again
    /// at once. Idempotent; returns when every core is done.
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
            .map(|core| {
                let (ack, done) = std::sync::mpsc::sync_channel(1);
                core.send(Command::RemoveListener { id: self.id, ack });
                done
            })
            .collect();
        for done in waits {
            // Err: that core already ended, and with it the socket.
            let _ = done.recv();
        }
        *closed = true;
        self.closed_cv.notify_all();
        tracing::info!(addr = %self.local_addr, "listener closed");
    }
}

impl Drop for ListenerInner {
    fn drop(&mut self) {
        if self.on_own_core() {
            // Dropped inside a handler: ask the cores to close without waiting for them.
            let (ack, _) = std::sync::mpsc::sync_channel(1);
            for core in self.runtime.all_cores() {
                core.send(Command::RemoveListener {
                    id: self.id,
                    ack: ack.clone(),
                });
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
