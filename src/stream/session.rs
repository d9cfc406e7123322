//! The session every connection runs on its owning core: decode received bytes into messages
//! and deliver them to a handler or a channel, holding back what cannot be delivered yet.
//!
//! Reading a connection stops (the engine's pause) when its channel is full or when the
//! listener's [`AssemblyBudget`] cannot cover the next partly received frame; the bytes already
//! received then wait here, and reading resumes when the channel has room or the budget has
//! memory again. A [`Watchdog`] closes connections that stay silent or leave a frame unfinished
//! for too long.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::acked::sequencer::Sequencer;
use crate::channel::ChannelSender;
use crate::engine::handle::{ConnInfo, Delivered, Session};
use crate::error::{CloseReason, ConnError};
use crate::frame::{AssemblyBudget, BudgetPolicy, Decoder};
use crate::stream::conn::Conn;
use crate::stream::delivery::{Delivery, Fed};
use crate::stream::handler::HandlerErrorPolicy;
use crate::stream::held::Held;
use crate::stream::tally::Tally;
use crate::stream::watchdog::{Timeouts, Watchdog};
use crate::stream::{to_channel, to_handler};

/// Called when a connection ends, with the messages that were queued but never sent.
pub(crate) type CloseHook = Arc<dyn Fn(&ConnInfo, &CloseReason, Vec<Bytes>) + Send + Sync>;

/// What a listener limits on each of its connections.
#[derive(Clone, Default)]
pub(crate) struct SessionLimits {
    /// Paying for partly received frames, shared by the listener's connections.
    pub(crate) budget: Option<Arc<AssemblyBudget>>,
    pub(crate) timeouts: Timeouts,
}

impl SessionLimits {
    /// Whether sessions need the core's periodic tick: for timeouts, or to notice that the
    /// budget evicted them while they were silent.
    pub(crate) fn ticks(&self) -> bool {
        self.timeouts.any()
            || self
                .budget
                .as_ref()
                .is_some_and(|b| b.policy() == BudgetPolicy::CloseLargest)
    }
}

/// A connection's framed session (see the module docs).
pub(crate) struct FramedSession {
    decoder: Decoder,
    conn: Conn,
    delivery: Delivery<ChannelSender>,
    policy: HandlerErrorPolicy,
    on_close: Option<CloseHook>,
    /// Reading is stopped: the channel is full or the budget short.
    paused: bool,
    /// Received bytes not yet decoded while paused: the rest of the chunk that stopped it, then
    /// the chunks already in flight when reading stopped.
    held: Held,
    /// Messages delivered so far (the watchdog tells frames apart by it).
    delivered: u64,
    watchdog: Option<Watchdog>,
    /// Where the messages delivered are counted for the listener, if it counts them.
    tally: Option<Arc<Tally>>,
    /// An acknowledged connection's numbering, once its hello was read.
    pub(crate) seq: Option<Sequencer>,
}

impl FramedSession {
    pub(crate) fn new(
        conn: Conn,
        delivery: Delivery<ChannelSender>,
        policy: HandlerErrorPolicy,
        on_close: Option<CloseHook>,
        limits: SessionLimits,
    ) -> FramedSession {
        let codec = *conn.codec();
        let decoder = match limits.budget.clone() {
            Some(budget) => Decoder::with_budget(codec, budget, conn.resume_waker()),
            None => Decoder::new(codec),
        };
        FramedSession {
            decoder,
            conn,
            delivery,
            policy,
            on_close,
            paused: false,
            held: Held::new(limits.budget),
            delivered: 0,
            watchdog: limits
                .timeouts
                .any()
                .then(|| Watchdog::new(limits.timeouts, Instant::now())),
            tally: None,
            seq: None,
        }
    }

    /// The connection it reads.
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Whether it delivers to a channel (rather than a handler).
    pub(crate) fn delivers_to_channel(&self) -> bool {
        matches!(self.delivery, Delivery::Channel(_))
    }

    /// Counts the messages this session delivers in `tally` (once per batch of received bytes,
    /// on the connection's core's slot).
    pub(crate) fn counting(mut self, tally: Arc<Tally>) -> FramedSession {
        self.tally = Some(tally);
        self
    }

    /// Decodes `data` into its delivery; pauses if the channel is full or the budget short.
    fn feed(&mut self, data: &[u8]) -> Result<Fed, ConnError> {
        let (decoder, conn, policy) = (&mut self.decoder, &self.conn, self.policy);
        let seq = self.seq.as_mut();
        let fed = match &mut self.delivery {
            Delivery::Discard => to_handler::feed(decoder, None, conn, policy, seq, data),
            Delivery::Handler(handler) => {
                to_handler::feed(decoder, Some(handler), conn, policy, seq, data)
            }
            Delivery::Channel(sender) => to_channel::feed(sender, decoder, conn, policy, seq, data),
        }?;
        self.delivered += fed.messages;
        if let (Some(tally), 1..) = (&self.tally, fed.messages) {
            tally.add(self.conn.core(), fed.messages);
        }
        if fed.full || self.decoder.waiting_for_budget() {
            self.paused = true;
        }
        Ok(fed)
    }

    /// The budget asked this connection to give up its memory.
    fn evicted(&self) -> Option<ConnError> {
        self.decoder.evicted().then(|| ConnError::OverBudget {
            held: self.decoder.reserved(),
        })
    }
}

impl Session for FramedSession {
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError> {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.saw_data();
        }
        if let Some(err) = self.evicted() {
            return Err(err);
        }
        if self.paused {
            // In flight when reading stopped: keep it for `resume`.
            self.held.push(data);
            return Ok(Delivered {
                messages: 0,
                paused: true,
            });
        }
        let fed = self.feed(data)?;
        if self.paused {
            self.held.push(data.get(fed.used..).unwrap_or_default());
        }
        Ok(Delivered {
            messages: fed.messages,
            paused: self.paused,
        })
    }

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        if !self.paused {
            return Ok(Delivered::default());
        }
        self.paused = false;
        let mut held = std::mem::take(&mut self.held);
        let mut messages = 0;
        let result = loop {
            let Some(chunk) = held.front() else {
                break Ok(());
            };
            let fed = match self.feed(chunk) {
                Ok(fed) => fed,
                Err(err) => break Err(err),
            };
            messages += fed.messages;
            held.consume(fed.used);
            if self.paused {
                break Ok(());
            }
        };
        self.held = held;
        result.map(|()| Delivered {
            messages,
            paused: self.paused,
        })
    }

    fn recv_credit(&self) -> Option<usize> {
        // A listener whose budget is at least half spent hands each connection little more
        // than the frame it is assembling (already paid for), so what a stop leaves waiting
        // stays small however many connections stop.
        let budget = self.held.budget()?;
        budget
            .under_pressure()
            .then(|| self.decoder.frame_remaining())
    }

    fn on_eof(&mut self) -> Result<(), ConnError> {
        self.decoder.finish().map_err(ConnError::from)
    }

    fn on_tick(&mut self, now: Instant) -> Option<CloseReason> {
        if let Some(err) = self.evicted() {
            return Some(CloseReason::Error(Arc::new(err)));
        }
        let watchdog = self.watchdog.as_mut()?;
        watchdog.tick(
            now,
            self.decoder.buffered() > 0,
            self.delivered,
            self.paused,
        )
    }

    fn on_close(self: Box<Self>, reason: &CloseReason) {
        match reason {
            CloseReason::Error(err) => {
                tracing::info!(conn = self.conn.id(), peer = %self.conn.peer_addr(), error = %err,
                    "connection closed with an error")
            }
            CloseReason::IdleTimeout(_) | CloseReason::FrameTimeout(_) => {
                tracing::info!(conn = self.conn.id(), peer = %self.conn.peer_addr(), %reason,
                    "connection timed out")
            }
            _ => tracing::debug!(conn = self.conn.id(), %reason, "connection closed"),
        }
        if let Delivery::Channel(sender) = &self.delivery {
            // Closed while paused: it no longer waits for room. Messages it already queued stay
            // queued for the receiver.
            sender.forget(self.conn.id());
        }
        if let Some(hook) = &self.on_close {
            // An accepted connection is never reused: what is still queued comes back here.
            hook(&self.conn.info(), reason, self.conn.take_unsent());
        }
    }
}
