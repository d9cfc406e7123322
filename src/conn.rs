//! A connection: the handle users write back through, and the framed session that runs on the
//! owning core (decoding received bytes and calling the user's handler).

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{HandlerErrorPolicy, MessageHandler};
use crate::engine::core::Command;
use crate::engine::sendq::{FrameIndex, Link, PushError, SendQueue};
use crate::engine::session::{ConnInfo, Delivered, Session};
use crate::error::{CloseReason, ConnError, WriteError};
use crate::frame::{Codec, Decoder, Parse};

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

    /// Sends what is queued, then closes the connection. Returns at once.
    pub fn close(&self) {
        let sendq = &self.inner.sendq;
        sendq.core().send(Command::CloseConn {
            sendq: sendq.clone(),
            force: false,
            ack: None,
        });
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
    let frame = codec.prepare(msg).map_err(Enqueue::Frame)?;
    let deadline = sendq.core().is_current().then(Instant::now);
    sendq.push(&frame, deadline).map_err(Enqueue::Push)?;
    Ok(frame.len())
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

/// The session every connection runs: decode frames in place, call the handler for each.
pub(crate) struct FramedSession {
    decoder: Decoder,
    conn: Conn,
    handler: Option<MessageHandler>,
    policy: HandlerErrorPolicy,
    on_close: Option<CloseHook>,
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
            handler,
            policy,
            on_close,
        }
    }
}

impl Session for FramedSession {
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError> {
        let mut count = 0u64;
        let mut failure = None;
        let conn = &self.conn;
        let policy = self.policy;
        let handler = self.handler.as_deref();
        self.decoder.decode(data, |msg| {
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

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        Ok(Delivered::default())
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
        if let Some(hook) = &self.on_close {
            // An accepted connection is never reused: what is still queued comes back here.
            let unsent = split_frames(&self.conn.inner.codec, self.conn.inner.sendq.close());
            hook(&self.conn.inner.info, reason, unsent);
        }
    }
}
