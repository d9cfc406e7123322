//! Unsigned LEB128 varints (the protobuf encoding) and zigzag mapping of signed integers.

use crate::error::FrameError;

/// Longest unsigned LEB128 encoding of a `u64`, in bytes.
pub const MAX_VARINT_LEN: usize = 10;

/// Number of bytes the unsigned LEB128 encoding of `value` takes (1 to 10).
#[inline]
pub const fn encoded_len(value: u64) -> usize {
    // bits needed (at least 1), 7 per byte
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Write `value` as unsigned LEB128 into the front of `out`; returns the bytes written.
#[inline]
pub fn encode(value: u64, out: &mut [u8; MAX_VARINT_LEN]) -> usize {
    encode_into(value, out)
}

/// [`encode`] into the front of a slice, stopping at its end (the caller makes room for
/// [`encoded_len`] bytes): lets a frame's header be written where it goes, byte by byte.
#[inline]
pub(crate) fn encode_into(mut value: u64, out: &mut [u8]) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        n += 1;
        if value < 0x80 {
            *slot = value as u8;
            break;
        }
        *slot = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
    }
    n
}

/// Read an unsigned LEB128 varint from the front of `buf`, looking at no more than `limit`
/// bytes (at most [`MAX_VARINT_LEN`]).
///
/// Returns `Ok(Some((value, bytes_read)))`, or `Ok(None)` if `buf` ends before the varint does
/// (and before `limit` bytes). Errors: [`FrameError::UnterminatedLength`] if `limit` bytes all have
/// their continuation bit set, [`FrameError::LengthOverflow`] if the value does not fit in a `u64`.
/// Non-minimal encodings (such as `80 00` for 0) are accepted, as protobuf does.
#[inline]
pub fn decode(buf: &[u8], limit: usize) -> Result<Option<(u64, usize)>, FrameError> {
    let limit = limit.min(MAX_VARINT_LEN);
    if let Some(&b) = buf.first() {
        if b < 0x80 && limit > 0 {
            return Ok(Some((u64::from(b), 1)));
        }
    }
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(limit).enumerate() {
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            if b & 0x80 != 0 {
                break; // ten continuation bytes: reported below
            }
            return Err(FrameError::LengthOverflow);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= limit {
        Err(FrameError::UnterminatedLength { max_bytes: limit })
    } else {
        Ok(None)
    }
}

/// Zigzag-map a signed integer to an unsigned one (0, -1, 1, -2, … → 0, 1, 2, 3, …), as Go's
/// `binary.PutVarint` and protobuf's `sint64` do.
#[inline]
pub const fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub const fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_len() {
        let mut values = vec![
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u64::MAX,
            u64::MAX >> 1,
        ];
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..64).map(|s| (1u64 << s) - 1));
        for v in values {
            let mut out = [0u8; MAX_VARINT_LEN];
            let n = encode(v, &mut out);
            assert_eq!(n, encoded_len(v), "{v}");
            assert_eq!(decode(&out[..n], 10), Ok(Some((v, n))), "{v}");
            assert_eq!(decode(&out[..n - 1], 10), Ok(None), "{v}");
        }
        assert_eq!(encoded_len(0), 1);
        assert_eq!(encoded_len(127), 1);
        assert_eq!(encoded_len(128), 2);
        assert_eq!(encoded_len(u64::MAX), 10);
    }

    #[test]
    fn known_encodings() {
        let mut out = [0u8; MAX_VARINT_LEN];
        let n = encode(300, &mut out);
        assert_eq!(&out[..n], &[0xac, 0x02]);
        assert_eq!(decode(&[0x80, 0x00], 10), Ok(Some((0, 2))));
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(&[0xff; 11], 10),
            Err(FrameError::UnterminatedLength { max_bytes: 10 })
        );
        assert_eq!(
            decode(&[0xff; 3], 3),
            Err(FrameError::UnterminatedLength { max_bytes: 3 })
        );
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(decode(&over, 10), Err(FrameError::LengthOverflow));
        over[9] = 0x01;
        assert_eq!(decode(&over, 10), Ok(Some((u64::MAX, 10))));
        assert_eq!(decode(&[], 10), Ok(None));
        assert_eq!(
            decode(&[1], 0),
            Err(FrameError::UnterminatedLength { max_bytes: 0 })
        );
    }

    #[test]
    fn zigzag() {
        for (s, u) in [(0i64, 0u64), (-1, 1), (1, 2), (-2, 3), (2, 4)] {
            assert_eq!(zigzag_encode(s), u);
            assert_eq!(zigzag_decode(u), s);
        }
        for s in [i64::MIN, i64::MAX, -12345, 12345] {
            assert_eq!(zigzag_decode(zigzag_encode(s)), s);
        }
    }
}
