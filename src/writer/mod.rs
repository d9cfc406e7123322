//! A writer: dials an address and writes framed messages through the core that owns it.

mod config;

pub use config::WriterConfig;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{HandlerErrorPolicy, MessageHandler};
use crate::conn::{enqueue, split_frames, Conn, Enqueue, FramedSession};
use crate::engine::core::{next_conn_id, Command, CoreShared};
use crate::engine::sendq::{Link, PushError, SendQueue};
use crate::engine::session::ConnInfo;
use crate::engine::Runtime;
use crate::error::{CloseReason, DialError, Unsent, WriteError};
use crate::frame::Codec;
use crate::listener::resolve;

/// A connection to one address that frames and queues messages. Cheap to clone and safe to use
/// from many threads at once: each message is framed whole into the queue, so frames never
/// interleave, and messages from one thread keep their order.
///
/// `write` returns once the message is queued (it waits while the queue is full). The owning
/// core sends queued frames, many per syscall. If the connection fails, frames not yet taken by
/// the kernel stay queued and the next `write` or `flush` reconnects and sends them; `close`
/// hands back whatever could not be sent.
///
/// ```no_run
/// use buffstreams::{Writer, WriterConfig};
/// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
/// for i in 0..10u32 {
///     writer.write(&i.to_be_bytes())?;
/// }
/// writer.close()?; // sends what is queued, then closes
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Writer {
    inner: Arc<WriterInner>,
}

struct WriterInner {
    addr: SocketAddr,
    codec: Codec,
    sendq: Arc<SendQueue>,
    core: Arc<CoreShared>,
    connect_timeout: Duration,
    handler: Option<MessageHandler>,
    policy: HandlerErrorPolicy,
    current: Mutex<Option<ConnInfo>>,
    // Declared last: dropped after the queue's close command was sent.
    runtime: Runtime,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("addr", &self.inner.addr)
            .field("core", &self.inner.core.index())
            .finish()
    }
}

impl Writer {
    /// Dials `config.address` on a runtime of its own (one unpinned core by default).
    pub fn dial(config: WriterConfig) -> Result<Writer, DialError> {
        let runtime = Runtime::new(config.runtime.clone())?;
        Writer::dial_on(&runtime, config)
    }

    /// Dials on an existing runtime; the writer lives on core `runtime.core_for(address)`.
    pub fn dial_on(runtime: &Runtime, config: WriterConfig) -> Result<Writer, DialError> {
        let codec = Codec::new(config.framing, config.max_message_size)?;
        let addr =
            resolve(&config.address).ok_or_else(|| DialError::Resolve(config.address.clone()))?;
        let core = runtime.core(runtime.core_for(&addr)).clone();
        let sendq = SendQueue::new(
            core.clone(),
            config.send_queue_bytes,
            Box::new(codec),
            false,
        );
        let inner = WriterInner {
            addr,
            codec,
            sendq,
            core,
            connect_timeout: config.connect_timeout,
            handler: config.handler,
            policy: config.policy,
            current: Mutex::new(None),
            runtime: runtime.clone(),
        };
        let mut current = inner.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Some(inner.connect()?);
        drop(current);
        Ok(Writer {
            inner: Arc::new(inner),
        })
    }

    /// The address dialed.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The current connection's identity (it changes after a reconnect).
    pub fn conn_info(&self) -> Option<ConnInfo> {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runtime the writer runs on (for its per-core counters).
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The core that owns this writer.
    pub fn core(&self) -> usize {
        self.inner.core.index()
    }

    /// Frames `msg` and queues it; returns the number of bytes framed (header included).
    ///
    /// Waits while the send queue is full. If the connection had failed, reconnects first; if
    /// that fails, returns [`WriteError::Reconnect`] and `msg` is not queued (messages queued
    /// earlier stay queued for the next attempt).
    pub fn write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        let inner = &*self.inner;
        loop {
            match enqueue(&inner.codec, &inner.sendq, msg) {
                Ok(n) => return Ok(n),
                Err(Enqueue::Push(PushError::Down(_))) => {
                    inner.reconnect().map_err(WriteError::Reconnect)?
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Returns once everything accepted so far was handed to the kernel, reconnecting if the
    /// connection failed with messages still queued.
    ///
    /// "Handed to the kernel" is what delivery means here: TCP does not tell whether the peer
    /// application read it.
    pub fn flush(&self) -> Result<(), WriteError> {
        self.inner.flush(None).map(|_| ())
    }

    /// Sends what is queued (reconnecting once if needed, waiting at most the connect timeout
    /// plus `timeout`), closes the connection, and returns every message that was accepted but
    /// not handed to the kernel. Closes the writer for all its clones.
    pub fn close_timeout(&self, timeout: Duration) -> Result<(), Unsent> {
        self.inner.close(timeout)
    }

    /// [`close_timeout`](Writer::close_timeout) with a 5 second timeout.
    pub fn close(&self) -> Result<(), Unsent> {
        self.inner.close(Duration::from_secs(5))
    }
}

impl WriterInner {
    fn connect(&self) -> Result<ConnInfo, DialError> {
        let addr = self.addr;
        let stream = TcpStream::connect_timeout(&addr, self.connect_timeout).map_err(|source| {
            if source.kind() == std::io::ErrorKind::TimedOut {
                DialError::Timeout {
                    addr,
                    after: self.connect_timeout,
                }
            } else {
                DialError::Connect { addr, source }
            }
        })?;
        let local = stream
            .local_addr()
            .map_err(|source| DialError::Connect { addr, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| DialError::Connect { addr, source })?;
        let info = ConnInfo {
            id: next_conn_id(),
            peer: addr,
            local,
            core: self.core.index(),
        };
        let conn = Conn::new(info, self.codec, self.sendq.clone());
        let session = FramedSession::new(conn, self.handler.clone(), self.policy, None);
        self.sendq.relink();
        let sent = self.core.send(Command::AddConn {
            fd: OwnedFd::from(stream),
            info,
            sendq: self.sendq.clone(),
            session: Box::new(session),
        });
        if !sent {
            return Err(DialError::RuntimeClosed);
        }
        tracing::debug!(conn = info.id, %addr, "writer connected");
        Ok(info)
    }

    /// Reconnects if the link is down (one thread dials; the others wait for it).
    fn reconnect(&self) -> Result<(), DialError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Link::Down(err) = self.sendq.link() {
            tracing::info!(addr = %self.addr, error = %err, "writer reconnecting");
            *current = Some(self.connect()?);
        }
        Ok(())
    }

    /// Waits until drained (or `deadline`); returns whether drained.
    fn flush(&self, deadline: Option<Instant>) -> Result<bool, WriteError> {
        if self.core.is_current() {
            return Err(WriteError::WouldDeadlock);
        }
        loop {
            match self.sendq.wait_drained(deadline) {
                Ok(drained) => return Ok(drained),
                Err(Link::Down(_)) => self.reconnect().map_err(WriteError::Reconnect)?,
                Err(Link::Closed) => return Err(WriteError::Closed),
                Err(Link::Up | Link::Reconnecting(_)) => {}
            }
        }
    }

    fn close(&self, timeout: Duration) -> Result<(), Unsent> {
        let on_core = self.core.is_current();
        let mut reason = CloseReason::Local;
        if !on_core {
            let deadline = Instant::now() + timeout;
            match self.flush(Some(deadline)) {
                Ok(true) | Err(WriteError::Closed) => {}
                Ok(false) => {
                    reason = CloseReason::Error(Arc::new(crate::error::ConnError::Io(
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "close timed out"),
                    )))
                }
                Err(WriteError::Reconnect(err)) => {
                    reason = CloseReason::Error(Arc::new(crate::error::ConnError::Io(
                        std::io::Error::other(err.to_string()),
                    )))
                }
                Err(_) => {}
            }
        }
        // Whatever is still queued now could not be sent in time: cut the connection (the
        // kernel gives back the buffer in flight) and collect the rest.
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let sent = self.core.send(Command::CloseConn {
            sendq: self.sendq.clone(),
            force: true,
            ack: Some(ack),
        });
        if sent && !on_core {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
        let unsent = split_frames(&self.codec, self.sendq.close());
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(Unsent { unsent, reason })
        }
    }
}

impl Drop for WriterInner {
    fn drop(&mut self) {
        if matches!(self.sendq.link(), Link::Closed) {
            return;
        }
        // Last handle gone without close(): send what is queued, then close, without blocking
        // here. What still cannot be sent is logged by the runtime's shutdown.
        self.core.send(Command::CloseConn {
            sendq: self.sendq.clone(),
            force: false,
            ack: None,
        });
    }
}
