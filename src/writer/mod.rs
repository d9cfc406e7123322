//! A writer: dials an address and writes framed messages through the core that owns it.

mod buffered;
mod config;
mod encode;
mod future;
mod link;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU8};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use buffered::{
    BufferedWriter, BUFFERED_WRITERS_PER_CORE, BUFFERED_WRITER_BYTES, BUFFERED_WRITER_MIN_BYTES,
};
pub use config::{RetryPolicy, WriterConfig, DEFAULT_NOTSENT_LOWAT, LOWAT_MAX_MSS};
pub use future::WriteFuture;

use crate::conn::split_frames;
use crate::engine::handle::{AfterFailure, ConnHandle, CoreHandle};
use crate::engine::send::PushError;
use crate::engine::session::ConnInfo;
use crate::engine::Runtime;
use crate::error::{
    CloseReason, ConnError, DialError, FailReason, Failed, TryWriteError, Unsent, WriteError,
};
use crate::frame::Codec;
use crate::handler::{HandlerErrorPolicy, MessageHandler};
use crate::listener::resolve;
use config::FailedHandler;
use link::Link;

/// A connection to one address that frames and queues messages. Cheap to clone and safe to use
/// from many threads at once: each message is framed whole into the send memory, so frames
/// never interleave, and messages from one thread keep their order.
///
/// `write` returns once the message is queued (it waits while the queue is full; `try_write`
/// never waits, `write_async` waits without blocking a thread). The owning core sends queued
/// frames, many per syscall. If the connection fails, frames the kernel did not take stay queued
/// and the [`RetryPolicy`] reconnects in the background while writes keep queueing; if it gives
/// up, the queued messages go to [`WriterConfig::on_failed`]. `close` hands back whatever could
/// not be sent.
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

/// [`WriterInner::outage`]: connected, or nothing logged yet.
const OUTAGE_NONE: u8 = 0;
/// The outage's start was logged.
const OUTAGE_LOGGED: u8 = 1;
/// The policy's giving up was logged (writes keep retrying, quietly).
const OUTAGE_GAVE_UP: u8 = 2;

struct WriterInner {
    addr: SocketAddr,
    codec: Codec,
    sendq: ConnHandle,
    core: CoreHandle,
    connect_timeout: Duration,
    handler: Option<MessageHandler>,
    policy: HandlerErrorPolicy,
    retry: RetryPolicy,
    on_failed: Option<FailedHandler>,
    /// The live connection; also serialises (re)connect attempts.
    current: Mutex<Option<ConnInfo>>,
    /// Failed attempts in the current outage.
    attempts: AtomicU32,
    /// `TCP_NOTSENT_LOWAT` for each connection (`None`: by the segment size).
    notsent_lowat: Option<Option<u32>>,
    /// What was logged of the current outage: one event when it starts, one when it ends or
    /// the policy gives up, never one per write.
    outage: AtomicU8,
    me: Weak<WriterInner>,
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
    ///
    /// ```no_run
    /// use buffstreams::{Writer, WriterConfig};
    /// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// writer.write(b"hello")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial(config: WriterConfig) -> Result<Writer, DialError> {
        let runtime = Runtime::new(config.runtime_config())?;
        Writer::dial_on(&runtime, config)
    }

    /// Dials on an existing runtime; the writer lives on core `runtime.core_for(address)`, so
    /// every writer to one address shares that core's ordering.
    ///
    /// Fails if the first connection attempt fails, unless
    /// [`background_connect`](WriterConfig::background_connect) is set.
    ///
    /// ```no_run
    /// use buffstreams::{Runtime, RuntimeConfig, Writer, WriterConfig};
    /// let runtime = Runtime::new(RuntimeConfig::with_cores(1))?;
    /// let a = Writer::dial_on(&runtime, WriterConfig::new("127.0.0.1:5031"))?;
    /// let b = Writer::dial_on(&runtime, WriterConfig::new("127.0.0.1:5032"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial_on(runtime: &Runtime, config: WriterConfig) -> Result<Writer, DialError> {
        let codec = Codec::new(config.options.framing, config.options.max_len())?;
        let addr =
            resolve(&config.address).ok_or_else(|| DialError::Resolve(config.address.clone()))?;
        let core = runtime.core(runtime.core_for(&addr)).clone();
        let auto = config.retry.max_attempts != Some(0) || config.background_connect;
        let after_failure = match auto {
            true => AfterFailure::Hold,
            false => AfterFailure::Refuse,
        };
        let sendq = ConnHandle::new(
            &core,
            config.send_queue_bytes_in_effect(),
            Box::new(codec),
            after_failure,
        );
        let inner = Arc::new_cyclic(|me| WriterInner {
            addr,
            codec,
            sendq,
            core,
            connect_timeout: config.connect_timeout,
            handler: config.handler,
            policy: config.options.policy,
            retry: config.retry,
            on_failed: config.on_failed,
            current: Mutex::new(None),
            attempts: AtomicU32::new(0),
            notsent_lowat: config.notsent_lowat,
            outage: AtomicU8::new(OUTAGE_NONE),
            me: me.clone(),
            runtime: runtime.clone(),
        });
        inner.install_down_hook();
        if config.background_connect {
            inner
                .sendq
                .hold_unconnected(Arc::new(ConnError::NotConnected));
            inner.schedule_redial(Duration::ZERO);
        } else {
            let info = inner.connect()?;
            *inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        }
        Ok(Writer { inner })
    }

    /// The address dialed.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The current connection's identity (it changes after a reconnect; `None` before the first
    /// background connect).
    pub fn conn_info(&self) -> Option<ConnInfo> {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the writer has a live connection now.
    pub fn is_connected(&self) -> bool {
        matches!(self.inner.link(), Link::Up)
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
    /// Waits while the send queue is full. While a reconnect is under way the message is queued
    /// and sent once connected. If the link is down (the retry policy gave up, or it is
    /// [`RetryPolicy::never`]), this reconnects first; if that fails it returns
    /// [`WriteError::Reconnect`] and `msg` is not queued.
    #[inline]
    pub fn write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        // Framed straight into the send memory: the header, then one copy of the payload.
        self.write_with(msg.len(), |payload| payload.copy_from_slice(msg))
    }

    /// Queues `msg` if there is room now; never waits or dials. A full queue (or any other
    /// refusal) returns the message in the error. A link that is down starts a background
    /// reconnect and the message is queued for it.
    pub fn try_write(&self, msg: impl Into<Bytes>) -> Result<usize, TryWriteError> {
        let message = msg.into();
        let inner = &*self.inner;
        let frame = match inner.codec.prepare(&message) {
            Ok(frame) => frame,
            Err(err) => {
                return Err(TryWriteError {
                    message,
                    reason: err.into(),
                })
            }
        };
        let mut restarted = false;
        let result = loop {
            match inner.sendq.push(&frame, Some(Instant::now())) {
                Ok(()) => break Ok(frame.len()),
                Err(PushError::Down(_)) if !restarted => {
                    restarted = true;
                    inner.restart_reconnecting();
                }
                Err(err) => break Err(push_error(err)),
            }
        };
        result.map_err(|reason| TryWriteError { message, reason })
    }

    /// Queues `msg`, waiting for room without blocking a thread: a plain `Future` that works on
    /// any executor (it is woken by the core when room frees up).
    ///
    /// ```no_run
    /// # async fn demo(writer: buffstreams::Writer) -> Result<(), buffstreams::WriteError> {
    /// writer.write_async(b"hello").await?;
    /// # Ok(()) }
    /// ```
    pub fn write_async<'a>(&'a self, msg: &'a [u8]) -> WriteFuture<'a> {
        WriteFuture::new(self, msg)
    }

    /// Returns once everything accepted so far was handed to the kernel (or failed: given to
    /// [`WriterConfig::on_failed`] after the retry policy gave up). Waits through a background
    /// reconnect; reconnects itself if the link is down with messages queued.
    ///
    /// "Handed to the kernel" is what delivery means here: TCP does not tell whether the peer
    /// application read it.
    pub fn flush(&self) -> Result<(), WriteError> {
        self.inner.flush(None).map(|_| ())
    }

    /// Sends what is queued (waiting at most `timeout`, through a reconnect if one is under
    /// way), closes the connection, and returns every message that was accepted but not handed
    /// to the kernel. Closes the writer for all its clones.
    ///
    /// When everything was handed to the kernel, this returns without waiting for the owning
    /// core: the core closes the socket on its next turn, and the peer gets every byte, then
    /// the end of the stream. Otherwise it waits (at most 5 s more) for the core to cut the
    /// connection, so that what the kernel had not taken comes back in `Unsent`.
    pub fn close_timeout(&self, timeout: Duration) -> Result<(), Unsent> {
        self.inner.close(timeout)
    }

    /// [`close_timeout`](Writer::close_timeout) with a 5 second timeout.
    pub fn close(&self) -> Result<(), Unsent> {
        self.inner.close(Duration::from_secs(5))
    }
}

fn push_error(err: PushError) -> WriteError {
    match err {
        PushError::Closed => WriteError::Closed,
        PushError::TimedOut => WriteError::Full,
        PushError::Down(err) => WriteError::Failed(err),
    }
}

impl WriterInner {
    /// Waits until drained (or `deadline`); returns whether drained.
    fn flush(&self, deadline: Option<Instant>) -> Result<bool, WriteError> {
        if self.core.is_current() {
            return Err(WriteError::WouldDeadlock);
        }
        loop {
            match self.sendq.wait_drained(deadline).map_err(Link::from) {
                Ok(drained) => return Ok(drained),
                Err(Link::Down(_)) => self.reconnect().map_err(WriteError::Reconnect)?,
                Err(Link::Closed) => return Err(WriteError::Closed),
                Err(Link::Up | Link::Reconnecting) => {}
            }
        }
    }

    fn close(&self, timeout: Duration) -> Result<(), Unsent> {
        let on_core = self.core.is_current();
        let mut reason = CloseReason::Local;
        let mut drained = false;
        if !on_core {
            let deadline = Instant::now() + timeout;
            match self.flush(Some(deadline)) {
                Ok(true) => drained = true,
                Err(WriteError::Closed) => {}
                Ok(false) => {
                    reason = CloseReason::Error(Arc::new(ConnError::CloseTimedOut(timeout)))
                }
                Err(WriteError::Failed(err)) => reason = CloseReason::Error(err),
                Err(WriteError::Reconnect(err)) => {
                    reason = CloseReason::Error(Arc::new(ConnError::Reconnect(Arc::new(err))))
                }
                // Nothing else comes out of a flush off the owning core.
                Err(_) => reason = CloseReason::Error(Arc::new(ConnError::NotConnected)),
            }
        }
        let mut rest = BytesMut::new();
        // Everything was handed to the kernel: close the queue first. If nothing of it is in
        // flight then, closing the connection cannot hand anything back, so this need not wait
        // for the core (a dial-write-close cycle is spared a round trip to the core's thread).
        let idle = drained && {
            let (queued, idle) = self.sendq.close_queue_idle();
            rest = queued;
            idle
        };
        // Otherwise whatever is still queued could not be sent in time: cut the connection (the
        // kernel gives back the buffer in flight) and collect the rest.
        if let Some(done) = self.sendq.close_conn(true, !on_core && !idle) {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
        if !idle {
            rest.extend_from_slice(&self.sendq.close_queue());
        }
        let unsent = split_frames(&self.codec, rest);
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(Unsent { unsent, reason })
        }
    }
}

/// Hands failed frames to the handler as messages (or logs how many there were).
fn report(
    handler: Option<&FailedHandler>,
    addr: SocketAddr,
    codec: &Codec,
    frames: BytesMut,
    reason: FailReason,
) {
    let messages = split_frames(codec, frames);
    if messages.is_empty() {
        return;
    }
    match handler {
        Some(handler) => handler(Failed {
            addr,
            messages,
            reason,
        }),
        None => tracing::warn!(
            %addr,
            count = messages.len(),
            %reason,
            "messages could not be sent (set WriterConfig::on_failed to receive them)"
        ),
    }
}

impl Drop for WriterInner {
    fn drop(&mut self) {
        match self.link() {
            Link::Closed => {}
            Link::Up => {
                // Last handle gone without close(): send what is queued, then close, without
                // blocking here. If that connection fails, the down hook reports the rest.
                self.sendq.close_conn(false, false);
            }
            Link::Reconnecting | Link::Down(_) => {
                let rest = self.sendq.refuse(Arc::new(ConnError::NotConnected));
                report(
                    self.on_failed.as_ref(),
                    self.addr,
                    &self.codec,
                    rest,
                    FailReason::Dropped,
                );
            }
        }
    }
}
