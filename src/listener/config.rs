//! A listener's configuration: [`ListenerConfig`], a builder with sensible defaults (where
//! messages go, connection close hook, limits for untrusted peers), holding the
//! [`StreamOptions`] it shares with a writer's configuration and their setters.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::acked::TableConfig;
use crate::channel::{self, ChannelLink, MessageReceiver};
use crate::engine::handle::ConnInfo;
use crate::engine::RuntimeConfig;
use crate::error::{CloseReason, HandlerError};
use crate::frame::{AssemblyBudget, BudgetPolicy};
use crate::options::{forward_stream_options, StreamOptions, DEFAULT_CONN_SEND_QUEUE_BYTES};
use crate::stream::conn::Conn;
use crate::stream::delivery::Delivery;
use crate::stream::session::{CloseHook, SessionLimits};
use crate::stream::watchdog::Timeouts;

/// The default [`ListenerConfig::partial_frame_budget`]: 64 MiB per listener.
pub const DEFAULT_PARTIAL_FRAME_BUDGET: usize = 64 << 20;

/// The default [`ListenerConfig::frame_timeout`]: 30 s.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run a listener.
///
/// Messages go either to a handler called on the core that owns the connection
/// ([`ListenerConfig::new`]), or to a bounded channel that any thread or async task consumes
/// ([`ListenerConfig::with_channel`]).
///
/// ```no_run
/// use buffstreams::{Framing, Listener, ListenerConfig};
/// let cfg = ListenerConfig::new("127.0.0.1:5031", |msg, conn| {
///     conn.write(msg)?; // echo
///     Ok(())
/// })
/// .framing(Framing::Varint)
/// .max_message_size(64 * 1024);
/// let listener = Listener::bind(cfg)?;
/// listener.wait(); // blocks until another thread calls `close` on a clone
/// # Ok::<(), buffstreams::ListenError>(())
/// ```
#[derive(Clone)]
pub struct ListenerConfig {
    pub(crate) address: String,
    /// The settings shared with [`WriterConfig`](crate::WriterConfig), and their setters.
    pub(crate) options: StreamOptions,
    pub(crate) delivery: Delivery<ChannelLink>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) backlog: i32,
    pub(crate) unix_mode: Option<u32>,
    pub(crate) partial_frame_budget: usize,
    pub(crate) budget_policy: BudgetPolicy,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_connections: Option<usize>,
    /// Acknowledged mode (setters in `listener/acked.rs`).
    pub(crate) acked: Option<AckedListener>,
    /// TLS (setters in `listener/tls.rs`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::ListenerTls>,
}

forward_stream_options!(ListenerConfig);

/// A listener's acknowledged-mode settings (set in `listener/acked.rs`).
#[derive(Clone)]
pub(crate) struct AckedListener {
    pub(crate) table: TableConfig,
}

impl ListenerConfig {
    /// Listen on `address` (`"127.0.0.1:0"` picks a free port; `"unix:/run/app.sock"` or
    /// `"unix:@name"` is a Unix domain socket, see [`Endpoint`](crate::Endpoint)) and call
    /// `handler` with every message. Defaults: u32 big-endian length prefix, 8 MiB maximum, one
    /// core per CPU.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// let listener = Listener::bind(ListenerConfig::new("127.0.0.1:5031", |msg, _conn| {
    ///     println!("{} bytes", msg.len());
    ///     Ok(())
    /// }))?;
    /// # Ok::<(), buffstreams::ListenError>(())
    /// ```
    pub fn new<F>(address: impl Into<String>, handler: F) -> ListenerConfig
    where
        F: Fn(&[u8], &Conn) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        ListenerConfig::with_delivery(address.into(), Delivery::Handler(Arc::new(handler)))
    }

    /// Listen on `address` and hand every message to a bounded channel of `capacity` messages
    /// (at least 1), consumed through the returned [`MessageReceiver`] from any thread or async
    /// task. Each [`Message`](crate::Message) carries its payload as [`Bytes`] and the
    /// [`Conn`] it came from, to reply with [`Conn::write`].
    ///
    /// When the channel is full, the connection that filled it stops reading its socket until
    /// the consumer has taken the channel down to half its capacity: TCP flow control then slows
    /// the peer down, and nothing is buffered without bound (the channel holds at most
    /// `capacity` messages plus one per connection). The receiver ends once the listener is
    /// closed and every queued message was taken.
    ///
    /// [`on_handler_error`](ListenerConfig::on_handler_error) decides what happens to messages
    /// arriving after every receiver was dropped: discarded (logged once per connection), or
    /// their connection closed.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    ///
    /// let (config, messages) = ListenerConfig::with_channel("127.0.0.1:5031", 1024);
    /// let listener = Listener::bind(config.cores(2))?;
    /// std::thread::spawn(move || {
    ///     for msg in messages {
    ///         // any thread: reply on the connection the message came from
    ///         let _ = msg.conn.write(&msg.payload);
    ///     }
    /// });
    /// listener.wait();
    /// # Ok::<(), buffstreams::ListenError>(())
    /// ```
    pub fn with_channel(
        address: impl Into<String>,
        capacity: usize,
    ) -> (ListenerConfig, MessageReceiver) {
        let (link, receiver) = channel::open(capacity);
        let config = ListenerConfig::with_delivery(address.into(), Delivery::Channel(link));
        (config, receiver)
    }

    fn with_delivery(address: String, delivery: Delivery<ChannelLink>) -> ListenerConfig {
        ListenerConfig {
            address,
            options: StreamOptions::default(),
            delivery,
            on_close: None,
            backlog: 1024,
            unix_mode: None,
            partial_frame_budget: DEFAULT_PARTIAL_FRAME_BUDGET,
            budget_policy: BudgetPolicy::Wait,
            timeouts: Timeouts {
                idle: None,
                frame: Some(DEFAULT_FRAME_TIMEOUT),
            },
            max_connections: None,
            acked: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Number of cores (one listening socket and thread each); 0 means one per CPU. Used when
    /// the listener starts its own runtime ([`Listener::bind`](crate::Listener::bind)).
    pub fn cores(mut self, cores: usize) -> Self {
        self.options
            .runtime
            .get_or_insert_with(RuntimeConfig::default)
            .cores = cores;
        self
    }

    /// The runtime configuration in effect, for a listener that starts its own runtime.
    pub(crate) fn runtime_config(&self) -> RuntimeConfig {
        self.options.runtime.clone().unwrap_or_default()
    }

    /// The per-connection send queue bound in effect.
    pub(crate) fn conn_send_queue_bytes(&self) -> usize {
        self.options
            .send_queue_bytes
            .unwrap_or(DEFAULT_CONN_SEND_QUEUE_BYTES)
    }

    /// Called on the owning core when a connection ends, with why and the messages written to
    /// it that never reached the kernel. Without it, errors and unsent counts are logged.
    ///
    /// Every accepted connection gets exactly one call, on both backends, including one reset
    /// before it was accepted (on io_uring its `peer` is then `0.0.0.0:0`: the address is gone).
    /// Connections refused by [`max_connections`](Self::max_connections) get none.
    pub fn on_close<F>(mut self, hook: F) -> Self
    where
        F: Fn(&ConnInfo, &CloseReason, Vec<Bytes>) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(hook));
        self
    }

    /// The `listen(2)` backlog of each core's socket (default 1024).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The permissions of a Unix domain socket file (e.g. `0o660`: owner and group may
    /// connect), set before the socket listens. Without it the file gets the process's umask
    /// applied to `0o777`. Ignored on TCP and for abstract names, which have no file.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// let cfg = ListenerConfig::new("unix:/run/app/app.sock", |_msg, conn| {
    ///     // only processes of this user get here (file mode), and the handler can check more
    ///     println!("from uid {:?}", conn.info().peer_cred.map(|c| c.uid));
    ///     Ok(())
    /// })
    /// .unix_mode(0o600);
    /// let listener = Listener::bind(cfg)?;
    /// # Ok::<(), buffstreams::ListenError>(())
    /// ```
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = Some(mode);
        self
    }

    /// The memory all of this listener's connections together may hold in partly received
    /// frames (default [`DEFAULT_PARTIAL_FRAME_BUDGET`], 64 MiB; raised to the maximum message
    /// size if smaller, so that every frame can be received).
    ///
    /// A frame that arrives whole in one receive buffer is delivered from it and costs nothing.
    /// A frame split across receives is assembled, and its announced length is reserved from
    /// this budget first (memory itself grows only with the bytes that arrive). When the budget
    /// cannot cover it, that connection stops reading (TCP then slows its peer down) until
    /// frames in progress on other connections complete or their connections close; frames
    /// already admitted always complete. A frame assembled in more than 128 KiB has a memory
    /// mapping of its own, unmapped when it is delivered or its connection closes.
    ///
    /// A stopped connection (waiting for the budget, or for room in its channel) keeps what the
    /// kernel had already handed it ([`Listener::held_bytes`](crate::Listener::held_bytes)).
    /// Every receive is limited by the connection's receive credit: 4 KiB for a new or
    /// just-stopped connection, doubling each time a receive uses all of it, with no limit of
    /// its own past 256 KiB; and while frames reserved and bytes held together reach half the
    /// budget, no more than the frame the connection is assembling (already paid for) or 4 KiB,
    /// receives armed earlier included (they are cancelled and re-armed when the pressure
    /// starts). So under pressure each stopped connection holds a few KiB, however many there
    /// are and however they behaved before. On io_uring the limit is the
    /// multishot receive's byte limit (Linux 6.17+; an older kernel refuses it, and its cores
    /// then receive without one, logging it once: a stop may then hold up to the core's receive
    /// ring, `recv_buffers × recv_buffer_size`). Held bytes add to the budget's pressure but do
    /// not hold up frames: a connection waiting to be admitted would otherwise wait for its own
    /// bytes.
    ///
    /// The [`frame_timeout`](ListenerConfig::frame_timeout) bounds how long a peer can hold
    /// budget without finishing its frame.
    pub fn partial_frame_budget(mut self, bytes: usize) -> Self {
        self.partial_frame_budget = bytes;
        self
    }

    /// What happens when the [`partial_frame_budget`](Self::partial_frame_budget) cannot cover
    /// a frame: the connection waits ([`BudgetPolicy::Wait`], the default), or, with
    /// [`BudgetPolicy::CloseLargest`], it also makes the connection holding the most close
    /// (with [`ConnError::OverBudget`](crate::ConnError::OverBudget), within about 50 ms),
    /// which frees its memory. `CloseLargest` favours new frames over old ones: use it when
    /// peers holding big half-sent frames are more likely hostile than slow.
    pub fn partial_frame_budget_policy(mut self, policy: BudgetPolicy) -> Self {
        self.budget_policy = policy;
        self
    }

    /// Close connections that receive nothing for `timeout` with
    /// [`CloseReason::IdleTimeout`] (counted in [`ListenerStats::idle_timeouts`]).
    ///
    /// Default: none. Long-lived connections that stay quiet between bursts are normal for
    /// message streams (and Go BuffStreams had no such limit), so turning it on is the
    /// application's call. Time spent with reading stopped by this side (a full channel, a
    /// short budget) does not count. Checked every 50 ms.
    ///
    /// [`ListenerStats::idle_timeouts`]: crate::ListenerStats::idle_timeouts
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeouts.idle = timeout.into();
        self
    }

    /// Close connections that start a frame and do not finish it within `timeout` with
    /// [`CloseReason::FrameTimeout`] (counted in [`ListenerStats::frame_timeouts`]); `None` turns it
    /// off.
    ///
    /// Default: [`DEFAULT_FRAME_TIMEOUT`] (30 s). On by default because a peer that trickles a
    /// frame holds memory of the listener's [`partial_frame_budget`](Self::partial_frame_budget)
    /// that others are waiting for; 30 s lets an 8 MiB frame through a link of about 300 KB/s.
    /// Time spent with reading stopped by this side does not count. Checked every 50 ms.
    ///
    /// [`ListenerStats::frame_timeouts`]: crate::ListenerStats::frame_timeouts
    pub fn frame_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeouts.frame = timeout.into();
        self
    }

    /// At most `max` connections open at once on this listener, across all its cores.
    /// Connections over it are accepted and closed at once (the peer sees its connection
    /// closed), counted in [`ListenerStats::refused`], with at most one `tracing` warning per
    /// second. Existing connections are unaffected.
    ///
    /// Default: no cap (the process's descriptor limit, `RLIMIT_NOFILE`, is the bound then).
    ///
    /// [`ListenerStats::refused`]: crate::ListenerStats::refused
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// The per-connection limits this configuration asks for, for messages of up to `max`.
    pub(crate) fn session_limits(&self, max: usize) -> SessionLimits {
        SessionLimits {
            budget: Some(Arc::new(AssemblyBudget::with_policy(
                self.partial_frame_budget.max(max),
                self.budget_policy,
            ))),
            timeouts: self.timeouts,
        }
    }
}
