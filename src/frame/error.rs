//! The error type of the frame codec.

use crate::frame::framing::Framing;

/// Why a frame could not be encoded or decoded, or a [`Codec`](super::Codec) not built.
///
/// Every decoding error is a protocol error: the byte stream cannot be resynchronised, so the
/// connection it came from should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced (decoding) or given (encoding) payload length exceeds the maximum message
    /// size. For [`Framing::Delimited`] this means more than `max` bytes arrived without a
    /// delimiter; `len` is then `max + 1`.
    #[error("message length {len} exceeds the maximum message size {max}")]
    TooLarge {
        /// The announced or given length.
        len: u64,
        /// The codec's maximum message size.
        max: usize,
    },
    /// A varint length prefix did not end within the bytes it may occupy (10 for
    /// [`Framing::Varint`], the header length for [`Framing::BuffStreams`]).
    #[error("length prefix not terminated within {max_bytes} bytes")]
    UnterminatedLength {
        /// How many bytes the varint may occupy.
        max_bytes: usize,
    },
    /// A varint length prefix encodes a value that does not fit in 64 bits.
    #[error("varint length prefix overflows 64 bits")]
    LengthOverflow,
    /// A BuffStreams header holds a negative (zigzag-encoded) length.
    #[error("negative message length {len} in BuffStreams header")]
    NegativeLength {
        /// The decoded length.
        len: i64,
    },
    /// A BuffStreams header has a non-zero byte after the end of its length varint.
    #[error("non-zero padding after the length varint in BuffStreams header")]
    NonZeroPadding,
    /// The payload to encode contains the delimiter byte of [`Framing::Delimited`].
    #[error("payload contains the delimiter byte {delimiter:#04x}")]
    DelimiterInPayload {
        /// The delimiter byte.
        delimiter: u8,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// Bytes of the incomplete frame that had been received.
        buffered: usize,
    },
    /// The maximum message size cannot be represented by the framing's length prefix.
    #[error("maximum message size {max} cannot be represented by {framing:?} framing")]
    MaxTooLarge {
        /// The framing asked for.
        framing: Framing,
        /// The maximum message size asked for.
        max: usize,
    },
    /// The buffer given to [`Codec::encode_with`](crate::frame::Codec::encode_with) is shorter than
    /// the frame.
    #[error("frame of {needed} bytes does not fit in a {got}-byte buffer")]
    BufferTooSmall {
        /// The frame's length.
        needed: usize,
        /// The buffer's length.
        got: usize,
    },
}
