//! Error types, one per API surface; all public at the crate root (this module is private).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::endpoint::Endpoint;

pub(crate) use crate::frame::FrameError;

/// A boxed error from user code (a message handler).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a runtime (its per-core threads and rings) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `io_uring_setup` returned `ENOSYS`.
    #[error(
        "io_uring is not supported by this kernel (io_uring_setup: ENOSYS); \
         run Linux >= 6.0 built with CONFIG_IO_URING"
    )]
    IoUringUnsupported,
    /// The `kernel.io_uring_disabled` sysctl forbids io_uring for this process.
    #[error(
        "io_uring is disabled by sysctl kernel.io_uring_disabled={value}; set it to 0 \
         (or to 1 and add this process's group to kernel.io_uring_group)"
    )]
    IoUringDisabled {
        /// The sysctl's value (1: only for `kernel.io_uring_group`, 2: for everyone).
        value: u32,
    },
    /// `io_uring_setup` was refused with `EPERM`, typically by a seccomp filter.
    #[error(
        "io_uring is blocked (io_uring_setup: EPERM), typically by a seccomp profile such as \
         Docker's default; allow io_uring_setup, io_uring_enter and io_uring_register \
         (e.g. docker run --security-opt seccomp=<profile>)"
    )]
    IoUringBlocked,
    /// The kernel offers io_uring but lacks something the engine needs.
    #[error("the kernel lacks {feature} (needs Linux >= {needs}); upgrade the kernel")]
    MissingFeature {
        /// What is missing.
        feature: &'static str,
        /// The first kernel version that has it.
        needs: &'static str,
    },
    /// Ring or buffer set-up failed for another reason (for example `ENOMEM` when
    /// `RLIMIT_MEMLOCK` is too low on kernels before 5.12).
    #[error("io_uring set-up failed: {0} (on kernels before 5.12 raise RLIMIT_MEMLOCK)")]
    Setup(#[source] io::Error),
    /// A core thread could not be spawned.
    #[error("could not spawn core thread {core}: {source}")]
    Spawn {
        /// Index of the core.
        core: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work (the text says what to change).
    #[error("invalid runtime configuration: {0}")]
    Config(&'static str),
}

impl StartError {
    /// Whether this error means io_uring itself cannot be used here (so the epoll backend is
    /// the way to go), as opposed to a resource or configuration problem.
    pub fn io_uring_unavailable(&self) -> bool {
        matches!(
            self,
            StartError::IoUringUnsupported
                | StartError::IoUringDisabled { .. }
                | StartError::IoUringBlocked
                | StartError::MissingFeature { .. }
        )
    }
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The runtime could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The framing cannot represent the configured maximum message size.
    #[error("invalid framing: {0}")]
    Framing(#[from] FrameError),
    /// Acknowledged mode cannot run as configured (see [`AckError::Framing`](crate::AckError::Framing)).
    #[error("acknowledged delivery: {0}")]
    Acked(#[from] crate::acked::error::AckError),
    /// Creating, binding or listening on a socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: Endpoint,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The address string did not resolve to a socket address.
    #[error("cannot resolve listen address {0:?}")]
    Resolve(String),
    /// The runtime was shut down.
    #[error("the runtime is shut down")]
    RuntimeClosed,
    /// The listener's TLS handshake thread could not be started.
    #[cfg(feature = "tls")]
    #[error("cannot start the TLS handshake thread: {0}")]
    Thread(#[source] io::Error),
}

/// Why a writer could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The runtime could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The framing cannot represent the configured maximum message size.
    #[error("invalid framing: {0}")]
    Framing(#[from] FrameError),
    /// Acknowledged mode cannot run as configured (see [`AckError::Framing`](crate::AckError::Framing)).
    #[error("acknowledged delivery: {0}")]
    Acked(#[from] crate::acked::error::AckError),
    /// The address string did not resolve to a socket address.
    #[error("cannot resolve address {0:?}")]
    Resolve(String),
    /// The connection attempt failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: Endpoint,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The connection attempt did not finish within the connect timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout {
        /// The address dialed.
        addr: Endpoint,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The connection came back to itself: nothing listens on a local port, and the kernel
    /// picked that same port as the connection's source (TCP's simultaneous open), so the
    /// socket would write into its own receive queue. Dropped, like a refused connection.
    #[error("connecting to {addr} reached this socket itself (nothing listens there)")]
    SelfConnected {
        /// The address dialed.
        addr: Endpoint,
    },
    /// The runtime was shut down.
    #[error("the runtime is shut down")]
    RuntimeClosed,
    /// The TLS handshake failed (an untrusted, expired or wrong-name certificate, a refused
    /// client certificate, a timeout). [`TlsError::is_permanent`](crate::tls::TlsError::is_permanent)
    /// says whether the writer gives up at once.
    #[cfg(feature = "tls")]
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// The address dialed.
        addr: Endpoint,
        /// Why (boxed: rustls's errors are large, and every write result carries this type).
        #[source]
        source: Box<crate::tls::TlsError>,
    },
}

impl DialError {
    /// Whether redialing cannot help: the server's TLS certificate was refused, or it refused
    /// ours. A writer gives up at once on such an error instead of following its retry policy.
    pub fn is_permanent(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            DialError::Tls { source, .. } => source.is_permanent(),
            DialError::Acked(err) => err.is_permanent(),
            _ => false,
        }
    }
}

/// Why [`Writer::write_batch`](crate::Writer::write_batch) stopped: the first `queued`
/// messages of the batch were queued (they are sent, or handed back like any queued message);
/// the rest were not.
#[derive(Debug, thiserror::Error)]
#[error("{queued} messages of the batch were queued, then: {error}")]
pub struct BatchError {
    /// How many messages, from the start of the batch, were queued.
    pub queued: usize,
    /// Why the next one was not.
    #[source]
    pub error: WriteError,
}

/// Why a write was not accepted. A message for which `write` returned an error was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The message cannot be framed (too large, or contains the delimiter).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection (or writer) is closed.
    #[error("the connection is closed")]
    Closed,
    /// The send queue is full and the caller may not wait (a handler on the owning core).
    #[error("the send queue is full")]
    Full,
    /// `flush` or `close` was called from a handler on the core that owns the connection; that
    /// core cannot send while it waits.
    #[error("cannot wait for the owning core from a handler running on it")]
    WouldDeadlock,
    /// The connection failed and reconnecting failed too.
    #[error("reconnect failed: {0}")]
    Reconnect(#[source] DialError),
    /// The connection failed and this kind of connection is not reconnected (an accepted one).
    #[error("the connection failed: {0}")]
    Failed(#[source] Arc<ConnError>),
    /// The message's encoder did not write exactly the length it announced (a `prost` message
    /// whose `encoded_len` disagrees with its encoding); nothing was queued.
    #[error("the encoder announced {announced} bytes but wrote a different amount")]
    EncodedLength {
        /// The length announced.
        announced: usize,
    },
    /// [`Writer::flush_acked`](crate::Writer::flush_acked) on a writer without acknowledged
    /// delivery ([`WriterConfig::acked`](crate::WriterConfig::acked)).
    #[error("the writer does not run acknowledged delivery")]
    NotAcked,
}

/// Why a connection closed with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer sent a frame the codec rejects (oversized, malformed, truncated).
    #[error("bad frame from peer: {0}")]
    Frame(#[from] FrameError),
    /// The peer broke the acknowledged-delivery protocol (or is not speaking it).
    #[error("acknowledged delivery: {0}")]
    Acked(#[from] crate::acked::error::AckError),
    /// A socket operation failed (for example a reset by the peer).
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The message handler returned an error and the policy is to close.
    #[error("message handler failed: {0}")]
    Handler(#[source] BoxError),
    /// The message handler panicked; the connection is closed, the core keeps running.
    #[error("message handler panicked")]
    HandlerPanic,
    /// The kernel returned a receive buffer id or length the ring never handed out.
    #[error("io_uring returned an invalid receive buffer")]
    BadBuffer,
    /// The peer closed its side cleanly: later writes on the connection fail with this.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The writer has no connection now (it is connecting or reconnecting, or was dropped while
    /// it had none).
    #[error("not connected")]
    NotConnected,
    /// Reconnecting failed and the retry policy gave up.
    #[error("reconnecting failed: {0}")]
    Reconnect(#[source] Arc<DialError>),
    /// `close` could not send everything within its timeout; the rest was cut.
    #[error("close timed out after {0:?} before everything was sent")]
    CloseTimedOut(Duration),
    /// The listener's partial-frame budget ran short and this connection held the most of it
    /// (under [`BudgetPolicy::CloseLargest`](crate::BudgetPolicy::CloseLargest)).
    #[error("closed to free the listener's partial-frame budget: it held the most ({held} bytes)")]
    OverBudget {
        /// Bytes of the budget the connection held.
        held: usize,
    },
    /// TLS failed: a bad record, an alert from the peer, a truncation (see
    /// [`TlsError`](crate::tls::TlsError)).
    #[cfg(feature = "tls")]
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// How a connection ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side cleanly between frames.
    PeerClosed,
    /// Closed on this side (writer or listener closed, or the runtime shut down).
    Local,
    /// Closed because of an error.
    Error(Arc<ConnError>),
    /// No byte arrived for this long (the listener's
    /// [`idle_timeout`](crate::ListenerConfig::idle_timeout)).
    IdleTimeout(Duration),
    /// A frame was started and not finished within this long (the listener's
    /// [`frame_timeout`](crate::ListenerConfig::frame_timeout)).
    FrameTimeout(Duration),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::IdleTimeout(t) => write!(f, "nothing received for {t:?}"),
            CloseReason::FrameTimeout(t) => write!(f, "a frame was not finished within {t:?}"),
        }
    }
}

/// The error a handler returns; any error type converts into it with `?`.
///
/// ```
/// use buffstreams::HandlerError;
/// fn parse(msg: &[u8]) -> Result<(), HandlerError> {
///     let text = std::str::from_utf8(msg)?; // Utf8Error converts
///     if text.is_empty() {
///         return Err(HandlerError::msg("empty message"));
///     }
///     Ok(())
/// }
/// assert!(parse(b"hi").is_ok());
/// assert!(parse(&[0xff]).is_err());
/// ```
pub struct HandlerError(BoxError);

impl HandlerError {
    /// An error carrying just a message.
    pub fn msg(text: impl Into<String>) -> HandlerError {
        HandlerError(text.into().into())
    }

    /// The underlying error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(err: E) -> HandlerError {
        HandlerError(err.into())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Messages a writer accepted but could not hand to the kernel, given to
/// [`WriterConfig::on_failed`](crate::WriterConfig::on_failed).
#[derive(Debug)]
pub struct Failed {
    /// The writer's address.
    pub addr: Endpoint,
    /// The messages, payload only, in the order they were written.
    pub messages: Vec<Bytes>,
    /// Why they failed.
    pub reason: FailReason,
}

/// Why messages failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FailReason {
    /// The retry policy gave up reconnecting.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        error: Arc<DialError>,
    },
    /// The writer was dropped (not closed) while its connection was down.
    Dropped,
    /// The writer or its manager was closed and the deadline passed first.
    Closed,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::GaveUp { attempts, error } => {
                write!(f, "gave up reconnecting after {attempts} attempts: {error}")
            }
            FailReason::Dropped => f.write_str("the writer was dropped while disconnected"),
            FailReason::Closed => f.write_str("closed before they could be sent"),
        }
    }
}

/// A `try_write` that was refused; the message comes back.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct TryWriteError {
    /// The message, as given.
    pub message: Bytes,
    /// Why: [`WriteError::Full`] when the queue is full, or any other write error.
    #[source]
    pub reason: WriteError,
}

/// Closing a writer left messages that were accepted but never handed to the kernel.
#[derive(Debug, thiserror::Error)]
#[error("{} accepted message(s) were not sent: {reason}", unsent.len())]
pub struct Unsent {
    /// The messages, payload only, in the order they were written.
    pub unsent: Vec<Bytes>,
    /// Why they were not sent.
    pub reason: CloseReason,
}
