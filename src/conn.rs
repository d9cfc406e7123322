//! A connection: the handle users write back through, and the framed session that runs on the
//! owning core (decoding received bytes and calling the user's handler).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::channel::{ChannelSender, Message};
use crate::config::{HandlerErrorPolicy, MessageHandler};
use crate::engine::send::{FrameIndex, Link, PushError, SendQueue};
use crate::engine::session::{ConnInfo, Delivered, Session};
use crate::error::{CloseReason, ConnError, WriteError};
use crate::frame::{Codec, Decoder, Frame, Parse};

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
    codec: Codec,
    sendq: Arc<SendQueue>,
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
    pub(crate) fn new(info: ConnInfo, codec: Codec, sendq: Arc<SendQueue>) -> Conn {
        Conn {
            inner: Arc::new(ConnInner { info, codec, sendq }),
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
        self.inner.info
    }

    /// Frames `msg` and queues it; returns the number of bytes framed (header included).
    ///
    /// From any thread other than the owning core's, this waits while the connection's send
    /// queue is full. On the owning core (inside a handler) it never waits: a full queue
    /// returns [`WriteError::Full`].
    pub fn write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        let inner = &*self.inner;
        enqueue(&inner.codec, &inner.sendq, msg).map_err(|err| match err {
            Enqueue::Push(PushError::Down(err)) => WriteError::Failed(err),
            other => other.into(),
        })
    }

    /// Frames `msg` and queues it if there is room now; never waits, from any thread. A full
    /// send queue returns [`WriteError::Full`] (nothing is queued): the peer is not reading
    /// fast enough.
    pub fn try_write(&self, msg: &[u8]) -> Result<usize, WriteError> {
        let frame = self.inner.codec.prepare(msg)?;
        self.try_push(&frame)?;
        Ok(frame.len())
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
        let inner = &*self.inner;
        Ok(enqueue_with(
            &inner.codec,
            &inner.sendq,
            len,
            &mut Some(fill),
        )?)
    }

    /// Queues an already framed message (framed with this connection's codec) if there is
    /// room now; never waits.
    pub(crate) fn try_push(&self, frame: &Frame<'_>) -> Result<(), WriteError> {
        self.inner
            .sendq
            .push(frame, Some(Instant::now()))
            .map_err(|err| match err {
                PushError::Closed => WriteError::Closed,
                PushError::TimedOut => WriteError::Full,
                PushError::Down(err) => WriteError::Failed(err),
            })
    }

    /// Asks the owning core to read this connection again: its channel has room.
    pub(crate) fn resume(&self) {
        self.inner.sendq.request_resume();
    }

    /// Sends what is queued, then closes the connection. Returns at once.
    pub fn close(&self) {
        self.inner.sendq.request_close(false, false);
    }

    /// Whether the connection is still open for writing.
    pub fn is_open(&self) -> bool {
        matches!(self.inner.sendq.link(), Link::Up)
    }
}

/// Why [`enqueue`] refused a message.
pub(crate) enum Enqueue {
    Frame(crate::error::FrameError),
    Push(PushError),
}

impl From<Enqueue> for WriteError {
    fn from(err: Enqueue) -> WriteError {
        match err {
            Enqueue::Frame(err) => WriteError::Frame(err),
            Enqueue::Push(PushError::Closed) => WriteError::Closed,
            Enqueue::Push(PushError::TimedOut) => WriteError::Full,
            Enqueue::Push(PushError::Down(err)) => WriteError::Failed(err),
        }
    }
}

/// Frames `msg` and queues it on `sendq`; returns the frame's length. Waits for room, except on
/// the queue's own core (where waiting would stall the core that drains it).
pub(crate) fn enqueue(codec: &Codec, sendq: &Arc<SendQueue>, msg: &[u8]) -> Result<usize, Enqueue> {
    // Framed in place (header, then one copy of the payload): about half the cost of building
    // a `Frame` and copying it.
    let fill = |payload: &mut [u8]| payload.copy_from_slice(msg);
    enqueue_with(codec, sendq, msg.len(), &mut Some(fill))
}

/// Queues a `len`-byte message that `fill` (taken out of the option when it runs) encodes in
/// place; returns the frame's length. Waits for room, except on the queue's own core. `fill`
/// stays in the option when the push is refused before it runs (so a caller may reconnect and
/// retry).
#[inline]
pub(crate) fn enqueue_with<F: FnOnce(&mut [u8])>(
    codec: &Codec,
    sendq: &Arc<SendQueue>,
    len: usize,
    fill: &mut Option<F>,
) -> Result<usize, Enqueue> {
    codec.check_len(len).map_err(Enqueue::Frame)?;
    // Room for the longest header (and a delimiter): the exact length comes from the encoder.
    let room = len + codec.max_overhead();
    let deadline = sendq.core().is_current().then(Instant::now);
    let mut refused = None;
    let written = sendq
        .push_with(room, deadline, |dst| {
            let fill = fill.take()?;
            codec
                .encode_with(len, dst, fill)
                .map_err(|err| refused = Some(err))
                .ok()
        })
        .map_err(Enqueue::Push)?;
    match (written, refused) {
        (Some(n), _) => Ok(n),
        (None, Some(err)) => Err(Enqueue::Frame(err)),
        // Only if `fill` was already used by an earlier call, which no caller does.
        (None, None) => Err(Enqueue::Push(PushError::Closed)),
    }
}

impl FrameIndex for Codec {
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize {
        let mut start = 0;
        while start < buf.len() {
            match self.parse(&buf[start..]) {
                Ok(Parse::Frame { frame_len, .. }) if frame_len > 0 => {
                    if start + frame_len > offset {
                        return start;
                    }
                    start += frame_len;
                }
                _ => return start,
            }
        }
        start
    }
}

/// Splits queued frames back into payloads (to hand unsent messages back to the user).
pub(crate) fn split_frames(codec: &Codec, mut frames: BytesMut) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Ok(Some(payload)) = codec.decode_from(&mut frames) {
        out.push(payload);
    }
    out
}

/// Called when a connection ends, with the messages that were queued but never sent.
pub(crate) type CloseHook = Arc<dyn Fn(&ConnInfo, &CloseReason, Vec<Bytes>) + Send + Sync>;

/// The session every connection runs: decode frames in place and hand each to the handler, or
/// to a channel (pausing the connection while the channel is full).
pub(crate) struct FramedSession {
    decoder: Decoder,
    conn: Conn,
    sink: Sink,
    policy: HandlerErrorPolicy,
    on_close: Option<CloseHook>,
}

/// Where decoded messages go.
enum Sink {
    /// Called with each message on the owning core (or nothing: messages are dropped).
    Handler(Option<MessageHandler>),
    /// Queued on a bounded channel.
    Channel(ChannelSink),
}

/// Per-connection state of channel delivery.
struct ChannelSink {
    sender: ChannelSender,
    /// The channel was full: the connection waits for `resume`.
    paused: bool,
    /// Received bytes not yet decoded because the channel was full: the rest of the chunk that
    /// filled it, then the chunks already in flight when reading stopped, each kept at its
    /// exact size (no copying as it grows, no slack).
    backlog: VecDeque<Vec<u8>>,
    /// Bytes of the backlog's first chunk already decoded.
    backlog_head: usize,
    /// The batch being decoded (kept to reuse its allocation).
    batch: Vec<Message>,
    /// Every receiver is gone and that was logged.
    warned: bool,
}

impl FramedSession {
    pub(crate) fn new(
        conn: Conn,
        handler: Option<MessageHandler>,
        policy: HandlerErrorPolicy,
        on_close: Option<CloseHook>,
    ) -> FramedSession {
        FramedSession {
            decoder: Decoder::new(conn.inner.codec),
            conn,
            sink: Sink::Handler(handler),
            policy,
            on_close,
        }
    }

    /// A session that queues every message on `sender`'s channel. `policy` says what to do
    /// once every receiver is gone (discard and log, or close).
    pub(crate) fn with_channel(
        conn: Conn,
        sender: ChannelSender,
        policy: HandlerErrorPolicy,
        on_close: Option<CloseHook>,
    ) -> FramedSession {
        FramedSession {
            decoder: Decoder::new(conn.inner.codec),
            conn,
            sink: Sink::Channel(ChannelSink {
                sender,
                paused: false,
                backlog: VecDeque::new(),
                backlog_head: 0,
                batch: Vec::new(),
                warned: false,
            }),
            policy,
            on_close,
        }
    }
}

fn call_handler(
    decoder: &mut Decoder,
    handler: Option<&MessageHandler>,
    conn: &Conn,
    policy: HandlerErrorPolicy,
    data: &[u8],
) -> Result<Delivered, ConnError> {
    let mut count = 0u64;
    let mut failure = None;
    decoder.decode(data, |msg| {
        count += 1;
        let Some(handler) = handler else {
            return ControlFlow::Continue(());
        };
        match catch_unwind(AssertUnwindSafe(|| handler(msg, conn))) {
            Ok(Ok(())) => ControlFlow::Continue(()),
            Ok(Err(err)) => match policy {
                HandlerErrorPolicy::LogAndContinue => {
                    tracing::warn!(conn = conn.id(), error = %err, "message handler failed");
                    ControlFlow::Continue(())
                }
                HandlerErrorPolicy::Close => {
                    failure = Some(ConnError::Handler(err.into_inner()));
                    ControlFlow::Break(())
                }
            },
            Err(_) => {
                failure = Some(ConnError::HandlerPanic);
                ControlFlow::Break(())
            }
        }
    })?;
    match failure {
        Some(err) => Err(err),
        None => Ok(Delivered {
            messages: count,
            paused: false,
        }),
    }
}

impl ChannelSink {
    /// Bytes arrived: decode them into the channel, or keep them if paused.
    fn on_data(
        &mut self,
        decoder: &mut Decoder,
        conn: &Conn,
        policy: HandlerErrorPolicy,
        data: &[u8],
    ) -> Result<Delivered, ConnError> {
        if self.paused {
            // In flight when reading stopped: keep it for `resume`.
            if !data.is_empty() {
                self.backlog.push_back(data.to_vec());
            }
            return Ok(Delivered {
                messages: 0,
                paused: true,
            });
        }
        let (used, messages) = self.feed(decoder, conn, policy, data)?;
        if self.paused {
            if let Some(rest) = data.get(used..).filter(|rest| !rest.is_empty()) {
                self.backlog.push_back(rest.to_vec());
            }
        }
        Ok(Delivered {
            messages,
            paused: self.paused,
        })
    }

    /// The channel has room: feed the backlog through the decoder (pausing again if it fills).
    fn resume(
        &mut self,
        decoder: &mut Decoder,
        conn: &Conn,
        policy: HandlerErrorPolicy,
    ) -> Result<Delivered, ConnError> {
        if !self.paused {
            return Ok(Delivered::default());
        }
        self.paused = false;
        let mut backlog = std::mem::take(&mut self.backlog);
        let mut head = self.backlog_head;
        let mut messages = 0;
        while let Some(chunk) = backlog.front() {
            let (used, delivered) =
                self.feed(decoder, conn, policy, chunk.get(head..).unwrap_or_default())?;
            messages += delivered;
            head += used;
            if head >= chunk.len() {
                backlog.pop_front();
                head = 0;
            }
            if self.paused {
                break;
            }
        }
        self.backlog = backlog;
        self.backlog_head = head;
        Ok(Delivered {
            messages,
            paused: self.paused,
        })
    }

    /// Decodes `data` into the channel, a batch at a time within the room reserved for it, until
    /// the data is used up or the channel is full (then `self.paused` is set). Returns the bytes
    /// used and the messages queued.
    fn feed(
        &mut self,
        decoder: &mut Decoder,
        conn: &Conn,
        policy: HandlerErrorPolicy,
        data: &[u8],
    ) -> Result<(usize, u64), ConnError> {
        let mut pos = 0;
        let mut messages = 0u64;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            let Some(room) = self.sender.reserve() else {
                return self
                    .discard(decoder, conn, policy, rest)
                    .map(|n| (data.len(), messages + n));
            };
            let mut batch = std::mem::take(&mut self.batch);
            let decoded = decoder.decode(rest, |payload| {
                batch.push(Message {
                    payload: Bytes::copy_from_slice(payload),
                    conn: conn.clone(),
                });
                if batch.len() >= room {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            messages += batch.len() as u64;
            // Messages decoded before a corrupt frame are delivered, as with a handler.
            let full = self.sender.commit(&mut batch, room, conn);
            self.batch = batch;
            pos += decoded?;
            if full {
                self.paused = true;
                return Ok((pos, messages));
            }
            if pos >= data.len() {
                return Ok((data.len(), messages));
            }
        }
    }

    /// Every receiver is gone: decode and drop `data`, or fail under [`HandlerErrorPolicy::Close`].
    fn discard(
        &mut self,
        decoder: &mut Decoder,
        conn: &Conn,
        policy: HandlerErrorPolicy,
        data: &[u8],
    ) -> Result<u64, ConnError> {
        let mut count = 0u64;
        decoder.decode(data, |_| {
            count += 1;
            ControlFlow::Continue(())
        })?;
        if count > 0 {
            if policy == HandlerErrorPolicy::Close {
                return Err(ConnError::Handler(
                    "every MessageReceiver was dropped: nobody takes the messages".into(),
                ));
            }
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    conn = conn.id(),
                    "every MessageReceiver was dropped: discarding this connection's messages"
                );
            }
        }
        Ok(count)
    }
}

impl Session for FramedSession {
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError> {
        match &mut self.sink {
            Sink::Handler(handler) => call_handler(
                &mut self.decoder,
                handler.as_ref(),
                &self.conn,
                self.policy,
                data,
            ),
            Sink::Channel(sink) => sink.on_data(&mut self.decoder, &self.conn, self.policy, data),
        }
    }

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        match &mut self.sink {
            Sink::Handler(_) => Ok(Delivered::default()),
            Sink::Channel(sink) => sink.resume(&mut self.decoder, &self.conn, self.policy),
        }
    }

    fn on_eof(&mut self) -> Result<(), ConnError> {
        self.decoder.finish().map_err(ConnError::from)
    }

    fn on_close(self: Box<Self>, reason: &CloseReason) {
        if let CloseReason::Error(err) = reason {
            tracing::info!(conn = self.conn.id(), peer = %self.conn.peer_addr(), error = %err,
                "connection closed with an error");
        } else {
            tracing::debug!(conn = self.conn.id(), %reason, "connection closed");
        }
        if let Sink::Channel(sink) = &self.sink {
            // Closed while paused: it no longer waits for room. Messages it already queued stay
            // queued for the receiver.
            sink.sender.forget(self.conn.id());
        }
        if let Some(hook) = &self.on_close {
            // An accepted connection is never reused: what is still queued comes back here.
            let unsent = split_frames(&self.conn.inner.codec, self.conn.inner.sendq.close());
            hook(&self.conn.inner.info, reason, unsent);
        }
    }
}
