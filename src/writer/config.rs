//! A writer's configuration: [`WriterConfig`] (where to dial, connect timeout, reconnect
//! policy, reply handler, where failed messages go), holding the [`StreamOptions`] it shares
//! with a listener's configuration and their setters; and [`RetryPolicy`].

use std::sync::Arc;
use std::time::Duration;

use crate::engine::RuntimeConfig;
use crate::error::{Failed, HandlerError};
use crate::options::{forward_stream_options, StreamOptions, DEFAULT_SEND_QUEUE_BYTES};
use crate::stream::conn::Conn;
use crate::stream::handler::MessageHandler;

/// How a writer reconnects after its connection fails: exponential back-off with jitter, and
/// when to give up.
///
/// While it retries, writes are still accepted and wait in the bounded queue. When it gives up,
/// every queued message goes to [`WriterConfig::on_failed`] and the link is down: the next
/// `write` tries one reconnect itself and fails with [`WriteError::Reconnect`] if that fails.
///
/// ```
/// use std::time::Duration;
/// use buffstreams::RetryPolicy;
/// let policy = RetryPolicy { max_attempts: Some(3), ..RetryPolicy::default() };
/// assert!(policy.delay(1, 0.0) >= Duration::from_millis(10));
/// assert!(policy.delay(30, 1.0) <= policy.max_backoff);
/// ```
///
/// [`WriteError::Reconnect`]: crate::WriteError::Reconnect
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Reconnect attempts per outage before giving up; `None` retries forever, `Some(0)` never
    /// reconnects in the background (the next `write` reconnects, as in Go BuffStreams).
    pub max_attempts: Option<u32>,
    /// Delay before the second attempt (the first is immediate).
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Each delay is the previous one times this.
    pub multiplier: f64,
    /// Random spread: each delay is scaled by a factor drawn from `[1 - jitter, 1]`, so that many
    /// writers to one address do not retry in lockstep (0 = no jitter, 1 = "full jitter").
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 8 attempts, 20 ms doubling up to 2 s, half jitter: the 7 delays between attempts are
    /// 20, 40, … 1280 ms, each scaled by a random factor in `[0.5, 1]`, so the policy gives up
    /// after 1.27–2.54 s of waiting plus the time the attempts themselves take (about 1.9 s
    /// measured against a closed local port).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: Some(8),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// No background reconnects: the next write reconnects (Go BuffStreams' behaviour).
    ///
    /// ```
    /// use buffstreams::{RetryPolicy, WriterConfig};
    /// let cfg = WriterConfig::new("127.0.0.1:5031").retry(RetryPolicy::never());
    /// ```
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: Some(0),
            ..RetryPolicy::default()
        }
    }

    /// Retry forever (with back-off).
    ///
    /// ```
    /// use buffstreams::RetryPolicy;
    /// assert_eq!(RetryPolicy::forever().max_attempts, None);
    /// ```
    pub fn forever() -> Self {
        RetryPolicy {
            max_attempts: None,
            ..RetryPolicy::default()
        }
    }

    /// The delay after failed attempt number `attempt` (1-based), with `unit` in `[0, 1)`
    /// choosing where in the jitter range it falls.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.initial_backoff.as_secs_f64()
            * self
                .multiplier
                .max(1.0)
                .powi(attempt.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * unit.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * factor).max(0.0))
    }

    /// Whether another attempt is allowed after `attempts` failed ones.
    pub(crate) fn allows(&self, attempts: u32) -> bool {
        self.max_attempts.map_or(true, |max| attempts < max)
    }
}

/// Called with messages that were accepted but could not be handed to the kernel.
pub(crate) type FailedHandler = Arc<dyn Fn(Failed) + Send + Sync>;

/// How to dial and run a writer.
///
/// ```no_run
/// use std::time::Duration;
/// use buffstreams::{Writer, WriterConfig};
/// let writer = Writer::dial(
///     WriterConfig::new("127.0.0.1:5031").connect_timeout(Duration::from_secs(1)),
/// )?;
/// writer.write(b"hello")?;
/// writer.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WriterConfig {
    pub(crate) address: String,
    /// The settings shared with [`ListenerConfig`](crate::ListenerConfig), and their setters.
    pub(crate) options: StreamOptions,
    pub(crate) connect_timeout: Duration,
    /// `None`: the default policy ([`DEFAULT_NOTSENT_LOWAT`] below [`LOWAT_MAX_MSS`]).
    pub(crate) notsent_lowat: Option<Option<u32>>,
    pub(crate) handler: Option<MessageHandler>,
    pub(crate) retry: RetryPolicy,
    pub(crate) background_connect: bool,
    pub(crate) on_failed: Option<FailedHandler>,
    /// Acknowledged mode (setters in `writer/acked.rs`).
    pub(crate) acked: bool,
    pub(crate) max_unacked_bytes: Option<usize>,
    /// TLS (setters in `writer/tls.rs`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::WriterTls>,
}

forward_stream_options!(WriterConfig);

/// A writer's default [`WriterConfig::notsent_lowat`] on a real network's MTU: 128 KiB.
pub const DEFAULT_NOTSENT_LOWAT: u32 = 128 << 10;

/// The TCP segment size from which a writer, unless told otherwise
/// ([`WriterConfig::notsent_lowat`]), sets no `TCP_NOTSENT_LOWAT`: 16 KiB.
pub const LOWAT_MAX_MSS: u32 = 16 << 10;

impl WriterConfig {
    /// Dial `address`. Defaults: u32 big-endian length prefix, 8 MiB maximum, 5 s connect
    /// timeout, 1 MiB send queue.
    ///
    /// ```
    /// use buffstreams::{Framing, WriterConfig};
    /// let cfg = WriterConfig::new("127.0.0.1:5031").framing(Framing::Varint);
    /// ```
    pub fn new(address: impl Into<String>) -> WriterConfig {
        WriterConfig {
            address: address.into(),
            options: StreamOptions::default(),
            connect_timeout: Duration::from_secs(5),
            notsent_lowat: None,
            handler: None,
            retry: RetryPolicy::default(),
            background_connect: false,
            on_failed: None,
            acked: false,
            max_unacked_bytes: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// How to reconnect after a failure (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Return from `dial` at once and connect in the background (following the retry policy),
    /// queueing writes meanwhile, instead of failing `dial` when the first attempt fails.
    pub fn background_connect(mut self, yes: bool) -> Self {
        self.background_connect = yes;
        self
    }

    /// Where messages that were accepted but never handed to the kernel go (the retry policy gave
    /// up, or the writer was dropped while its connection was down), with the reason. Without
    /// it they are counted in a `tracing` warning. `close()` returns its leftovers directly.
    pub fn on_failed<F>(mut self, handler: F) -> Self
    where
        F: Fn(Failed) + Send + Sync + 'static,
    {
        self.on_failed = Some(Arc::new(handler));
        self
    }

    /// How long a (re)connect may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most bytes the kernel holds unsent in the socket (`TCP_NOTSENT_LOWAT`) before a send
    /// waits; `None` leaves the kernel's default (no limit but the send buffer). A batch is then
    /// copied into the socket as the network takes it rather than ahead of it, so the memory it
    /// is copied into is still in cache, which on a real network's MTU makes a `BufferedWriter`
    /// markedly faster (measured: `docs/benchmarks.md`, "Send path"). It also makes the socket report
    /// itself writable only below the mark, to `poll` and to the core's sends alike.
    ///
    /// Unless this is called, a connection whose TCP segments are smaller than
    /// [`LOWAT_MAX_MSS`] (16 KiB: any network card's MTU, jumbo frames included) gets
    /// [`DEFAULT_NOTSENT_LOWAT`] (128 KiB), and one with larger segments (loopback, whose
    /// 64 KiB MTU gives segments of 32 KiB and up) gets none: there, the mark woke the sender
    /// every other segment, and cost 1 KiB messages a third of their rate.
    ///
    /// ```
    /// use buffstreams::WriterConfig;
    /// let cfg = WriterConfig::new("127.0.0.1:5031").notsent_lowat(Some(256 * 1024));
    /// ```
    pub fn notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.notsent_lowat = Some(bytes);
        self
    }

    /// Handle messages the peer sends back (replies), on the owning core.
    pub fn on_message<F>(mut self, handler: F) -> Self
    where
        F: Fn(&[u8], &Conn) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The runtime configuration in effect, for a writer that starts its own runtime.
    pub(crate) fn runtime_config(&self) -> RuntimeConfig {
        self.options.runtime.clone().unwrap_or(RuntimeConfig {
            cores: 1,
            pin: false,
            recv_buffers: 16,
            ..RuntimeConfig::default()
        })
    }

    /// The send queue bound in effect.
    pub(crate) fn send_queue_bytes_in_effect(&self) -> usize {
        self.options
            .send_queue_bytes
            .unwrap_or(DEFAULT_SEND_QUEUE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default policy's documented give-up time: 7 delays of 20…1280 ms, half jitter.
    #[test]
    fn default_policy_waits_1_27_to_2_54_seconds_in_all() {
        let policy = RetryPolicy::default();
        let total = |unit: f64| -> Duration {
            (1..)
                .take_while(|&failed| policy.allows(failed))
                .map(|failed| policy.delay(failed, unit))
                .sum()
        };
        assert_eq!(total(0.0), Duration::from_millis(2540));
        assert_eq!(total(1.0), Duration::from_millis(1270));
        assert!(!policy.allows(8));
    }
}
