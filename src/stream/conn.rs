//! A connection: the handle users write back through (the session that reads it is
//! [`FramedSession`](crate::stream::session::FramedSession)).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::acked::conn_ack::ConnAck;
use crate::engine::handle::{ConnInfo, Gate, SendQueueHandle};
use crate::error::WriteError;
use crate::frame::{Codec, Frame};
use crate::stream::outbound::{complete, Outbound};

/// A connection as seen by a message handler, cloneable to write from any thread later.
///
/// Writes are framed with the connection's codec and queued; the owning core sends them, many
/// frames per `send`. Frames written concurrently from several threads never interleave.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    info: ConnInfo,
    out: Outbound,
    /// An acknowledged listener's connection (`crate::acked`).
    acked: Option<ConnAck>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.info.id)
            .field("peer", &self.inner.info.peer)
            .field("core", &self.inner.info.core)
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(info: ConnInfo, codec: Codec, sendq: SendQueueHandle) -> Conn {
        Self::with(info, codec, sendq, None)
    }

    /// An acknowledged listener's connection: what it writes is tagged, once its hello was
    /// answered.
    pub(crate) fn acked(info: ConnInfo, codec: Codec, sendq: SendQueueHandle) -> Conn {
        Self::with(info, codec, sendq, Some(ConnAck::default()))
    }

    fn with(info: ConnInfo, codec: Codec, sendq: SendQueueHandle, acked: Option<ConnAck>) -> Conn {
        let tagged = acked.as_ref().map(|ack| ack.ready.clone());
        Conn {
            inner: Arc::new(ConnInner {
                info,
                out: Outbound {
                    codec,
                    sendq,
                    tagged,
                },
                acked,
            }),
        }
    }

    /// The acknowledged side of an acknowledged listener's connection.
    pub(crate) fn ack_state(&self) -> Option<&ConnAck> {
        self.inner.acked.as_ref()
    }

    /// The outbound side (acknowledged mode writes its reply and acks through it).
    pub(crate) fn outbound(&self) -> &Outbound {
        &self.inner.out
    }

    /// Flags (or not) the message about to be handed to the handler as a possible duplicate.
    #[inline]
    pub(crate) fn mark_duplicate(&self, dup: bool) {
        if let Some(ack) = &self.inner.acked {
            if ack.dup.load(Ordering::Relaxed) != dup {
                ack.dup.store(dup, Ordering::Relaxed);
            }
        }
    }

    /// Inside a message handler on an acknowledged listener
    /// ([`ListenerConfig::acked`](crate::ListenerConfig::acked)): whether an earlier listener
    /// process may have delivered the message being handled already (it was re-sent after a
    /// listener restart, and this process cannot vouch for it). Always `false` on a plain
    /// connection. Channel consumers read [`Message::possible_duplicate`](crate::Message::possible_duplicate).
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// let listener = Listener::bind(
    ///     ListenerConfig::new("127.0.0.1:5040", |msg, conn| {
    ///         if conn.possible_duplicate() {
    ///             // look the message up before acting on it again
    ///         }
    ///         Ok(())
    ///     })
    ///     .acked(true),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn possible_duplicate(&self) -> bool {
        self.inner
            .acked
            .as_ref()
            .is_some_and(|ack| ack.dup.load(Ordering::Relaxed))
    }

    /// Whether this connection runs the acknowledged protocol.
    pub fn is_acked(&self) -> bool {
        self.inner.acked.is_some()
    }

    /// A channel consumer took message `seq` (`len` payload bytes) of this connection's writer
    /// session: it is delivered; acknowledge it when due.
    pub(crate) fn taken(&self, seq: u64, len: usize, drained: bool) {
        if let Some(ack) = &self.inner.acked {
            ack.taken(seq, len, drained);
        }
    }

    /// Unique (per process) id of this connection.
    pub fn id(&self) -> u64 {
        self.inner.info.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.info.peer
    }

    /// This side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.info.local
    }

    /// Index of the core that owns this connection.
    pub fn core(&self) -> usize {
        self.inner.info.core
    }

    /// Everything identifying this connection.
    pub fn info(&self) -> ConnInfo {
        self.inner.info.clone()
    }

    /// Frames `msg` and queues it; returns the number of bytes framed (header included).
    ///
    /// From any thread other than the owning core's, this waits while the connection's send
    /// queue is full. On the owning core (inside a handler) it never waits: a full queue
    /// returns [`WriteError::Full`].
    pub fn write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        Ok(self.inner.out.write(msg)?)
    }

    /// Frames `msg` and queues it if there is room now; never waits, from any thread. A full
    /// send queue returns [`WriteError::Full`] (nothing is queued): the peer is not reading
    /// fast enough.
    pub fn try_write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        let frame = self.inner.out.codec.prepare(msg)?;
        self.try_push(&frame)?;
        Ok(frame.len() + usize::from(self.inner.acked.is_some()))
    }

    /// Queues a `len`-byte message that `fill` writes straight into the send memory (no
    /// intermediate buffer; see [`Writer::write_with`](crate::Writer::write_with) for the
    /// rules `fill` must follow). Waits for room like [`Conn::write`]: from the owning core a
    /// full queue returns [`WriteError::Full`] instead.
    ///
    /// ```no_run
    /// use buffstreams::{Listener, ListenerConfig};
    /// // Answers every request with its length, encoded in place.
    /// let listener = Listener::bind(ListenerConfig::new("127.0.0.1:5031", |msg, conn| {
    ///     let n = msg.len() as u64;
    ///     conn.write_with(8, |buf| buf.copy_from_slice(&n.to_be_bytes()))?;
    ///     Ok(())
    /// }))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WriteError> {
        self.write_encoded(len, complete(fill))
    }

    /// [`write_with`](Conn::write_with) for an encoder that reports whether it wrote exactly
    /// `len` bytes (nothing is queued if not).
    pub(crate) fn write_encoded(
        &self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<usize, WriteError> {
        Ok(self.inner.out.encode(len, &mut Some(encode))?)
    }

    /// Queues an already framed message (framed with this connection's codec) if there is
    /// room now; never waits.
    pub(crate) fn try_push(&self, frame: &Frame<'_>) -> Result<(), WriteError> {
        Ok(self.inner.out.try_push_msg(frame)?)
    }

    /// Queues `msg`, waiting for room without blocking a thread: a plain `Future` for any
    /// executor (an async task replying to a message taken from a channel). Resolves to the
    /// number of bytes framed.
    ///
    /// ```no_run
    /// # async fn demo(msg: buffstreams::Message) -> Result<(), buffstreams::WriteError> {
    /// msg.conn.write_async(b"reply").await?;
    /// # Ok(()) }
    /// ```
    pub fn write_async<'a>(&'a self, msg: &'a [u8]) -> ConnWrite<'a> {
        ConnWrite { conn: self, msg }
    }

    /// Asks the owning core to read this connection again: its channel has room.
    pub(crate) fn resume(&self) {
        self.inner.out.sendq.resume_reading();
    }

    /// A waker that makes the owning core read this connection again (its session stopped
    /// reading and can take more now). Holds the connection weakly.
    pub(crate) fn resume_waker(&self) -> Waker {
        self.inner.out.sendq.resume_waker()
    }

    /// The connection's codec.
    pub(crate) fn codec(&self) -> &Codec {
        &self.inner.out.codec
    }

    /// Closes the send queue and returns what it held, split back into messages.
    pub(crate) fn take_unsent(&self) -> Vec<Bytes> {
        self.inner.out.take_unsent()
    }

    /// Sends what is queued, then closes the connection. Returns at once.
    pub fn close(&self) {
        self.inner.out.sendq.close_conn(false, false);
    }

    /// Whether the connection is still open for writing.
    pub fn is_open(&self) -> bool {
        matches!(self.inner.out.sendq.gate(), Gate::Open)
    }
}

/// The future returned by [`Conn::write_async`]; resolves to the number of bytes framed.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct ConnWrite<'a> {
    conn: &'a Conn,
    msg: &'a [u8],
}

impl Future for ConnWrite<'_> {
    type Output = Result<usize, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = &self.conn.inner.out;
        let frame = out.codec.prepare(self.msg)?;
        let tag = usize::from(self.conn.inner.acked.is_some());
        out.poll_push_msg(&frame, cx)
            .map(|pushed| pushed.map(|()| frame.len() + tag).map_err(WriteError::from))
    }
}
