//! The Go BuffStreams 2.x header.
//!
//! For a maximum message size `M` (0 meaning 4096), every frame starts with a header of
//! `H = ceil(bitlen(M) / 8) + 1` bytes holding the payload length zigzag-encoded as a LEB128
//! varint (Go's `binary.PutVarint`), followed by zero bytes up to `H`.
//!
//! The Go reader trusts the header; this one rejects a negative length, a length above `M`, a
//! varint that does not end within `H` bytes and non-zero padding.

use crate::error::FrameError;
use crate::framing::MAX_HEADER_LEN;
use crate::varint;

/// Maximum message size the Go library uses when it is configured with 0.
pub(crate) const GO_DEFAULT_MAX: usize = 4096;

/// Header length `H` for the (non-zero) maximum message size `max`, or `None` if that header
/// cannot hold the varint of `zigzag(max)` — the Go library then writes headers its own reader
/// misparses (it happens for `max` in `2^55..2^56` and from `2^62` on).
pub(crate) fn header_len(max: usize) -> Option<usize> {
    let bits = (usize::BITS - max.leading_zeros()) as usize;
    let h = bits.div_ceil(8) + 1;
    // Go's int is 64 bits: the length must be a non-negative i64 and zigzag(max) = 2 * max.
    let max = i64::try_from(max).ok()?;
    let needed = varint::encoded_len(varint::zigzag_encode(max));
    (needed <= h && h <= MAX_HEADER_LEN).then_some(h)
}

/// Parse the header at the front of `buf` for header length `h` and maximum `max`.
///
/// Returns `Ok(Some(len))` once all `h` header bytes are there and valid, `Ok(None)` if more
/// bytes are needed. Errors are reported as soon as the bytes that prove them have arrived.
#[inline]
pub(crate) fn read(buf: &[u8], h: usize, max: usize) -> Result<Option<usize>, FrameError> {
    let Some((z, n)) = varint::decode(buf, h)? else {
        return Ok(None);
    };
    let len = varint::zigzag_decode(z);
    if len < 0 {
        return Err(FrameError::NegativeLength { len });
    }
    let len = len as u64; // non-negative
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let padding = buf.get(n..h.min(buf.len())).unwrap_or(&[]);
    if padding.iter().any(|&b| b != 0) {
        return Err(FrameError::NonZeroPadding);
    }
    if buf.len() < h {
        return Ok(None);
    }
    // len <= max, which is a usize
    Ok(Some(len as usize))
}

/// Write the header for a payload of `len` bytes (already checked against the maximum) into
/// the front of `out` (at least `h` bytes); returns `h`.
#[inline]
pub(crate) fn write(len: usize, h: usize, out: &mut [u8]) -> usize {
    let Some(out) = out.get_mut(..h) else {
        return h;
    };
    // len <= max <= i64::MAX (checked by `header_len`)
    let n = varint::encode_into(varint::zigzag_encode(len as i64), out);
    debug_assert!(n <= h);
    // zero after the varint: that is the padding
    if let Some(padding) = out.get_mut(n..) {
        padding.fill(0);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(1), Some(2));
        assert_eq!(header_len(255), Some(2));
        assert_eq!(header_len(256), Some(3));
        assert_eq!(header_len(4096), Some(3));
        assert_eq!(header_len(65535), Some(3));
        assert_eq!(header_len(65536), Some(4));
        assert_eq!(header_len(1 << 20), Some(4));
        assert_eq!(header_len((1 << 55) - 1), Some(8));
        assert_eq!(header_len(1 << 55), None);
        assert_eq!(header_len((1 << 56) - 1), None);
        assert_eq!(header_len(1 << 56), Some(9));
        assert_eq!(header_len((1 << 62) - 1), Some(9));
        assert_eq!(header_len(1 << 62), None);
        assert_eq!(header_len(usize::MAX), None);
    }

    #[test]
    fn read_checks() {
        assert_eq!(read(&[0x04, 0, 0], 3, 4096), Ok(Some(2)));
        assert_eq!(read(&[0x04, 0], 3, 4096), Ok(None));
        assert_eq!(read(&[0x80], 3, 4096), Ok(None));
        assert_eq!(read(&[0x04, 1], 3, 4096), Err(FrameError::NonZeroPadding));
        assert_eq!(
            read(&[0x01], 3, 4096),
            Err(FrameError::NegativeLength { len: -1 })
        );
        assert_eq!(
            read(&[0x80, 0x80, 0x80], 3, 4096),
            Err(FrameError::UnterminatedLength { max_bytes: 3 })
        );
        assert_eq!(
            read(&[0x82, 0x40], 3, 4096),
            Err(FrameError::TooLarge {
                len: 4097,
                max: 4096
            })
        );
    }
}
