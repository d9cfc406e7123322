//! Streaming decoder: turns a byte stream received in arbitrary chunks into payloads.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::Waker;

use crate::assembly::Assembly;
use crate::budget::Stake;
mod delimited;
mod prefixed;

use crate::budget::AssemblyBudget;
use crate::codec::Codec;
use crate::error::FrameError;
use crate::framing::{Framing, MAX_HEADER_LEN};

/// Capacity of the assembly buffer kept after a frame has been delivered; more is freed. This
/// (plus the header bytes) is all a decoder holds between frames.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Frames (delimited messages: bytes held) up to this size are assembled without the budget:
/// a stream of small messages cut at a receive boundary never waits behind large frames, and
/// this is within what a decoder keeps between frames anyway ([`KEEP_CAPACITY`]).
const UNBUDGETED_FRAME: usize = KEEP_CAPACITY;

/// The first allocation for a frame being assembled (less if the frame is smaller); it then
/// doubles as bytes arrive, never past the announced length.
const FIRST_CAPACITY: usize = 4 * 1024;

/// Decodes one connection's byte stream, fed in chunks cut at any byte.
///
/// A frame lying wholly inside a chunk is passed to the callback as a sub-slice of that chunk,
/// without copying. A frame split across chunks is assembled in an internal buffer that grows
/// with the bytes received (doubling, never past the announced length, which was checked
/// against the maximum first): a peer that announces a large frame and sends little of it gets
/// little memory. Past 128 KiB that buffer is a memory mapping of its own, grown by remapping
/// (no copy) and unmapped as soon as the frame is delivered or the decoder dropped, so a large
/// frame's memory goes back to the system whatever the allocator keeps. For
/// [`Framing::Delimited`] no byte is scanned twice and no more than the maximum is held.
///
/// With an [`AssemblyBudget`] ([`Decoder::with_budget`]), a frame is assembled only once the
/// budget covers it; see there.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec,
    /// Header bytes of the frame in progress (prefix framings); `head_len > 0` iff a frame is in
    /// progress.
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    /// Payload length of the frame in progress, once its header is complete.
    want: Option<usize>,
    /// Payload bytes received of the frame in progress (for `Delimited`: the message so far,
    /// none of which is the delimiter).
    buf: Assembly,
    /// The error that killed the stream, returned by every later call.
    error: Option<FrameError>,
    /// The shared budget and this decoder's stake in it (what the frame in progress reserved,
    /// the waker to call when the budget has room again).
    budget: Option<(Arc<AssemblyBudget>, Arc<Stake>)>,
    /// Stopped in front of a frame the budget could not cover.
    waiting: bool,
    /// Frames up to this size need no budget ([`UNBUDGETED_FRAME`]; 0 in unit tests of the
    /// budget itself).
    unbudgeted: usize,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.release();
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use buffstreams_frame::{Codec, Decoder, Framing};
    /// let mut decoder = Decoder::new(Codec::new(Framing::U16Be, 100)?);
    /// let mut got = Vec::new();
    /// for chunk in [&[0u8, 2, b'h'][..], &[b'i']] {
    ///     decoder.decode(chunk, |msg| {
    ///         got.push(msg.to_vec());
    ///         ControlFlow::Continue(())
    ///     })?;
    /// }
    /// assert_eq!(got, [b"hi"]);
    /// # Ok::<(), buffstreams_frame::FrameError>(())
    /// ```
    pub fn new(codec: Codec) -> Decoder {
        Decoder {
            codec,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            want: None,
            buf: Assembly::default(),
            error: None,
            budget: None,
            waiting: false,
            unbudgeted: UNBUDGETED_FRAME,
        }
    }

    /// A decoder whose partly received frames are paid for from `budget`.
    ///
    /// Before assembling a frame of more than 16 KiB that does not lie inside one chunk, the
    /// decoder reserves its announced length (for [`Framing::Delimited`]: the bytes held, as they arrive); it returns
    /// them when the frame is delivered or the decoder dropped. If the budget cannot cover the
    /// frame, [`decode`](Decoder::decode) stops in front of it (returning how far it got),
    /// [`waiting_for_budget`](Decoder::waiting_for_budget) turns true, and `waker` is woken once
    /// memory is returned: feed the rest of the chunk again then. Frames that lie inside one
    /// chunk are delivered from it and need no budget, nor do frames of up to 16 KiB (what a
    /// decoder keeps between frames anyway), so small messages cut at a chunk boundary never
    /// wait behind large ones.
    ///
    /// See [`AssemblyBudget`] for an example.
    pub fn with_budget(codec: Codec, budget: Arc<AssemblyBudget>, waker: Waker) -> Decoder {
        let mut decoder = Decoder::new(codec);
        let stake = budget.stake(waker);
        decoder.budget = Some((budget, stake));
        decoder
    }

    /// Every split frame pays, however small (for unit tests of the budget).
    #[cfg(test)]
    pub(crate) fn strict(mut self) -> Decoder {
        self.unbudgeted = 0;
        self
    }

    /// Whether the last [`decode`](Decoder::decode) stopped because the budget could not cover
    /// the next frame (its waker will be woken when it can).
    #[inline]
    pub fn waiting_for_budget(&self) -> bool {
        self.waiting
    }

    /// Whether the budget (under [`BudgetPolicy::CloseLargest`](crate::BudgetPolicy)) asked
    /// this stream to give up because it holds the most: close it, which returns its memory.
    /// Its waker was woken when that happened.
    #[inline]
    pub fn evicted(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|(_, stake)| stake.evicted())
    }

    /// Bytes this decoder has reserved from its budget now.
    #[inline]
    pub fn reserved(&self) -> usize {
        self.budget
            .as_ref()
            .map_or(0, |(_, stake)| stake.reserved())
    }

    /// Reserves `bytes` more for the frame in progress; false (and waiting) if the budget is
    /// short.
    fn admit(&mut self, bytes: usize) -> bool {
        let Some((budget, stake)) = &self.budget else {
            return true;
        };
        if stake.reserved() == 0 && self.buf.len() + bytes <= self.unbudgeted {
            self.waiting = false;
            return true;
        }
        let admitted =
            bytes == 0 || budget.try_reserve(bytes) || budget.reserve_or_wait(bytes, stake);
        if admitted {
            stake.add(bytes);
        }
        self.waiting = !admitted;
        admitted
    }

    /// Returns what the frame in progress had reserved.
    fn release(&mut self) {
        if let Some((budget, stake)) = &self.budget {
            budget.release(stake.take());
        }
    }

    /// The codec this decoder uses.
    #[inline]
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Feed the next chunk of the stream, calling `on_frame` with every complete payload, in
    /// order.
    ///
    /// Returns how many bytes of `chunk` were consumed: all of them, unless `on_frame` returned
    /// [`ControlFlow::Break`], in which case decoding stops just past that frame and the offset
    /// of its end is returned, or the decoder's budget could not cover the next frame
    /// ([`waiting_for_budget`](Decoder::waiting_for_budget)), in which case it stops in front
    /// of it. Either way, feed the rest of the chunk later.
    ///
    /// An error means the stream is corrupt (frames before the bad one have been delivered);
    /// every later call returns the same error.
    #[inline]
    pub fn decode<F>(&mut self, chunk: &[u8], mut on_frame: F) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.waiting = false;
        let result = match self.codec.framing() {
            Framing::Delimited(delimiter) => self.decode_delimited(delimiter, chunk, &mut on_frame),
            _ => self.decode_prefixed(chunk, &mut on_frame),
        };
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// Payload bytes the frame in progress still needs (0 between frames, while its header is
    /// incomplete, and for [`Framing::Delimited`], whose length is unknown): how much a reader
    /// can hand this decoder next without it holding more than that frame, e.g. to size a
    /// receive when memory is short ([`AssemblyBudget::under_pressure`]).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use buffstreams_frame::{Codec, Decoder, Framing};
    /// let mut decoder = Decoder::new(Codec::new(Framing::U16Be, 100)?);
    /// decoder.decode(&[0, 10, 1, 2, 3], |_| ControlFlow::Continue(()))?;
    /// assert_eq!(decoder.frame_remaining(), 7);
    /// # Ok::<(), buffstreams_frame::FrameError>(())
    /// ```
    #[inline]
    pub fn frame_remaining(&self) -> usize {
        self.want
            .map_or(0, |want| want.saturating_sub(self.buf.len()))
    }

    /// Bytes of an incomplete frame currently held (header bytes included).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.head_len + self.buf.len()
    }

    /// Check the stream may end here: [`FrameError::Truncated`] if part of a frame is held (or
    /// the error that killed the stream).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    /// Forget the delivered frame, keeping a moderate buffer for the next one.
    fn reset(&mut self) {
        self.release();
        self.head_len = 0;
        self.want = None;
        self.buf.clear(KEEP_CAPACITY);
    }
}

#[cfg(test)]
mod tests;
