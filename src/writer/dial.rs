//! [`Writer`]: dial an address, write framed messages through the core that owns the
//! connection, flush, close.

use crate::endpoint::Endpoint;
use std::sync::atomic::{AtomicU32, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::engine::handle::{AfterFailure, ConnInfo, SendQueueHandle};
use crate::engine::Runtime;
use crate::error::{ConnError, DialError, TryWriteError, Unsent, WriteError};
use crate::frame::Codec;
use crate::stream::outbound::Outbound;
use crate::stream::retry::{retry, OnDown};
use crate::writer::config::WriterConfig;
use crate::writer::shared::{Link, WriterShared, OUTAGE_NONE};

/// A connection to one address that frames and queues messages. Cheap to clone and safe to use
/// from many threads at once: each message is framed whole into the send memory, so frames
/// never interleave, and messages from one thread keep their order.
///
/// `write` returns once the message is queued (it waits while the queue is full; `try_write`
/// never waits, `write_async` waits without blocking a thread). The owning core sends queued
/// frames, many per syscall. If the connection fails, frames the kernel did not take stay queued
/// and the [`RetryPolicy`](crate::RetryPolicy) reconnects in the background while writes keep queueing; if it gives
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
    pub(crate) inner: Arc<WriterShared>,
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
        let addr = Endpoint::parse(&config.address)
            .ok_or_else(|| DialError::Resolve(config.address.clone()))?;
        let core = runtime.core(runtime.core_for(&addr)).clone();
        let auto = config.retry.max_attempts != Some(0) || config.background_connect;
        let after_failure = match auto {
            true => AfterFailure::Reconnect,
            false => AfterFailure::Refuse,
        };
        #[cfg(feature = "tls")]
        let new = match config.tls {
            Some(_) => SendQueueHandle::sealed,
            None => SendQueueHandle::new,
        };
        #[cfg(not(feature = "tls"))]
        let new = SendQueueHandle::new;
        let acked = match config.acked {
            true => {
                crate::acked::check_framing(config.options.framing)?;
                Some(crate::acked::new_session_id())
            }
            false => None,
        };
        let limit = match acked {
            Some(_) => config.unacked_bytes_in_effect(),
            None => config.send_queue_bytes_in_effect(),
        };
        let sendq = new(&core, limit, Box::new(codec), after_failure);
        if acked.is_some() {
            sendq.make_acked();
        }
        let inner = Arc::new_cyclic(|me| WriterShared {
            addr,
            out: Outbound {
                codec,
                sendq,
                tagged: None,
            },
            core,
            connect_timeout: config.connect_timeout,
            handler: config.handler,
            policy: config.options.policy,
            retry: config.retry,
            on_failed: config.on_failed,
            acked,
            refusal: Arc::default(),
            current: Mutex::new(None),
            attempts: AtomicU32::new(0),
            notsent_lowat: config.notsent_lowat,
            outage: AtomicU8::new(OUTAGE_NONE),
            me: me.clone(),
            runtime: runtime.clone(),
            #[cfg(feature = "tls")]
            tls: config.tls,
        });
        inner.install_down_hook();
        if config.background_connect {
            inner
                .out
                .sendq
                .start_reconnecting(Arc::new(ConnError::NotConnected));
            inner.schedule_redial(Duration::ZERO);
        } else {
            let info = inner.connect()?;
            *inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        }
        Ok(Writer { inner })
    }

    /// The address dialed (a TCP address or a Unix domain socket).
    pub fn peer_addr(&self) -> Endpoint {
        self.inner.addr.clone()
    }

    /// The current connection's identity (it changes after a reconnect; `None` before the first
    /// background connect).
    pub fn conn_info(&self) -> Option<ConnInfo> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
    /// [`RetryPolicy::never`](crate::RetryPolicy::never)), this reconnects first; if that fails it returns
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
        let result = match inner.out.codec.prepare(&message) {
            Ok(frame) => retry(inner, OnDown::Background, || inner.out.try_push(&frame))
                .map(|()| frame.len()),
            Err(err) => Err(err.into()),
        };
        result.map_err(|reason| TryWriteError { message, reason })
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
