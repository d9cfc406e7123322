//! Delimiter-terminated messages.

use crate::error::FrameError;

/// Position of the first `delimiter` in `buf`.
///
/// Looks at 8 bytes at a time (the classic "has zero byte" trick on `word ^ delimiter`), which is
/// several times faster than a byte loop on messages of a hundred bytes or more.
#[inline]
pub(crate) fn find(buf: &[u8], delimiter: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(delimiter);
    let mut words = buf.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let Some(&bytes) = word.first_chunk::<8>() else {
            break;
        };
        let x = u64::from_le_bytes(bytes) ^ pattern;
        // The lowest set bit marks the first zero byte of x (higher ones may be false positives).
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&b| b == delimiter).map(|i| base + i)
}

/// Look for the end of a message in `buf`, which holds the bytes following `seen` bytes that are
/// already known to contain no delimiter.
///
/// Returns `Ok(Some(i))` if `buf[i]` ends the message, `Ok(None)` if no delimiter is in `buf` and
/// the message may still end in time, [`FrameError::TooLarge`] once more than `max` bytes have
/// been seen without a delimiter. Looks at no more than `max + 1 - seen` bytes of `buf`.
#[inline]
pub(crate) fn scan(
    buf: &[u8],
    delimiter: u8,
    seen: usize,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    // The delimiter of a message of `max` bytes is its byte number max + 1.
    let window = max.saturating_sub(seen).saturating_add(1);
    match find(buf.get(..window).unwrap_or(buf), delimiter) {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= window => Err(too_large(max)),
        None => Ok(None),
    }
}

/// The error for more than `max` bytes without a delimiter.
#[cold]
pub(crate) fn too_large(max: usize) -> FrameError {
    FrameError::TooLarge {
        len: (max as u64).saturating_add(1),
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_matches_naive() {
        let mut buf = [0u8; 40];
        for d in [0u8, 1, 0x0a, 0x7f, 0x80, 0xfe, 0xff] {
            for fill in [0u8, 1, 0x0b, 0x80, 0xff] {
                if fill == d {
                    continue;
                }
                for len in 0..buf.len() {
                    for at in 0..=len {
                        buf.fill(fill);
                        // a second, later occurrence must not be reported first
                        if at < len {
                            buf[at] = d;
                        }
                        if at + 3 < len {
                            buf[at + 3] = d;
                        }
                        let slice = &buf[..len];
                        let naive = slice.iter().position(|&b| b == d);
                        assert_eq!(find(slice, d), naive, "d {d} fill {fill} len {len} at {at}");
                    }
                }
            }
        }
        // bytes just above/below the delimiter (borrow false positives)
        let bytes = [0x0b, 0x0a, 0x09, 0x0a, 0x01, 0x00, 0x0a, 0xff, 0x0a];
        assert_eq!(find(&bytes, 0x0a), Some(1));
        assert_eq!(find(&[0x01, 0x00, 0x01, 0, 0, 0, 0, 0], 0x00), Some(1));
        assert_eq!(find(&[0x02, 0x01, 0x01, 1, 1, 1, 1, 1], 0x00), None);
    }

    #[test]
    fn scan_limits() {
        assert_eq!(scan(b"ab\n", b'\n', 0, 2), Ok(Some(2)));
        assert_eq!(scan(b"abc\n", b'\n', 0, 2), Err(too_large(2)));
        assert_eq!(scan(b"ab", b'\n', 0, 2), Ok(None));
        assert_eq!(scan(b"abc", b'\n', 0, 2), Err(too_large(2)));
        assert_eq!(scan(b"b\n", b'\n', 1, 2), Ok(Some(1)));
        assert_eq!(scan(b"bc", b'\n', 1, 2), Err(too_large(2)));
        assert_eq!(scan(b"\n", b'\n', 0, 0), Ok(Some(0)));
        assert_eq!(scan(b"a", b'\n', 0, 0), Err(too_large(0)));
        assert_eq!(scan(b"", b'\n', 0, 0), Ok(None));
    }
}
