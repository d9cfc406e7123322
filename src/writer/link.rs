//! A writer's link to its address: up, reconnecting, down or closed (what its queue's gate
//! means for a writer), and the reconnects: the hook the core calls when the connection fails,
//! the background redials paced by the [`RetryPolicy`](crate::RetryPolicy), the dial itself,
//! giving up (the queued messages go to `on_failed`), and logging each outage once.
//!
//! What a failed connection had not finished sending stays queued, cut at a frame boundary by
//! the engine (the writer's codec tells it where frames start), and goes first on the next
//! connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::acked::{AckError, AckedWriterSession};
use crate::engine::handle::{next_conn_id, ConnInfo, Next, Redial, Session};
use crate::error::{ConnError, DialError, FailReason};
use crate::stream::conn::Conn;
use crate::stream::delivery::Delivery;
use crate::stream::retry::Reconnect;
use crate::stream::session::{FramedSession, SessionLimits};
use crate::writer::connect::open;
use crate::writer::say_hello;
use crate::writer::shared::{
    report, Link, WriterShared, OUTAGE_GAVE_UP, OUTAGE_LOGGED, OUTAGE_NONE,
};

/// A per-thread xorshift for jitter: no shared state, no dependency.
fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            t | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

impl WriterShared {
    /// When the core sees the connection fail: reconnect in the background, or, if the writer
    /// is gone, hand what is queued to the failed-message handler.
    pub(crate) fn install_down_hook(&self) {
        let writer = self.me.clone();
        let sendq = self.out.sendq.downgrade();
        let (codec, addr, on_failed) = (self.out.codec, self.addr.clone(), self.on_failed.clone());
        self.out.sendq.on_reconnecting(Box::new(move || {
            if let Some(writer) = writer.upgrade() {
                writer.outage_started();
                writer.schedule_redial(Duration::ZERO);
            } else if let Some(sendq) = sendq.upgrade() {
                let rest = sendq.refuse(Arc::new(ConnError::NotConnected));
                report(on_failed.as_ref(), &addr, &codec, rest, FailReason::Dropped);
            }
        }));
    }

    pub(crate) fn schedule_redial(&self, delay: Duration) {
        let job: Weak<dyn Redial> = self.me.clone();
        self.runtime.dialer().schedule(job, Instant::now() + delay);
    }

    pub(crate) fn connect(&self) -> Result<ConnInfo, DialError> {
        if let Some(err) = self.refusal.take() {
            // The last connection showed the peer cannot speak the acknowledged protocol.
            return Err(DialError::Acked(err));
        }
        let opened = open(&self.addr, self.connect_timeout, self.notsent_lowat)?;
        #[allow(unused_mut)]
        let mut info = ConnInfo {
            id: next_conn_id(),
            peer: opened.peer,
            local: opened.local,
            core: self.core.index(),
            peer_cred: opened.peer_cred,
            #[cfg(feature = "tls")]
            tls: None,
        };
        #[cfg(feature = "tls")]
        let tls = self.handshake(&opened.fd, &mut info)?;
        let conn = Conn::new(info.clone(), self.out.codec, self.out.sendq.clone());
        let session: Box<dyn Session> = match self.acked {
            Some(session) => {
                // The hello goes first: everything not acknowledged follows it again.
                say_hello(&self.out.sendq, session);
                Box::new(AckedWriterSession::new(
                    conn,
                    self.out.sendq.clone(),
                    self.handler.clone(),
                    self.policy,
                    self.refusal.clone(),
                ))
            }
            None => {
                let delivery = match &self.handler {
                    Some(handler) => Delivery::Handler(handler.clone()),
                    None => Delivery::Discard,
                };
                Box::new(FramedSession::new(
                    conn,
                    delivery,
                    self.policy,
                    None,
                    SessionLimits::default(),
                ))
            }
        };
        #[cfg(feature = "tls")]
        let (session, seal) = match tls {
            Some(tls) => crate::writer::tls::wrap(tls, session),
            None => (session, None),
        };
        #[cfg(not(feature = "tls"))]
        let seal = None;
        self.out.sendq.reopen();
        if !self
            .core
            .adopt(opened.fd, info.clone(), &self.out.sendq, session, seal)
        {
            return Err(DialError::RuntimeClosed);
        }
        tracing::debug!(conn = info.id, addr = %self.addr, "writer connected");
        Ok(info)
    }

    /// The connection was lost: log it, once per outage.
    fn outage_started(&self) {
        let was = self.outage.swap(OUTAGE_LOGGED, Ordering::Relaxed);
        if was == OUTAGE_NONE {
            tracing::info!(addr = %self.addr, "writer lost its connection; reconnecting");
        } else {
            // A give-up already reported stays reported until the outage ends.
            self.outage.store(was, Ordering::Relaxed);
        }
    }

    /// Connected again: log the end of the outage, if its start was logged.
    fn outage_ended(&self) {
        if self.outage.swap(OUTAGE_NONE, Ordering::Relaxed) != OUTAGE_NONE {
            tracing::info!(addr = %self.addr, "writer reconnected");
        }
    }

    fn give_up(&self, attempts: u32, err: DialError) {
        if self.outage.swap(OUTAGE_GAVE_UP, Ordering::Relaxed) != OUTAGE_GAVE_UP {
            tracing::warn!(addr = %self.addr, attempts, error = %err,
                "writer gave up reconnecting; writes retry the connection themselves");
        } else {
            tracing::debug!(addr = %self.addr, attempts, error = %err, "reconnecting failed again");
        }
        let err = Arc::new(err);
        let rest = self
            .out
            .sendq
            .refuse(Arc::new(ConnError::Reconnect(err.clone())));
        let reason = FailReason::GaveUp {
            attempts,
            error: err,
        };
        report(
            self.on_failed.as_ref(),
            &self.addr,
            &self.out.codec,
            rest,
            reason,
        );
    }
}

impl Reconnect for WriterShared {
    /// Reconnects now if the link is down (one thread dials; the others wait for it).
    fn reconnect(&self) -> Result<(), DialError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Link::Down(err) = self.link() {
            if let Some(err) = self.refusal.take_no_replies() {
                return Err(DialError::Acked(err));
            }
            tracing::debug!(addr = %self.addr, error = %err, "writer reconnecting");
            *current = Some(self.connect()?);
            self.attempts.store(0, Ordering::Relaxed);
            self.outage_ended();
        }
        Ok(())
    }

    /// The link is down: queue writes again and reconnect in the background.
    fn reconnect_later(&self) {
        if self.out.sendq.expect_reconnect() {
            self.attempts.store(0, Ordering::Relaxed);
            self.schedule_redial(Duration::ZERO);
        }
    }
}

impl Redial for WriterShared {
    fn attempt(&self) -> Next {
        if !matches!(self.link(), Link::Reconnecting) {
            return Next::Done;
        }
        if let Some(streak) = self.refusal.streak_to_pace() {
            // Acknowledged mode: the last connections ended before the listener's reply. They
            // count as failed attempts for giving up, and each waits the policy's first delay
            // (no hot loop against a plain listener; no growing wait on a network that cuts
            // connections early, which a re-sent window's burst makes likely).
            if !self.retry.allows(streak) {
                self.give_up(streak, DialError::Acked(AckError::NoReplies(streak)));
                return Next::Done;
            }
            return Next::RetryIn(self.retry.delay(1, jitter_unit()));
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match self.connect() {
            Ok(info) => {
                *current = Some(info);
                self.attempts.store(0, Ordering::Relaxed);
                self.outage_ended();
                Next::Done
            }
            Err(err) => {
                drop(current);
                let failed = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
                if self.retry.allows(failed) && !err.is_permanent() {
                    tracing::debug!(addr = %self.addr, failed, error = %err, "reconnect failed");
                    Next::RetryIn(self.retry.delay(failed, jitter_unit()))
                } else {
                    self.give_up(failed, err);
                    Next::Done
                }
            }
        }
    }
}
