//! The decoder fuzz check, without libFuzzer: `fuzz_targets/decoder.rs` (cargo fuzz, nightly)
//! and `tests/fuzz_decoder.rs` (a corpus replay and a random-input driver, stable) both call
//! [`check`].
//!
//! Feeds arbitrary bytes, cut into arbitrary chunks, through a `Decoder` for every framing.
//!
//! Checks: no panic; the chunked decoder agrees with one-shot `Codec::parse` over the whole
//! input (same payloads, same error); consumed byte counts are consistent; every payload
//! re-encodes to a frame that decodes to it, and for the canonical framings to exactly the
//! bytes consumed.
//!
//! Input layout: byte 0 selects the framing (and delimiter), bytes 1..3 the maximum message
//! size, byte 3 seeds the chunk sizes; the rest is the stream.

use std::ops::ControlFlow;

use buffstreams::frame::{Codec, Decoder, Parse};
use buffstreams::Framing;
use bytes::BytesMut;

/// The framing input byte 0 selects: `sel % 9` picks one, and 8 picks `Delimited(sel * 31)`.
pub fn framing_for(sel: u8) -> Framing {
    match sel % 9 {
        0 => Framing::U16Be,
        1 => Framing::U16Le,
        2 => Framing::U32Be,
        3 => Framing::U32Le,
        4 => Framing::U64Be,
        5 => Framing::U64Le,
        6 => Framing::Varint,
        7 => Framing::BuffStreams,
        _ => Framing::Delimited(sel.wrapping_mul(31)),
    }
}

/// The maximum message size input bytes 1 and 2 select (little-endian `u16`).
pub fn max_for(m0: u8, m1: u8) -> usize {
    usize::from(u16::from_le_bytes([m0, m1]))
}

/// Runs one input; panics (an assertion) on any disagreement.
pub fn check(data: &[u8]) {
    let [sel, m0, m1, seed, stream @ ..] = data else {
        return;
    };
    let framing = framing_for(*sel);
    let max = max_for(*m0, *m1);
    let Ok(codec) = Codec::new(framing, max) else {
        return;
    };

    // Reference: one-shot parsing of the whole stream.
    let mut reference = Vec::new();
    let mut offset = 0;
    let reference_error = loop {
        match codec.parse(&stream[offset..]) {
            Ok(Parse::Frame {
                payload_start,
                payload_len,
                frame_len,
            }) => {
                assert!(frame_len > 0 && payload_start + payload_len <= frame_len);
                let frame = &stream[offset..offset + frame_len];
                reference.push((frame, &frame[payload_start..payload_start + payload_len]));
                offset += frame_len;
            }
            Ok(Parse::Incomplete) => break None,
            Err(e) => break Some(e),
        }
    };

    // Chunked decoding, with chunk sizes from the seed and an occasional Break.
    let mut decoder = Decoder::new(codec);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut error = None;
    let mut state = u32::from(*seed) | 1;
    let mut pos = 0;
    while pos < stream.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (state >> 16) as usize % 97;
        let chunk = &stream[pos..(pos + size).min(stream.len())];
        let break_on = (state >> 8) as usize % 5;
        let before = got.len();
        match decoder.decode(chunk, |p| {
            got.push(p.to_vec());
            if got.len() - before == break_on {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }) {
            Ok(n) => {
                assert!(n <= chunk.len());
                assert!(n == chunk.len() || got.len() - before == break_on);
                pos += n;
            }
            Err(e) => {
                // Dead decoders stay dead, without panicking.
                assert_eq!(
                    decoder.decode(chunk, |_| ControlFlow::Continue(())),
                    Err(e.clone())
                );
                error = Some(e);
                break;
            }
        }
    }
    assert_eq!(error, reference_error);
    assert_eq!(got.len(), reference.len());
    if error.is_none() {
        assert_eq!(decoder.buffered(), stream.len() - offset);
        assert_eq!(decoder.finish().is_ok(), offset == stream.len());
    }

    for (payload, (frame, ref_payload)) in got.iter().zip(&reference) {
        assert_eq!(&payload[..], *ref_payload);
        let mut encoded = BytesMut::new();
        let n = codec
            .encode(payload, &mut encoded)
            .expect("decoded payload re-encodes");
        assert_eq!(n, encoded.len());
        match framing {
            // Varints may be non-minimal on the wire; compare by decoding.
            Framing::Varint | Framing::BuffStreams => {
                let again = codec.decode_from(&mut encoded).expect("re-decodes");
                assert_eq!(again.as_deref(), Some(&payload[..]));
            }
            _ => assert_eq!(&encoded[..], *frame),
        }
    }
}
