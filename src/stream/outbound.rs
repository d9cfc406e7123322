//! The write path shared by an accepted connection ([`Conn`](crate::Conn)) and a
//! [`Writer`](crate::Writer): frame a message with the stream's codec straight into its send
//! queue (the header, then one copy of the payload, where the kernel will send it from).
//!
//! The engine refuses a push with a [`PushError`]; this file maps it to the public
//! [`WriteError`], once for every caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::acked::error::AckError;
use crate::acked::wire::TAG_MESSAGE;
use crate::engine::handle::{PushError, SendQueueHandle};
use crate::error::{ConnError, FrameError, WriteError};
use crate::frame::{Codec, Frame};
use crate::stream::frames::split_frames;

/// A stream's codec and the send queue it frames into.
pub(crate) struct Outbound {
    pub(crate) codec: Codec,
    pub(crate) sendq: SendQueueHandle,
    /// An acknowledged listener's connection: every frame's payload starts with a tag byte
    /// (`docs/acked-protocol.md`), and messages wait for the hello's reply to be queued first
    /// (the flag: until then writes are refused).
    pub(crate) tagged: Option<Arc<AtomicBool>>,
}

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It cannot be framed (too large, or a delimiter in its payload).
    Frame(FrameError),
    /// The queue refused it.
    Push(PushError),
    /// The encoder did not write exactly the `len` bytes it announced.
    Encoder { announced: usize },
}

impl From<PushError> for WriteError {
    fn from(err: PushError) -> WriteError {
        match err {
            PushError::Closed => WriteError::Closed,
            PushError::TimedOut => WriteError::Full,
            PushError::Down(err) => WriteError::Failed(err),
        }
    }
}

impl From<Refused> for WriteError {
    fn from(err: Refused) -> WriteError {
        match err {
            Refused::Frame(err) => WriteError::Frame(err),
            Refused::Push(err) => err.into(),
            Refused::Encoder { announced } => WriteError::EncodedLength { announced },
        }
    }
}

/// A refusal that means "no room now".
pub(crate) trait IsFull {
    fn is_full(&self) -> bool;
}

impl IsFull for PushError {
    fn is_full(&self) -> bool {
        matches!(self, PushError::TimedOut)
    }
}

impl IsFull for Refused {
    fn is_full(&self) -> bool {
        matches!(self, Refused::Push(PushError::TimedOut))
    }
}

impl From<PushError> for Refused {
    fn from(err: PushError) -> Refused {
        Refused::Push(err)
    }
}

/// A `fill` that always writes its whole buffer, as an encoder for [`Outbound::encode`].
#[inline]
pub(crate) fn complete(fill: impl FnOnce(&mut [u8])) -> impl FnOnce(&mut [u8]) -> bool {
    move |buf| {
        fill(buf);
        true
    }
}

impl Outbound {
    /// A deadline that makes a push on the queue's own core never wait (waiting there would
    /// stall the core that drains the queue); `None` elsewhere (wait for room).
    #[inline]
    pub(crate) fn own_core_deadline(&self) -> Option<Instant> {
        self.sendq.on_own_core().then(Instant::now)
    }

    /// Frames `msg` and queues it; returns the frame's length. Waits for room, except on the
    /// queue's own core.
    pub(crate) fn write(&self, msg: &[u8]) -> Result<usize, Refused> {
        let fill = complete(|payload: &mut [u8]| payload.copy_from_slice(msg));
        self.encode(msg.len(), &mut Some(fill))
    }

    /// Queues a `len`-byte message that `fill` (taken out of the option when it runs) encodes
    /// in place, returning whether it wrote exactly those bytes (if not, nothing is queued);
    /// returns the frame's length. Waits for room, except on the queue's own core. `fill` stays
    /// in the option when the push is refused before it runs (so a caller may reconnect and
    /// retry).
    #[inline]
    pub(crate) fn encode<F: FnOnce(&mut [u8]) -> bool>(
        &self,
        len: usize,
        fill: &mut Option<F>,
    ) -> Result<usize, Refused> {
        let tag = self.message_tag()?;
        self.encode_tagged(len, fill, self.own_core_deadline(), tag)
    }

    /// On an acknowledged connection, the tag of a message (refused until the reply to the
    /// hello is queued); `None` on a plain one.
    #[inline]
    fn message_tag(&self) -> Result<Option<u8>, Refused> {
        match &self.tagged {
            None => Ok(None),
            Some(ready) if ready.load(Ordering::Acquire) => Ok(Some(TAG_MESSAGE)),
            Some(_) => Err(Refused::Push(PushError::Down(Arc::new(ConnError::Acked(
                AckError::NotReady,
            ))))),
        }
    }

    /// [`Outbound::encode`] waiting until `deadline`, the payload preceded by `tag` if any.
    #[inline]
    pub(crate) fn encode_tagged<F: FnOnce(&mut [u8]) -> bool>(
        &self,
        len: usize,
        fill: &mut Option<F>,
        deadline: Option<Instant>,
        tag: Option<u8>,
    ) -> Result<usize, Refused> {
        let codec = &self.codec;
        let tag_len = usize::from(tag.is_some());
        let len = len + tag_len;
        codec.check_len(len).map_err(Refused::Frame)?;
        // Room for the longest header (and a delimiter): the exact length comes from the encoder.
        let room = len + codec.max_overhead();
        let mut refused = None;
        let written = self.sendq.push_with(room, deadline, |dst| {
            let fill = fill.take()?;
            let mut exact = true;
            let n = codec
                .encode_with(len, dst, |payload| {
                    if let Some(tag) = tag {
                        payload[0] = tag;
                    }
                    exact = fill(&mut payload[tag_len..]);
                })
                .map_err(|err| refused = Some(Refused::Frame(err)))
                .ok()?;
            if !exact {
                refused = Some(Refused::Encoder { announced: len });
                return None;
            }
            Some(n)
        })?;
        match (written, refused) {
            (Some(n), _) => Ok(n),
            (None, Some(err)) => Err(err),
            // Only if `fill` was already used by an earlier call, which no caller does.
            (None, None) => Err(Refused::Push(PushError::Closed)),
        }
    }

    /// Queues a frame if there is room now; never waits.
    pub(crate) fn try_push(&self, frame: &Frame<'_>) -> Result<(), PushError> {
        self.sendq.push(frame, Some(Instant::now()))
    }

    /// Queues a message prepared as `frame` if there is room now; never waits. On an
    /// acknowledged connection it is framed again, tagged.
    pub(crate) fn try_push_msg(&self, frame: &Frame<'_>) -> Result<(), Refused> {
        let Some(tag) = self.message_tag()? else {
            return Ok(self.try_push(frame)?);
        };
        let payload = frame.payload();
        let fill = complete(|buf: &mut [u8]| buf.copy_from_slice(payload));
        self.encode_tagged(
            payload.len(),
            &mut Some(fill),
            Some(Instant::now()),
            Some(tag),
        )
        .map(|_| ())
    }

    /// Queues a frame, or registers `cx`'s waker to be woken when room frees up or the gate
    /// changes: the one poll of an async write.
    pub(crate) fn poll_push(
        &self,
        frame: &Frame<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError>> {
        self.poll_with(frame.len(), cx, || self.try_push(frame))
    }

    /// [`Outbound::poll_push`] for a message prepared as `frame` (tagged again on an
    /// acknowledged connection).
    pub(crate) fn poll_push_msg(
        &self,
        frame: &Frame<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Refused>> {
        let room = frame.len() + usize::from(self.tagged.is_some());
        self.poll_with(room, cx, || self.try_push_msg(frame))
    }

    fn poll_with<E: IsFull>(
        &self,
        room: usize,
        cx: &mut Context<'_>,
        mut push: impl FnMut() -> Result<(), E>,
    ) -> Poll<Result<(), E>> {
        loop {
            match push() {
                Err(err) if err.is_full() => {
                    if self.sendq.register_waker(cx.waker(), room) {
                        return Poll::Pending;
                    }
                    // Room (or a state change) appeared meanwhile: try again now.
                }
                done => return Poll::Ready(done),
            }
        }
    }

    /// Splits queued frames back into payloads (to hand unsent messages back to the user).
    pub(crate) fn split(&self, frames: BytesMut) -> Vec<Bytes> {
        split_frames(&self.codec, frames)
    }

    /// Closes the send queue and returns what it held, split back into messages.
    pub(crate) fn take_unsent(&self) -> Vec<Bytes> {
        self.split(self.sendq.close_queue())
    }
}
