//! Decoding delimiter-terminated messages: no byte is scanned twice, and no more than the
//! maximum is held.

use std::ops::ControlFlow;

use super::Decoder;
use crate::delimited;
use crate::error::FrameError;

impl Decoder {
    pub(super) fn decode_delimited<F>(
        &mut self,
        delimiter: u8,
        chunk: &[u8],
        on_frame: &mut F,
    ) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let max = self.codec.max_message_size();
        let mut pos = 0;
        if !self.buf.is_empty() {
            // Only the new bytes are scanned: `buf` holds no delimiter.
            match delimited::scan(chunk, delimiter, self.buf.len(), max)? {
                Some(i) => {
                    self.buf.extend_from_slice(chunk.get(..i).unwrap_or(&[]));
                    pos = i + 1;
                    let flow = on_frame(self.buf.as_slice());
                    self.reset();
                    if flow.is_break() {
                        return Ok(pos);
                    }
                }
                None => {
                    if !self.hold(chunk) {
                        return Ok(0);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        while let Some(rest) = chunk.get(pos..).filter(|rest| !rest.is_empty()) {
            match delimited::scan(rest, delimiter, 0, max)? {
                Some(i) => {
                    pos += i + 1;
                    if on_frame(rest.get(..i).unwrap_or(&[])).is_break() {
                        return Ok(pos);
                    }
                }
                None => {
                    if !self.hold(rest) {
                        return Ok(pos);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        Ok(chunk.len())
    }

    /// Append delimiter-free bytes (the total staying within the maximum) to the message in
    /// progress, growing the buffer geometrically but never past the maximum. False (nothing
    /// appended) if the budget cannot cover them.
    fn hold(&mut self, bytes: &[u8]) -> bool {
        if !self.admit(bytes.len()) {
            return false;
        }
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(256)
                .min(self.codec.max_message_size())
                .max(needed);
            self.buf.reserve_total(target);
        }
        self.buf.extend_from_slice(bytes);
        true
    }
}
