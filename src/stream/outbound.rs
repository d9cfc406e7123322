//! The write path shared by an accepted connection ([`Conn`](crate::Conn)) and a
//! [`Writer`](crate::Writer): frame a message with the stream's codec straight into its send
//! queue (the header, then one copy of the payload, where the kernel will send it from).
//!
//! The engine refuses a push with a [`PushError`]; this file maps it to the public
//! [`WriteError`], once for every caller.

use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::engine::handle::{PushError, SendQueueHandle};
use crate::error::{FrameError, WriteError};
use crate::frame::{Codec, Frame};
use crate::stream::frames::split_frames;

/// A stream's codec and the send queue it frames into.
pub(crate) struct Outbound {
    pub(crate) codec: Codec,
    pub(crate) sendq: SendQueueHandle,
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
        let codec = &self.codec;
        codec.check_len(len).map_err(Refused::Frame)?;
        // Room for the longest header (and a delimiter): the exact length comes from the encoder.
        let room = len + codec.max_overhead();
        let mut refused = None;
        let written = self
            .sendq
            .push_with(room, self.own_core_deadline(), |dst| {
                let fill = fill.take()?;
                let mut exact = true;
                let n = codec
                    .encode_with(len, dst, |payload| exact = fill(payload))
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

    /// Queues a frame, or registers `cx`'s waker to be woken when room frees up or the gate
    /// changes: the one poll of an async write.
    pub(crate) fn poll_push(
        &self,
        frame: &Frame<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError>> {
        loop {
            match self.try_push(frame) {
                Err(PushError::TimedOut) => {
                    if self.sendq.register_waker(cx.waker(), frame.len()) {
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
