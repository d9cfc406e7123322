//! The wire format every contender speaks: a 4-byte big-endian length, then the payload
//! (buffstreams' default framing, and tokio-util `LengthDelimitedCodec`'s default).

/// Bytes of the length prefix.
pub const HEADER: usize = 4;

/// Largest frame a server accepts; anything longer is a protocol error, not an allocation.
pub const MAX_FRAME: usize = 16 << 20;

/// Read and write buffer size used by every contender (64 KiB).
pub const BUF: usize = 64 << 10;

/// A payload of `size` bytes (a repeating pattern, so nothing compresses it away).
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// The 4-byte prefix for a payload of `len` bytes.
pub fn header(len: usize) -> [u8; HEADER] {
    u32::try_from(len)
        .expect("payload fits a u32 length")
        .to_be_bytes()
}

/// One complete frame: prefix + payload.
pub fn frame(size: usize) -> Vec<u8> {
    let mut out = header(size).to_vec();
    out.extend_from_slice(&payload(size));
    out
}

/// Whole frames of `size`-byte payloads, back to back, about `target` bytes in all (at least
/// one frame).
pub fn frames(size: usize, target: usize) -> Vec<u8> {
    let one = frame(size);
    let n = (target / one.len()).max(1);
    let mut out = Vec::with_capacity(n * one.len());
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

/// A byte count from the environment variable `name` (for the bench's diagnostic knobs).
pub fn env_bytes(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok().filter(|&n| n > 0)
}
