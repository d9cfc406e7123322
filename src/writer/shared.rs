//! What every clone of a [`Writer`](crate::Writer) shares: its address, send queue, core and
//! policies; where its link stands ([`Link`]); flushing and closing; and handing messages that
//! could not be sent to `on_failed`. The reconnects are in `link.rs`.

use std::sync::atomic::{AtomicU32, AtomicU8};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::endpoint::Endpoint;
use crate::engine::handle::{ConnInfo, CoreHandle, Gate, PushError};
use crate::engine::Runtime;
use crate::error::{CloseReason, ConnError, FailReason, Failed, Unsent, WriteError};
use crate::frame::Codec;
use crate::stream::frames::split_frames;
use crate::stream::handler::{HandlerErrorPolicy, MessageHandler};
use crate::stream::outbound::Outbound;
use crate::stream::retry::{retry, OnDown};
use crate::writer::config::{FailedHandler, RetryPolicy};

/// [`WriterShared::outage`]: connected, or nothing logged yet.
pub(crate) const OUTAGE_NONE: u8 = 0;
/// The outage's start was logged.
pub(crate) const OUTAGE_LOGGED: u8 = 1;
/// The policy's giving up was logged (writes keep retrying, quietly).
pub(crate) const OUTAGE_GAVE_UP: u8 = 2;

/// Where a writer's link stands.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Connected, or the first connect is under way: writes are queued and sent.
    Up,
    /// The connection failed and a reconnect is under way: writes are queued and wait.
    Reconnecting,
    /// The connection failed and nobody reconnects: a write reconnects first.
    Down(Arc<ConnError>),
    /// Closed for good: writes fail.
    Closed,
}

impl From<Gate> for Link {
    fn from(gate: Gate) -> Link {
        match gate {
            Gate::Open => Link::Up,
            Gate::Reconnecting => Link::Reconnecting,
            Gate::Refusing(err) => Link::Down(err),
            Gate::Closed => Link::Closed,
        }
    }
}

/// The state every clone of a writer shares.
pub(crate) struct WriterShared {
    pub(crate) addr: Endpoint,
    pub(crate) out: Outbound,
    pub(crate) core: CoreHandle,
    pub(crate) connect_timeout: Duration,
    pub(crate) handler: Option<MessageHandler>,
    pub(crate) policy: HandlerErrorPolicy,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_failed: Option<FailedHandler>,
    /// Acknowledged mode's session id (`None`: plain mode).
    pub(crate) acked: Option<crate::acked::SessionId>,
    /// Acknowledged mode: what the last connections say of the peer (a permanent failure).
    pub(crate) refusal: Arc<crate::acked::Refusal>,
    /// The live connection; also serialises (re)connect attempts.
    pub(crate) current: Mutex<Option<ConnInfo>>,
    /// Failed attempts in the current outage.
    pub(crate) attempts: AtomicU32,
    /// `TCP_NOTSENT_LOWAT` for each connection (`None`: by the segment size).
    pub(crate) notsent_lowat: Option<Option<u32>>,
    /// What was logged of the current outage: one event when it starts, one when it ends or
    /// the policy gives up, never one per write.
    pub(crate) outage: AtomicU8,
    pub(crate) me: Weak<WriterShared>,
    /// TLS for each connection (`writer/tls.rs`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::WriterTls>,
    // Declared last: dropped after the queue's close command was sent.
    pub(crate) runtime: Runtime,
}

impl WriterShared {
    /// Waits until drained (or `deadline`); returns whether drained.
    pub(crate) fn flush(&self, deadline: Option<Instant>) -> Result<bool, WriteError> {
        if self.core.is_current() {
            return Err(WriteError::WouldDeadlock);
        }
        retry(self, OnDown::Dial, || loop {
            match self.out.sendq.wait_drained(deadline).map_err(Link::from) {
                Ok(drained) => return Ok(drained),
                Err(Link::Down(err)) => return Err(PushError::Down(err)),
                Err(Link::Closed) => return Err(PushError::Closed),
                Err(Link::Up | Link::Reconnecting) => {}
            }
        })
    }

    /// Where the link stands now.
    pub(crate) fn link(&self) -> Link {
        self.out.sendq.gate().into()
    }

    pub(crate) fn close(&self, timeout: Duration) -> Result<(), Unsent> {
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
            let (queued, idle) = self.out.sendq.close_queue_idle();
            rest = queued;
            idle
        };
        // Otherwise whatever is still queued could not be sent in time: cut the connection (the
        // kernel gives back the buffer in flight) and collect the rest. A drained TLS
        // connection closes cleanly instead: its `close_notify` goes out last (waited for, so
        // that it is sent before this returns).
        let goodbye = drained && self.out.sendq.is_sealed();
        let wait = !on_core && (!idle || goodbye);
        if let Some(done) = self.out.sendq.close_conn(!goodbye, wait) {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
        if !idle {
            rest.extend_from_slice(&self.out.sendq.close_queue());
        }
        let unsent = self.out.split(rest);
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(Unsent { unsent, reason })
        }
    }
}

/// Hands failed frames to the handler as messages (or logs how many there were).
pub(crate) fn report(
    handler: Option<&FailedHandler>,
    addr: &Endpoint,
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
            addr: addr.clone(),
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

impl Drop for WriterShared {
    fn drop(&mut self) {
        match self.link() {
            Link::Closed => {}
            Link::Up => {
                // Last handle gone without close(): send what is queued, then close, without
                // blocking here. If that connection fails, the down hook reports the rest.
                self.out.sendq.close_conn(false, false);
            }
            Link::Reconnecting | Link::Down(_) => {
                let rest = self.out.sendq.refuse(Arc::new(ConnError::NotConnected));
                report(
                    self.on_failed.as_ref(),
                    &self.addr,
                    &self.out.codec,
                    rest,
                    FailReason::Dropped,
                );
            }
        }
    }
}
