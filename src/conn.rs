//! A connection: the handle users write back through (the session that reads it lives in
//! [`crate::framed`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::engine::handle::ConnHandle;
use crate::engine::send::{FrameIndex, Gate, PushError};
use crate::engine::session::ConnInfo;
use crate::error::{CloseReason, WriteError};
use crate::frame::{Codec, Frame, Parse};

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
    sendq: ConnHandle,
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
    pub(crate) fn new(info: ConnInfo, codec: Codec, sendq: ConnHandle) -> Conn {
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
        self.write_encoded(len, complete(fill))
    }

    /// [`write_with`](Conn::write_with) for an encoder that reports whether it wrote exactly
    /// `len` bytes (nothing is queued if not).
    pub(crate) fn write_encoded(
        &self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<usize, WriteError> {
        let inner = &*self.inner;
        Ok(enqueue_with(
            &inner.codec,
            &inner.sendq,
            len,
            &mut Some(encode),
        )?)
    }

    /// Queues an already framed message (framed with this connection's codec) if there is
    /// room now; never waits.
    pub(crate) fn try_push(&self, frame: &Frame<'_>) -> Result<(), WriteError> {
        self.inner
            .sendq
            .push(frame, Some(Instant::now()))
            .map_err(|err| Enqueue::Push(err).into())
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
        self.inner.sendq.resume_reading();
    }

    /// A waker that makes the owning core read this connection again (its session stopped
    /// reading and can take more now). Holds the connection weakly.
    pub(crate) fn resume_waker(&self) -> Waker {
        self.inner.sendq.resume_waker()
    }

    /// The connection's codec.
    pub(crate) fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    /// Closes the send queue and returns what it held, split back into messages.
    pub(crate) fn take_unsent(&self) -> Vec<Bytes> {
        split_frames(&self.inner.codec, self.inner.sendq.close_queue())
    }

    /// Sends what is queued, then closes the connection. Returns at once.
    pub fn close(&self) {
        self.inner.sendq.close_conn(false, false);
    }

    /// Whether the connection is still open for writing.
    pub fn is_open(&self) -> bool {
        matches!(self.inner.sendq.gate(), Gate::Open)
    }
}

/// Why [`enqueue`] refused a message.
pub(crate) enum Enqueue {
    Frame(crate::error::FrameError),
    Push(PushError),
    /// The encoder did not write exactly the `len` bytes it announced.
    Encoder {
        announced: usize,
    },
}

impl From<Enqueue> for WriteError {
    fn from(err: Enqueue) -> WriteError {
        match err {
            Enqueue::Frame(err) => WriteError::Frame(err),
            Enqueue::Push(PushError::Closed) => WriteError::Closed,
            Enqueue::Push(PushError::TimedOut) => WriteError::Full,
            Enqueue::Push(PushError::Down(err)) => WriteError::Failed(err),
            Enqueue::Encoder { announced } => WriteError::EncodedLength { announced },
        }
    }
}

/// Frames `msg` and queues it on `sendq`; returns the frame's length. Waits for room, except on
/// the queue's own core (where waiting would stall the core that drains it).
pub(crate) fn enqueue(codec: &Codec, sendq: &ConnHandle, msg: &[u8]) -> Result<usize, Enqueue> {
    // Framed in place (header, then one copy of the payload): about half the cost of building
    // a `Frame` and copying it.
    let fill = complete(|payload: &mut [u8]| payload.copy_from_slice(msg));
    enqueue_with(codec, sendq, msg.len(), &mut Some(fill))
}

/// A `fill` that always writes its whole buffer, as an encoder for [`enqueue_with`].
#[inline]
pub(crate) fn complete(fill: impl FnOnce(&mut [u8])) -> impl FnOnce(&mut [u8]) -> bool {
    move |buf| {
        fill(buf);
        true
    }
}

/// Queues a `len`-byte message that `fill` (taken out of the option when it runs) encodes in
/// place, returning whether it wrote exactly those bytes (if not, nothing is queued); returns
/// the frame's length. Waits for room, except on the queue's own core. `fill` stays in the
/// option when the push is refused before it runs (so a caller may reconnect and retry).
#[inline]
pub(crate) fn enqueue_with<F: FnOnce(&mut [u8]) -> bool>(
    codec: &Codec,
    sendq: &ConnHandle,
    len: usize,
    fill: &mut Option<F>,
) -> Result<usize, Enqueue> {
    codec.check_len(len).map_err(Enqueue::Frame)?;
    // Room for the longest header (and a delimiter): the exact length comes from the encoder.
    let room = len + codec.max_overhead();
    let deadline = sendq.on_own_core().then(Instant::now);
    let mut refused = None;
    let written = sendq
        .push_with(room, deadline, |dst| {
            let fill = fill.take()?;
            let mut exact = true;
            let n = codec
                .encode_with(len, dst, |payload| exact = fill(payload))
                .map_err(|err| refused = Some(Enqueue::Frame(err)))
                .ok()?;
            if !exact {
                refused = Some(Enqueue::Encoder { announced: len });
                return None;
            }
            Some(n)
        })
        .map_err(Enqueue::Push)?;
    match (written, refused) {
        (Some(n), _) => Ok(n),
        (None, Some(err)) => Err(err),
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
        let inner = &*self.conn.inner;
        let frame = inner.codec.prepare(self.msg)?;
        loop {
            match inner.sendq.push(&frame, Some(Instant::now())) {
                Ok(()) => return Poll::Ready(Ok(frame.len())),
                Err(PushError::TimedOut) => {
                    if inner.sendq.register_waker(cx.waker(), frame.len()) {
                        return Poll::Pending;
                    }
                    // Room (or a state change) appeared meanwhile: try again now.
                }
                Err(err) => return Poll::Ready(Err(Enqueue::Push(err).into())),
            }
        }
    }
}
