//! What the engine needs to know about frames, supplied by this layer (the engine knows no
//! codec): where a frame starts in queued bytes ([`FrameIndex`]), how long a prepared frame is
//! and how to copy it into send memory ([`Encoded`]); and the way back from queued frames to
//! the messages they carry.

use bytes::{Bytes, BytesMut};

use crate::engine::handle::{Encoded, FrameIndex};
use crate::frame::{Codec, Frame, Parse};

impl FrameIndex for Codec {
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize {
        let mut start = 0;
        while start < buf.len() {
            match self.parse(&buf[start..]) {
                Ok(Parse::Frame { frame_len, .. }) if frame_len > 0 => {
                    if start + frame_len > offset {
                        return start;
                    }
                    start += frame_len;
                }
                _ => return start,
            }
        }
        start
    }

    fn frames_len(&self, buf: &[u8], n: u32) -> usize {
        let mut start = 0;
        for _ in 0..n {
            match self.parse(&buf[start..]) {
                Ok(Parse::Frame { frame_len, .. }) if frame_len > 0 => start += frame_len,
                _ => return buf.len(),
            }
        }
        start
    }
}

impl Encoded for Frame<'_> {
    #[inline]
    fn len(&self) -> usize {
        Frame::len(self)
    }

    #[inline]
    fn write_to(&self, dst: &mut [u8]) -> usize {
        Frame::write_to(self, dst)
    }
}

/// Splits queued frames back into payloads (to hand unsent messages back to the user).
pub(crate) fn split_frames(codec: &Codec, mut frames: BytesMut) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Ok(Some(payload)) = codec.decode_from(&mut frames) {
        out.push(payload);
    }
    out
}
