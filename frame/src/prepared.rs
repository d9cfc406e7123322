//! [`Frame`]: one message checked and framed by [`Codec::prepare`](crate::Codec::prepare), ready to be written.

use crate::framing::MAX_HEADER_LEN;

/// One checked frame, ready to be written: header, payload, trailer (see [`Codec::prepare`](crate::Codec::prepare)).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub(super) header: [u8; MAX_HEADER_LEN],
    pub(super) header_len: u8,
    pub(super) trailer: [u8; 1],
    pub(super) trailer_len: u8,
    pub(super) payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame takes on the wire.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len() + usize::from(self.trailer_len)
    }

    /// The header bytes (empty for [`Framing::Delimited`](crate::Framing::Delimited)).
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len)]
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// The bytes after the payload (the delimiter, or nothing).
    #[inline]
    pub fn trailer(&self) -> &[u8] {
        &self.trailer[..usize::from(self.trailer_len)]
    }

    /// Writes the frame into the first [`len`](Frame::len) bytes of `dst`; returns that length.
    /// Writes nothing and returns 0 if `dst` is shorter.
    #[inline]
    pub fn write_to(&self, dst: &mut [u8]) -> usize {
        let len = self.len();
        let Some(dst) = dst.get_mut(..len) else {
            return 0;
        };
        let h = usize::from(self.header_len);
        if len >= MAX_HEADER_LEN {
            // One fixed-size copy instead of a variable-length one (a call to memcpy), inside
            // this frame's bytes; the payload overwrites what lies past the header.
            dst[..MAX_HEADER_LEN].copy_from_slice(&self.header);
        } else {
            dst[..h].copy_from_slice(self.header());
        }
        dst[h..h + self.payload.len()].copy_from_slice(self.payload);
        if self.trailer_len > 0 {
            dst[len - 1] = self.trailer[0];
        }
        len
    }
}
