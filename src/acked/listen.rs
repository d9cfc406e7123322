//! An acknowledged listener's session: reads the hello, takes the writer session over in the
//! table and queues the reply, then delivers through the framed session with its
//! [`Sequencer`], holding the session's slot for each batch, and acknowledges.
//!
//! When acknowledgements go out (cumulative, so batching loses nothing):
//! - with a handler, after each batch of received bytes (one receive, at most 64 KiB) that
//!   delivered something. (Holding it back until 64 KiB or 1 ms had passed stalled a writer
//!   at its unacknowledged bound until the next tick: the listener cannot tell that the
//!   writer waits. One acknowledgement per receive costs a few bytes on the connection's next
//!   send);
//! - with a channel, when the consumer has taken [`ACK_BYTES`] since the last one or found the
//!   channel empty ([`ConnAck::taken`](crate::acked::ConnAck::taken));
//! - and on every tick (50 ms), whatever is pending.
//!
//! An acknowledgement that finds the send queue full waits for the next of these.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::acked::conn_ack::AckSink;
use crate::acked::error::AckError;
use crate::acked::sequencer::Sequencer;
use crate::acked::table::{SessionTable, Slot, SlotState};
use crate::acked::wire::{ack_payload, Hello, Prefix, HELLO_LEN, MAGIC};
use crate::engine::handle::{Delivered, Encoded, Session};
use crate::error::{CloseReason, ConnError};
use crate::stream::conn::Conn;
use crate::stream::outbound::complete;
use crate::stream::session::FramedSession;

/// See the module docs.
pub(crate) struct AckedListenerSession {
    inner: FramedSession,
    table: Arc<SessionTable>,
    hello: Prefix<HELLO_LEN>,
    slot: Option<Arc<Slot>>,
    /// Deliveries go to a channel: the consumer's takes acknowledge them.
    channel: bool,
}

impl AckedListenerSession {
    pub(crate) fn new(inner: FramedSession, table: Arc<SessionTable>) -> AckedListenerSession {
        let channel = inner.delivers_to_channel();
        AckedListenerSession {
            inner,
            table,
            hello: Prefix::new(),
            slot: None,
            channel,
        }
    }

    /// The hello arrived: take the session over and queue the reply before anything else.
    fn open(&mut self, hello: Hello) -> Result<(), ConnError> {
        let conn = self.inner.conn().clone();
        let opened = self.table.open(&hello, &conn)?;
        let reply = opened.reply.to_bytes();
        let pushed = conn
            .outbound()
            .sendq
            .push(&Raw(&reply), Some(Instant::now()));
        if let Some(ack) = conn.ack_state() {
            let sink = SessionSink {
                slot: opened.slot.clone(),
                table: self.table.clone(),
            };
            let _ = ack.session.set(Arc::new(sink));
            ack.ready.store(true, Ordering::Release);
        }
        self.slot = Some(opened.slot);
        pushed.map_err(|_| ConnError::NotConnected)?;
        self.inner.seq = Some(Sequencer::new(
            hello.first_seq,
            opened.skip_through,
            opened.flag_before,
        ));
        tracing::debug!(
            conn = conn.id(),
            known = opened.reply.known,
            first_seq = hello.first_seq,
            "acknowledged session opened"
        );
        Ok(())
    }

    /// Delivers with the session's slot held (so a connection taking it over waits), then
    /// records how far delivery got and acknowledges a handler's deliveries.
    fn deliver(
        &mut self,
        f: impl FnOnce(&mut FramedSession) -> Result<Delivered, ConnError>,
    ) -> Result<Delivered, ConnError> {
        let Some(slot) = self.slot.clone() else {
            return Ok(Delivered::default());
        };
        let mut st = slot.lock();
        if !st.owned_by(self.inner.conn().id()) {
            return Err(AckError::Superseded.into());
        }
        let result = f(&mut self.inner);
        if let Some(seq) = &mut self.inner.seq {
            st.accepted = st.accepted.max(seq.accepted);
            self.table.count(
                std::mem::take(&mut seq.dropped),
                std::mem::take(&mut seq.flagged),
            );
            if !self.channel {
                st.delivered = st.delivered.max(seq.delivered);
                if st.delivered > st.acked {
                    send_ack(&mut st, &slot, &self.table);
                }
            }
        }
        result
    }
}

/// A channel listener's acknowledgement is due once its consumer took this many payload bytes
/// since the last one (or found the channel empty).
pub(crate) const ACK_BYTES: usize = 64 * 1024;

/// A writer session's acknowledgements, for its connections' channel takes.
struct SessionSink {
    slot: Arc<Slot>,
    table: Arc<SessionTable>,
}

impl AckSink for SessionSink {
    fn taken(&self, seq: u64, len: usize, drained: bool) {
        let mut st = self.slot.lock();
        st.delivered = st.delivered.max(seq);
        st.pending += len;
        if drained || st.pending >= ACK_BYTES {
            send_ack(&mut st, &self.slot, &self.table);
        }
    }
}

/// Sends the acknowledgement due on the session's owning connection (never waits: with its
/// send queue full, the next batch, take or tick sends it).
pub(crate) fn send_ack(st: &mut SlotState, slot: &Slot, table: &SessionTable) {
    if st.delivered <= st.acked {
        st.pending = 0;
        return;
    }
    let Some(owner) = &st.owner else {
        return;
    };
    if let Some(store) = table.store() {
        store.save(&slot.id, st.delivered);
    }
    let ack = ack_payload(st.delivered);
    let fill = complete(|buf: &mut [u8]| buf.copy_from_slice(&ack));
    let pushed =
        owner
            .outbound()
            .encode_tagged(ack.len(), &mut Some(fill), Some(Instant::now()), None);
    if pushed.is_ok() {
        st.acked = st.delivered;
        st.pending = 0;
    }
}

/// Raw bytes queued as they are (the reply: no frame).
struct Raw<'a>(&'a [u8]);

impl Encoded for Raw<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn write_to(&self, dst: &mut [u8]) -> usize {
        dst[..self.0.len()].copy_from_slice(self.0);
        self.0.len()
    }
}

impl Session for AckedListenerSession {
    fn on_data(&mut self, mut data: &[u8]) -> Result<Delivered, ConnError> {
        if self.slot.is_none() {
            let (used, whole) = self.hello.fill(data);
            data = &data[used..];
            let Some(bytes) = whole else {
                if !self.hello.agrees_with(&MAGIC) {
                    return Err(AckError::PlainWriter.into());
                }
                return Ok(Delivered::default());
            };
            let hello = Hello::parse(bytes)?;
            self.open(hello)?;
            if data.is_empty() {
                return Ok(Delivered::default());
            }
        }
        self.deliver(|inner| inner.on_data(data))
    }

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        self.deliver(FramedSession::resume)
    }

    fn recv_credit(&self) -> Option<usize> {
        self.inner.recv_credit()
    }

    fn has_pending(&self) -> bool {
        self.inner.has_pending()
    }

    fn on_eof(&mut self) -> Result<(), ConnError> {
        if self.slot.is_none() && self.hello.have() > 0 {
            return Err(AckError::BadHello("the connection ended inside the hello").into());
        }
        self.inner.on_eof()
    }

    fn on_tick(&mut self, now: Instant) -> Option<CloseReason> {
        if let Some(slot) = &self.slot {
            let mut st = slot.lock();
            if st.owned_by(self.inner.conn().id()) && st.delivered > st.acked {
                send_ack(&mut st, slot, &self.table);
            }
        }
        self.inner.on_tick(now)
    }

    fn on_close(self: Box<Self>, reason: &CloseReason) {
        let this = *self;
        let conn: Conn = this.inner.conn().clone();
        if let Some(slot) = &this.slot {
            this.table.release(slot, conn.id());
        }
        Box::new(this.inner).on_close(reason);
    }
}
