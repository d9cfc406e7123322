//! The error type of the frame codec.

use std::fmt;

use crate::framing::Framing;

/// Why a frame could not be encoded or decoded, or a [`Codec`](crate::Codec) not built.
///
/// Every decoding error is a protocol error: the byte stream cannot be resynchronised, so the
/// connection it came from should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced (decoding) or given (encoding) payload length exceeds the maximum message
    /// size. For [`Framing::Delimited`] this means more than `max` bytes arrived without a
    /// delimiter; `len` is then `max + 1`.
    TooLarge {
        /// The announced or given length.
        len: u64,
        /// The codec's maximum message size.
        max: usize,
    },
    /// A varint length prefix did not end within the bytes it may occupy (10 for
    /// [`Framing::Varint`], the header length for [`Framing::BuffStreams`]).
    UnterminatedLength {
        /// How many bytes the varint may occupy.
        max_bytes: usize,
    },
    /// A varint length prefix encodes a value that does not fit in 64 bits.
    LengthOverflow,
    /// A BuffStreams header holds a negative (zigzag-encoded) length.
    NegativeLength {
        /// The decoded length.
        len: i64,
    },
    /// A BuffStreams header has a non-zero byte after the end of its length varint.
    NonZeroPadding,
    /// The payload to encode contains the delimiter byte of [`Framing::Delimited`].
    DelimiterInPayload {
        /// The delimiter byte.
        delimiter: u8,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the incomplete frame that had been received.
        buffered: usize,
    },
    /// The maximum message size cannot be represented by the framing's length prefix.
    MaxTooLarge {
        /// The framing asked for.
        framing: Framing,
        /// The maximum message size asked for.
        max: usize,
    },
    /// The buffer given to [`Codec::encode_with`](crate::Codec::encode_with) is shorter than
    /// the frame.
    BufferTooSmall {
        /// The frame's length.
        needed: usize,
        /// The buffer's length.
        got: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(
                    f,
                    "message length {len} exceeds the maximum message size {max}"
                )
            }
            FrameError::UnterminatedLength { max_bytes } => {
                write!(f, "length prefix not terminated within {max_bytes} bytes")
            }
            FrameError::LengthOverflow => f.write_str("varint length prefix overflows 64 bits"),
            FrameError::NegativeLength { len } => {
                write!(f, "negative message length {len} in BuffStreams header")
            }
            FrameError::NonZeroPadding => {
                f.write_str("non-zero padding after the length varint in BuffStreams header")
            }
            FrameError::DelimiterInPayload { delimiter } => {
                write!(f, "payload contains the delimiter byte {delimiter:#04x}")
            }
            FrameError::Truncated { buffered } => write!(
                f,
                "stream ended inside a frame ({buffered} bytes of it received)"
            ),
            FrameError::MaxTooLarge { framing, max } => write!(
                f,
                "maximum message size {max} cannot be represented by {framing:?} framing"
            ),
            FrameError::BufferTooSmall { needed, got } => {
                write!(
                    f,
                    "frame of {needed} bytes does not fit in a {got}-byte buffer"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
