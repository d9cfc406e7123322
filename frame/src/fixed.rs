//! Fixed-width length prefixes: u16, u32 and u64, big- or little-endian.

/// Width and byte order of a fixed length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fixed {
    U16Be,
    U16Le,
    U32Be,
    U32Le,
    U64Be,
    U64Le,
}

impl Fixed {
    /// Header length in bytes.
    #[inline]
    pub(crate) const fn len(self) -> usize {
        match self {
            Fixed::U16Be | Fixed::U16Le => 2,
            Fixed::U32Be | Fixed::U32Le => 4,
            Fixed::U64Be | Fixed::U64Le => 8,
        }
    }

    /// Largest length the prefix can carry.
    pub(crate) const fn max_value(self) -> u64 {
        match self {
            Fixed::U16Be | Fixed::U16Le => u16::MAX as u64,
            Fixed::U32Be | Fixed::U32Le => u32::MAX as u64,
            Fixed::U64Be | Fixed::U64Le => u64::MAX,
        }
    }

    /// Read the length from the front of `buf`, or `None` if fewer than [`Fixed::len`] bytes.
    #[inline]
    pub(crate) fn read(self, buf: &[u8]) -> Option<u64> {
        Some(match self {
            Fixed::U16Be => u64::from(u16::from_be_bytes(*buf.first_chunk()?)),
            Fixed::U16Le => u64::from(u16::from_le_bytes(*buf.first_chunk()?)),
            Fixed::U32Be => u64::from(u32::from_be_bytes(*buf.first_chunk()?)),
            Fixed::U32Le => u64::from(u32::from_le_bytes(*buf.first_chunk()?)),
            Fixed::U64Be => u64::from_be_bytes(*buf.first_chunk()?),
            Fixed::U64Le => u64::from_le_bytes(*buf.first_chunk()?),
        })
    }

    /// Write `len` (already checked to be at most [`Fixed::max_value`]) into the front of `out`;
    /// returns the header length.
    #[inline]
    pub(crate) fn write(self, len: u64, out: &mut [u8]) -> usize {
        // The casts cannot truncate: the codec's maximum fits the prefix width.
        match self {
            Fixed::U16Be => put(out, (len as u16).to_be_bytes()),
            Fixed::U16Le => put(out, (len as u16).to_le_bytes()),
            Fixed::U32Be => put(out, (len as u32).to_be_bytes()),
            Fixed::U32Le => put(out, (len as u32).to_le_bytes()),
            Fixed::U64Be => put(out, len.to_be_bytes()),
            Fixed::U64Le => put(out, len.to_le_bytes()),
        }
    }
}

#[inline]
fn put<const N: usize>(out: &mut [u8], bytes: [u8; N]) -> usize {
    if let Some(dst) = out.get_mut(..N) {
        dst.copy_from_slice(&bytes);
    }
    N
}

/// A codec whose framing is a fixed-width prefix, seen from a writer's hot loop: the frame of a
/// payload is its length plus a constant, and writing it takes one store and one copy with no
/// dispatch on the framing (see [`Codec::fixed_header`](crate::Codec::fixed_header)). Plumbing
/// for `buffstreams`' `BufferedWriter`, not a stable API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct FixedHeader {
    pub(crate) fixed: Fixed,
    pub(crate) max: usize,
}

impl FixedHeader {
    /// Bytes the frame of a `len`-byte payload takes, or `None` if `len` is over the maximum.
    #[inline]
    pub fn frame_len(&self, len: usize) -> Option<usize> {
        (len <= self.max).then(|| len + self.fixed.len())
    }

    /// Writes the frame of `payload` into `dst`, which is exactly
    /// [`frame_len`](FixedHeader::frame_len) bytes.
    ///
    /// # Panics
    ///
    /// If `dst` is not exactly that long.
    #[inline]
    pub fn write(&self, payload: &[u8], dst: &mut [u8]) {
        let (head, body) = dst.split_at_mut(self.fixed.len());
        self.fixed.write(payload.len() as u64, head);
        body.copy_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header_frames_like_the_codec() {
        use crate::{Codec, Framing};
        for framing in [
            Framing::U16Be,
            Framing::U16Le,
            Framing::U32Be,
            Framing::U32Le,
            Framing::U64Be,
            Framing::U64Le,
        ] {
            let codec = Codec::new(framing, 300).unwrap();
            let header = codec.fixed_header().unwrap();
            for len in [0, 1, 255, 256, 300] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut expected = bytes::BytesMut::new();
                codec.encode(&payload, &mut expected).unwrap();
                let n = header.frame_len(len).unwrap();
                let mut got = vec![0xAA; n];
                header.write(&payload, &mut got);
                assert_eq!(got, expected, "{framing:?} {len}");
            }
            assert_eq!(header.frame_len(301), None, "{framing:?}: over the maximum");
        }
        assert!(Codec::new(Framing::Varint, 300)
            .unwrap()
            .fixed_header()
            .is_none());
    }

    #[test]
    fn read_write() {
        for f in [
            Fixed::U16Be,
            Fixed::U16Le,
            Fixed::U32Be,
            Fixed::U32Le,
            Fixed::U64Be,
            Fixed::U64Le,
        ] {
            let mut out = [0u8; crate::MAX_HEADER_LEN];
            for v in [0, 1, 0x1234, f.max_value()] {
                let n = f.write(v, &mut out);
                assert_eq!(n, f.len());
                assert_eq!(f.read(&out[..n]), Some(v));
                assert_eq!(f.read(&out[..n - 1]), None);
            }
        }
        let mut out = [0u8; crate::MAX_HEADER_LEN];
        Fixed::U32Be.write(0x0102_0304, &mut out);
        assert_eq!(out[..4], [1, 2, 3, 4]);
        Fixed::U32Le.write(0x0102_0304, &mut out);
        assert_eq!(out[..4], [4, 3, 2, 1]);
    }
}
