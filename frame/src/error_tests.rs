//! The messages of [`FrameError`], unchanged since they were derived with `thiserror`.

use super::*;

#[test]
fn messages_are_unchanged() {
    let cases = [
        (
            FrameError::TooLarge { len: 9, max: 8 },
            "message length 9 exceeds the maximum message size 8",
        ),
        (
            FrameError::UnterminatedLength { max_bytes: 10 },
            "length prefix not terminated within 10 bytes",
        ),
        (
            FrameError::LengthOverflow,
            "varint length prefix overflows 64 bits",
        ),
        (
            FrameError::NegativeLength { len: -1 },
            "negative message length -1 in BuffStreams header",
        ),
        (
            FrameError::NonZeroPadding,
            "non-zero padding after the length varint in BuffStreams header",
        ),
        (
            FrameError::DelimiterInPayload { delimiter: b'\n' },
            "payload contains the delimiter byte 0x0a",
        ),
        (
            FrameError::Truncated { buffered: 3 },
            "stream ended inside a frame (3 bytes of it received)",
        ),
        (
            FrameError::MaxTooLarge {
                framing: Framing::U16Be,
                max: 70_000,
            },
            "maximum message size 70000 cannot be represented by U16Be framing",
        ),
        (
            FrameError::BufferTooSmall { needed: 9, got: 4 },
            "frame of 9 bytes does not fit in a 4-byte buffer",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
