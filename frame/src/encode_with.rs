//! Encoding in place: the caller writes the payload straight into the frame's memory (a
//! serialiser that knows its encoded length up front, such as prost's `encoded_len`), so no
//! intermediate buffer holds the message.

use crate::codec::Codec;
use crate::delimited;
use crate::error::FrameError;
use crate::framing::Framing;

impl Codec {
    /// Writes one frame of a `len`-byte payload at the start of `dst`: the header, then `fill`
    /// writes the payload into the `len` bytes it is given, then the trailer. Returns the
    /// frame's length, [`frame_len(len)`](Codec::frame_len).
    ///
    /// Errors, before `fill` runs: [`FrameError::TooLarge`], [`FrameError::BufferTooSmall`].
    /// After it: [`FrameError::DelimiterInPayload`] if the payload it wrote contains the
    /// delimiter (the bytes in `dst` are then not a valid frame and must not be sent).
    ///
    /// ```
    /// use buffstreams_frame::{Codec, Framing};
    /// let codec = Codec::new(Framing::U16Be, 1024)?;
    /// let mut out = vec![0u8; codec.frame_len(3).unwrap()];
    /// codec.encode_with(3, &mut out, |payload| payload.copy_from_slice(b"abc"))?;
    /// assert_eq!(out, [0, 3, b'a', b'b', b'c']);
    /// # Ok::<(), buffstreams_frame::FrameError>(())
    /// ```
    #[inline]
    pub fn encode_with(
        &self,
        len: usize,
        dst: &mut [u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, FrameError> {
        self.check_len(len)?;
        let header_len = self.header_len(len);
        let trailer = match self.framing {
            Framing::Delimited(d) => Some(d),
            _ => None,
        };
        let total = header_len + len + usize::from(trailer.is_some());
        let Some(dst) = dst.get_mut(..total) else {
            return Err(FrameError::BufferTooSmall {
                needed: total,
                got: dst.len(),
            });
        };
        // The header goes straight where it belongs: staging it in an array and copying that
        // made the copy's load wait on the array's narrower stores (a store-forwarding stall
        // that cost more than the payload's copy).
        let (header, rest) = dst.split_at_mut(header_len);
        self.write_header(len, header);
        let (payload, tail) = rest.split_at_mut(len);
        fill(payload);
        if let Some(delimiter) = trailer {
            if delimited::find(payload, delimiter).is_some() {
                return Err(FrameError::DelimiterInPayload { delimiter });
            }
            tail[0] = delimiter;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Codec, FrameError, Framing};

    #[test]
    fn same_bytes_as_encode_for_every_framing() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8 + 1).collect();
        for framing in [
            Framing::U16Be,
            Framing::U32Le,
            Framing::U64Be,
            Framing::Varint,
            Framing::BuffStreams,
            Framing::Delimited(0),
        ] {
            let codec = Codec::new(framing, 4096).unwrap();
            let mut expected = bytes::BytesMut::new();
            codec.encode(&payload, &mut expected).unwrap();
            let mut got = vec![0u8; codec.frame_len(payload.len()).unwrap()];
            let n = codec
                .encode_with(payload.len(), &mut got, |p| p.copy_from_slice(&payload))
                .unwrap();
            assert_eq!(n, got.len());
            assert_eq!(got, &expected[..], "{framing:?}");
        }
    }

    #[test]
    fn refuses_oversize_before_fill_and_delimiter_after() {
        let codec = Codec::new(Framing::U32Be, 8).unwrap();
        let mut dst = vec![0u8; 13];
        let err = codec.encode_with(9, &mut dst, |_| panic!("fill must not run"));
        assert!(matches!(err, Err(FrameError::TooLarge { len: 9, .. })));
        let codec = Codec::new(Framing::Delimited(b'\n'), 8).unwrap();
        let mut dst = vec![0u8; 4];
        let err = codec.encode_with(3, &mut dst, |p| p.copy_from_slice(b"a\nb"));
        assert!(matches!(err, Err(FrameError::DelimiterInPayload { .. })));
        let err = codec.encode_with(3, &mut dst[..3], |_| panic!("fill must not run"));
        assert!(matches!(
            err,
            Err(FrameError::BufferTooSmall { needed: 4, got: 3 })
        ));
    }
}
