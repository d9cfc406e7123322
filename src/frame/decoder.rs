//! Streaming decoder: turns a byte stream received in arbitrary chunks into payloads.

use std::ops::ControlFlow;

use super::{delimited, Codec, FrameError, Framing, Head, MAX_HEADER_LEN};

/// Capacity of the assembly buffer kept after a frame has been delivered; more is freed.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Decodes one connection's byte stream, fed in chunks cut at any byte.
///
/// A frame lying wholly inside a chunk is passed to the callback as a sub-slice of that chunk,
/// without copying. A frame split across chunks is assembled in an internal buffer, allocated
/// once at the announced size after that size has been checked against the maximum. For
/// [`Framing::Delimited`] no byte is scanned twice and no more than the maximum is held.
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
    buf: Vec<u8>,
    /// The error that killed the stream, returned by every later call.
    error: Option<FrameError>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(codec: Codec) -> Decoder {
        Decoder {
            codec,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            want: None,
            buf: Vec::new(),
            error: None,
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
    /// of its end is returned; feed the rest of the chunk later.
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
        let result = match self.codec.framing() {
            Framing::Delimited(delimiter) => self.decode_delimited(delimiter, chunk, &mut on_frame),
            _ => self.decode_prefixed(chunk, &mut on_frame),
        };
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
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

    fn decode_prefixed<F>(&mut self, chunk: &[u8], on_frame: &mut F) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let mut pos = 0;
        if self.head_len > 0 {
            pos = self.continue_prefixed(chunk)?;
            if self.want != Some(self.buf.len()) {
                return Ok(chunk.len());
            }
            let flow = on_frame(&self.buf);
            self.reset();
            if flow.is_break() {
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
                            self.start_payload(rest.get(..header_len).unwrap_or(&[]), payload_len);
                            self.buf
                                .extend_from_slice(rest.get(header_len..).unwrap_or(&[]));
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

    /// Continue the frame in progress with the front of `chunk`; returns the bytes used.
    fn continue_prefixed(&mut self, chunk: &[u8]) -> Result<usize, FrameError> {
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
                        return Ok(take);
                    }
                    Ok(Head::Known {
                        header_len,
                        payload_len,
                    }) => {
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
        self.buf
            .extend_from_slice(chunk.get(used..used + take).unwrap_or(&[]));
        Ok(used + take)
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
        if self.buf.capacity() < payload_len {
            // One allocation of exactly the announced size (the buffer is empty here).
            self.buf = Vec::with_capacity(payload_len);
        }
    }

    /// Forget the delivered frame, keeping a moderate buffer for the next one.
    fn reset(&mut self) {
        self.head_len = 0;
        self.want = None;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    fn decode_delimited<F>(
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
                    let flow = on_frame(&self.buf);
                    self.reset();
                    if flow.is_break() {
                        return Ok(pos);
                    }
                }
                None => {
                    self.hold(chunk);
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
                    self.hold(rest);
                    return Ok(chunk.len());
                }
            }
        }
        Ok(chunk.len())
    }

    /// Append delimiter-free bytes (the total staying within the maximum) to the message in
    /// progress, growing the buffer geometrically but never past the maximum.
    fn hold(&mut self, bytes: &[u8]) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(256)
                .min(self.codec.max_message_size())
                .max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: &Codec, payload: &[u8]) -> Vec<u8> {
        let mut dst = bytes::BytesMut::new();
        codec.encode(payload, &mut dst).unwrap();
        dst.to_vec()
    }

    #[test]
    fn assembly_allocates_once_and_releases_large_buffers() {
        let codec = Codec::new(Framing::U32Be, 1 << 20).unwrap();
        let big = frame(&codec, &vec![7; 1 << 20]);
        let mut d = Decoder::new(codec);
        d.decode(&big[..3], |_| panic!()).unwrap();
        assert_eq!(d.buf.capacity(), 0); // header incomplete: nothing allocated
        d.decode(&big[3..10], |_| panic!()).unwrap();
        assert_eq!(d.buf.capacity(), 1 << 20);
        let mut seen = 0;
        for chunk in big[10..].chunks(4096) {
            d.decode(chunk, |p| {
                seen = p.len();
                ControlFlow::Continue(())
            })
            .unwrap();
            assert!(d.buf.capacity() == 1 << 20 || seen == 1 << 20);
        }
        assert_eq!(seen, 1 << 20);
        assert_eq!(d.buf.capacity(), 0);

        // small frames keep their buffer
        let small = frame(&codec, &[1; 1000]);
        d.decode(&small[..500], |_| panic!()).unwrap();
        d.decode(&small[500..], |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(d.buf.capacity(), 1000);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn rejected_header_allocates_nothing() {
        let codec = Codec::new(Framing::U64Le, 1000).unwrap();
        let mut d = Decoder::new(codec);
        d.decode(&[0xff; 5], |_| panic!()).unwrap();
        assert!(d.decode(&[0xff; 5], |_| panic!()).is_err());
        assert_eq!(d.buf.capacity(), 0);
    }

    #[test]
    fn delimited_capacity_stays_within_max() {
        let codec = Codec::new(Framing::Delimited(b'\n'), 10_000).unwrap();
        let mut d = Decoder::new(codec);
        for _ in 0..99 {
            d.decode(&[b'x'; 101], |_| panic!()).unwrap();
            assert!(d.buf.capacity() <= 10_000);
        }
        assert_eq!(d.buffered(), 9999);
        let mut n = 0;
        d.decode(b"x\n", |p| {
            n = p.len();
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 10_000);
    }
}
