//! Decoding length-prefixed frames: whole frames borrowed from the chunk (a fast loop for
//! fixed-width headers), a frame split across chunks assembled as its bytes arrive.

use std::ops::ControlFlow;

use super::{Decoder, FIRST_CAPACITY};
use crate::codec::Head;
use crate::error::FrameError;
use crate::fixed::Fixed;
use crate::framing::MAX_HEADER_LEN;

impl Decoder {
    pub(super) fn decode_prefixed<F>(
        &mut self,
        chunk: &[u8],
        on_frame: &mut F,
    ) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let mut pos = 0;
        if self.head_len > 0 {
            let Some(used) = self.continue_prefixed(chunk)? else {
                return Ok(0); // waiting for the budget
            };
            pos = used;
            if self.want != Some(self.buf.len()) {
                return Ok(chunk.len());
            }
            let flow = on_frame(self.buf.as_slice());
            self.reset();
            if flow.is_break() {
                return Ok(pos);
            }
        }
        if let Some(fixed) = self.codec.framing().fixed() {
            // Every frame that lies whole in the chunk, with one dispatch on the header's width
            // per chunk instead of per frame; the general loop below takes the tail (a split
            // frame, or a length over the maximum, which it reports).
            let max = self.codec.max_message_size();
            let (used, stopped) = match fixed {
                Fixed::U16Be => whole_frames(chunk, pos, max, u16::from_be_bytes, on_frame),
                Fixed::U16Le => whole_frames(chunk, pos, max, u16::from_le_bytes, on_frame),
                Fixed::U32Be => whole_frames(chunk, pos, max, u32::from_be_bytes, on_frame),
                Fixed::U32Le => whole_frames(chunk, pos, max, u32::from_le_bytes, on_frame),
                Fixed::U64Be => whole_frames(chunk, pos, max, u64::from_be_bytes, on_frame),
                Fixed::U64Le => whole_frames(chunk, pos, max, u64::from_le_bytes, on_frame),
            };
            pos = used;
            if stopped {
                return Ok(pos);
            }
        }
        while let Some(rest) = chunk.get(pos..).filter(|rest| !rest.is_empty()) {
            match self.codec.head(rest)? {
                Head::Known {
                    header_len,
                    payload_len,
                } => {
                    let end = header_len + payload_len; // both bounded, cannot overflow
                    match rest.get(header_len..end) {
                        Some(payload) => {
                            pos += end;
                            if on_frame(payload).is_break() {
                                return Ok(pos);
                            }
                        }
                        None => {
                            if !self.admit(payload_len) {
                                return Ok(pos);
                            }
                            self.start_payload(rest.get(..header_len).unwrap_or(&[]), payload_len);
                            self.append(rest.get(header_len..).unwrap_or(&[]));
                            return Ok(chunk.len());
                        }
                    }
                }
                Head::Incomplete => {
                    // fewer than MAX_HEADER_LEN bytes
                    self.head_len = rest.len().min(MAX_HEADER_LEN);
                    if let (Some(dst), Some(src)) = (
                        self.head.get_mut(..self.head_len),
                        rest.get(..self.head_len),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        Ok(chunk.len())
    }

    /// Continue the frame in progress with the front of `chunk`; returns the bytes used, or
    /// `None` if its header is now complete but the budget cannot cover it (nothing of `chunk`
    /// is used then).
    fn continue_prefixed(&mut self, chunk: &[u8]) -> Result<Option<usize>, FrameError> {
        let mut used = 0;
        let want = match self.want {
            Some(want) => want,
            None => {
                // The header is incomplete: complete it from the chunk.
                let old = self.head_len;
                let take = chunk.len().min(MAX_HEADER_LEN - old);
                if let (Some(dst), Some(src)) =
                    (self.head.get_mut(old..old + take), chunk.get(..take))
                {
                    dst.copy_from_slice(src);
                }
                let head = self.head.get(..old + take).unwrap_or(&[]);
                match self.codec.head(head) {
                    Ok(Head::Incomplete) => {
                        // `take` is all of the chunk: a full MAX_HEADER_LEN is never incomplete
                        self.head_len = old + take;
                        return Ok(Some(take));
                    }
                    Ok(Head::Known {
                        header_len,
                        payload_len,
                    }) => {
                        if !self.admit(payload_len) {
                            return Ok(None);
                        }
                        used = header_len.saturating_sub(old);
                        self.head_len = header_len;
                        self.start_payload(&[], payload_len);
                        payload_len
                    }
                    Err(error) => {
                        self.head_len = old + take;
                        return Err(error);
                    }
                }
            }
        };
        let take = (want - self.buf.len()).min(chunk.len() - used);
        self.append(chunk.get(used..used + take).unwrap_or(&[]));
        Ok(Some(used + take))
    }

    /// Appends payload bytes of the frame in progress (never more than it announced), growing
    /// the buffer by doubling but never past the announced length.
    fn append(&mut self, bytes: &[u8]) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let want = self.want.unwrap_or(needed);
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(FIRST_CAPACITY)
                .min(want)
                .max(needed);
            self.buf.reserve_total(target);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Begin assembling a frame whose header (`head`, unless already stored) announced
    /// `payload_len` bytes, already checked against the maximum.
    fn start_payload(&mut self, head: &[u8], payload_len: usize) {
        if !head.is_empty() {
            self.head_len = head.len();
            if let Some(dst) = self.head.get_mut(..head.len()) {
                dst.copy_from_slice(head);
            }
        }
        self.want = Some(payload_len);
    }
}

/// Delivers the frames with an `N`-byte length prefix (read by `len_of`) that lie whole in
/// `chunk` from `pos` on, stopping in front of the first that does not (or whose length is over
/// `max`: the caller's general path reports it). Returns where it stopped and whether
/// `on_frame` asked to stop (then just past that frame).
#[inline(always)]
fn whole_frames<const N: usize, L: Into<u64>, F>(
    chunk: &[u8],
    mut pos: usize,
    max: usize,
    len_of: fn([u8; N]) -> L,
    on_frame: &mut F,
) -> (usize, bool)
where
    F: FnMut(&[u8]) -> ControlFlow<()>,
{
    while let Some(head) = chunk.get(pos..).and_then(|rest| rest.first_chunk::<N>()) {
        let len: u64 = len_of(*head).into();
        if len > max as u64 {
            break;
        }
        let start = pos + N;
        // `len <= max`, which fits in memory, so this cannot overflow.
        let end = start + len as usize;
        let Some(payload) = chunk.get(start..end) else {
            break;
        };
        pos = end;
        if on_frame(payload).is_break() {
            return (pos, true);
        }
    }
    (pos, false)
}
