//! Tests of the sans-I/O frame codec: round trips, chunking, limits, malformed input and the
//! Go BuffStreams 2.x vectors.

use std::ops::ControlFlow;

use buffstreams::frame::{Codec, Decoder, Parse, MAX_HEADER_LEN};
use buffstreams::{FrameError, Framing};
use bytes::BytesMut;
use proptest::prelude::*;

const ALL: [Framing; 10] = [
    Framing::U16Be,
    Framing::U16Le,
    Framing::U32Be,
    Framing::U32Le,
    Framing::U64Be,
    Framing::U64Le,
    Framing::Varint,
    Framing::BuffStreams,
    Framing::Delimited(b'\n'),
    Framing::Delimited(0),
];

fn codec(framing: Framing, max: usize) -> Codec {
    Codec::new(framing, max).expect("valid codec")
}

/// A payload of `len` bytes that never contains the delimiter of `framing`.
fn payload(framing: Framing, len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| fix_byte(framing, (i.wrapping_mul(31) ^ seed) as u8))
        .collect()
}

fn fix_byte(framing: Framing, b: u8) -> u8 {
    match framing {
        Framing::Delimited(d) if b == d => d.wrapping_add(1),
        _ => b,
    }
}

fn encode_all(codec: &Codec, msgs: &[Vec<u8>]) -> BytesMut {
    let mut wire = BytesMut::new();
    for m in msgs {
        let n = codec.encode(m, &mut wire).expect("encode");
        assert_eq!(Some(n), codec.frame_len(m.len()));
    }
    wire
}

/// Feed `chunks` through a fresh decoder, returning the payloads; the stream must end cleanly.
fn decode_chunks<'a>(codec: Codec, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut decoder = Decoder::new(codec);
    let mut out = Vec::new();
    for chunk in chunks {
        let n = decoder
            .decode(chunk, |p| {
                out.push(p.to_vec());
                ControlFlow::Continue(())
            })
            .expect("decode");
        assert_eq!(n, chunk.len());
    }
    decoder.finish().expect("clean end");
    assert_eq!(decoder.buffered(), 0);
    out
}

/// A mixed set of messages for `max`: empty, small, exactly max, and sizes around varint steps.
fn sample_messages(framing: Framing, max: usize) -> Vec<Vec<u8>> {
    let mut lens = vec![0, 1, 2, 5, max, 0, max / 2, 127, 128, 129, 300, max, 3];
    lens.retain(|&l| l <= max);
    lens.iter()
        .enumerate()
        .map(|(i, &l)| payload(framing, l, i))
        .collect()
}

#[test]
fn every_framing_round_trips() {
    for framing in ALL {
        for max in [0usize, 1, 300, 65_535, 70_000] {
            let Ok(c) = Codec::new(framing, max) else {
                assert!(matches!(framing, Framing::U16Be | Framing::U16Le));
                continue;
            };
            let msgs = sample_messages(framing, c.max_message_size());
            let wire = encode_all(&c, &msgs);
            assert_eq!(decode_chunks(c, [&wire[..]]), msgs, "{framing:?} max {max}");
            // decode_from
            let mut src = wire.clone();
            let mut got = Vec::new();
            while let Some(p) = c.decode_from(&mut src).expect("decode_from") {
                got.push(p.to_vec());
            }
            assert!(src.is_empty());
            assert_eq!(got, msgs, "{framing:?} max {max}");
            // parse
            let mut rest = &wire[..];
            let mut got = Vec::new();
            while !rest.is_empty() {
                match c.parse(rest).expect("parse") {
                    Parse::Frame {
                        payload_start,
                        payload_len,
                        frame_len,
                    } => {
                        got.push(rest[payload_start..payload_start + payload_len].to_vec());
                        rest = &rest[frame_len..];
                    }
                    Parse::Incomplete => panic!("incomplete"),
                }
            }
            assert_eq!(got, msgs);
        }
    }
}

#[test]
fn known_encodings() {
    let mut dst = BytesMut::new();
    codec(Framing::U16Be, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::U16Le, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::U32Be, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::U32Le, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::U64Be, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::U64Le, 100).encode(b"ab", &mut dst).unwrap();
    codec(Framing::Varint, 1000)
        .encode(&[7; 300], &mut dst)
        .unwrap();
    codec(Framing::Delimited(b'\n'), 100)
        .encode(b"ab", &mut dst)
        .unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(b"\x00\x02ab\x02\x00ab\x00\x00\x00\x02ab\x02\x00\x00\x00ab");
    want.extend_from_slice(b"\x00\x00\x00\x00\x00\x00\x00\x02ab\x02\x00\x00\x00\x00\x00\x00\x00ab");
    want.extend_from_slice(&[0xac, 0x02]);
    want.extend_from_slice(&[7; 300]);
    want.extend_from_slice(b"ab\n");
    assert_eq!(&dst[..], &want[..]);
}

#[test]
fn overheads() {
    assert_eq!(codec(Framing::U16Be, 10).max_overhead(), 2);
    assert_eq!(codec(Framing::U32Le, 10).max_overhead(), 4);
    assert_eq!(codec(Framing::U64Be, 10).max_overhead(), 8);
    assert_eq!(codec(Framing::Varint, 127).max_overhead(), 1);
    assert_eq!(codec(Framing::Varint, 128).max_overhead(), 2);
    assert_eq!(codec(Framing::Varint, usize::MAX).max_overhead(), 9);
    assert_eq!(codec(Framing::Delimited(0), 10).max_overhead(), 1);
    assert_eq!(codec(Framing::BuffStreams, 0).max_overhead(), 3);
    assert_eq!(codec(Framing::BuffStreams, 0).max_message_size(), 4096);
    assert_eq!(codec(Framing::BuffStreams, 1 << 20).max_overhead(), 4);
    assert!(codec(Framing::U64Be, usize::MAX).max_message_size() <= isize::MAX as usize);
    assert_eq!(Framing::default(), Framing::U32Be);
    for framing in ALL {
        let c = codec(framing, 1000);
        assert!(c.max_overhead() <= MAX_HEADER_LEN);
        assert_eq!(c.framing(), framing);
    }
}

#[test]
fn new_rejects_unrepresentable_max() {
    let err = Codec::new(Framing::U16Be, 70_000).unwrap_err();
    assert_eq!(
        err,
        FrameError::MaxTooLarge {
            framing: Framing::U16Be,
            max: 70_000
        }
    );
    assert!(Codec::new(Framing::U16Le, 65_536).is_err());
    assert!(Codec::new(Framing::U16Le, 65_535).is_ok());
    #[cfg(target_pointer_width = "64")]
    {
        assert!(Codec::new(Framing::U32Be, u32::MAX as usize + 1).is_err());
        assert!(Codec::new(Framing::U32Le, u32::MAX as usize).is_ok());
        assert!(Codec::new(Framing::U64Be, usize::MAX).is_ok());
        // The Go header of H = ceil(bitlen(M)/8)+1 bytes cannot hold zigzag(M) for these:
        for bad in [1usize << 55, (1 << 56) - 1, 1 << 62, usize::MAX] {
            assert_eq!(
                Codec::new(Framing::BuffStreams, bad),
                Err(FrameError::MaxTooLarge {
                    framing: Framing::BuffStreams,
                    max: bad
                }),
                "{bad}"
            );
        }
        for good in [(1usize << 55) - 1, 1 << 56, (1 << 62) - 1] {
            let c = codec(Framing::BuffStreams, good);
            let mut h = [0; MAX_HEADER_LEN];
            let n = c.encode_header(good, &mut h).unwrap();
            assert_eq!(n, c.max_overhead());
            let mut hdr = h[..n].to_vec();
            assert_eq!(c.parse(&hdr), Ok(Parse::Incomplete));
            // one more byte of payload than announced is still just the start of the frame
            hdr.push(1);
            assert_eq!(c.parse(&hdr), Ok(Parse::Incomplete));
        }
    }
    assert!(Codec::new(Framing::BuffStreams, 1).is_ok());
    assert!(Codec::new(Framing::Varint, 0).is_ok());
}

#[test]
fn go_buffstreams_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/buffstreams-go-v2.json"
    ))
    .expect("vectors file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let vectors = json["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 30);
    for v in vectors {
        let max = v["max_message_size"].as_u64().unwrap() as usize;
        let len = v["payload_len"].as_u64().unwrap() as usize;
        let header_len = v["header_len"].as_u64().unwrap() as usize;
        let header = hex(v["header_hex"].as_str().unwrap());
        assert_eq!(header.len(), header_len);
        let c = codec(Framing::BuffStreams, max);
        assert_eq!(c.max_overhead(), header_len, "{v}");

        let mut out = [0xaa; MAX_HEADER_LEN];
        let n = c.encode_header(len, &mut out).unwrap();
        assert_eq!(&out[..n], &header[..], "{v}");

        let body = payload(Framing::BuffStreams, len, len);
        let mut wire = BytesMut::new();
        c.encode(&body, &mut wire).unwrap();
        assert_eq!(&wire[..header_len], &header[..]);

        let mut frame = header.clone();
        frame.extend_from_slice(&body);
        assert_eq!(
            c.parse(&frame),
            Ok(Parse::Frame {
                payload_start: header_len,
                payload_len: len,
                frame_len: header_len + len
            })
        );
        assert_eq!(decode_chunks(c, [&frame[..]]), std::slice::from_ref(&body));
        let split = header_len - 1;
        assert_eq!(
            decode_chunks(c, [&frame[..split], &frame[split..]]),
            std::slice::from_ref(&body)
        );
        let mut src = BytesMut::from(&frame[..]);
        assert_eq!(c.decode_from(&mut src).unwrap().as_deref(), Some(&body[..]));
    }

    let ex = &json["example_stream"];
    let max = ex["max_message_size"].as_u64().unwrap() as usize;
    let stream = hex(ex["stream_hex"].as_str().unwrap());
    let msgs: Vec<Vec<u8>> = ex["messages_utf8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().as_bytes().to_vec())
        .collect();
    assert_eq!(max, 4096);
    for c in [
        codec(Framing::BuffStreams, max),
        codec(Framing::BuffStreams, 0),
    ] {
        assert_eq!(&encode_all(&c, &msgs)[..], &stream[..]);
        assert_eq!(decode_chunks(c, [&stream[..]]), msgs);
        assert_eq!(decode_chunks(c, stream.chunks(1)), msgs);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn split_at_every_offset() {
    for framing in ALL {
        let c = codec(framing, 300);
        let msgs = sample_messages(framing, 300);
        let wire = encode_all(&c, &msgs);
        for k in 0..=wire.len() {
            assert_eq!(
                decode_chunks(c, [&wire[..k], &wire[k..]]),
                msgs,
                "{framing:?} split at {k}"
            );
        }
        assert_eq!(decode_chunks(c, wire.chunks(1)), msgs, "{framing:?}");
        // three chunks: every header byte boundary combined with a cut in the next frame
        for k in 0..wire.len().min(40) {
            let j = (k + 7).min(wire.len());
            assert_eq!(
                decode_chunks(c, [&wire[..k], &wire[k..j], &wire[j..]]),
                msgs,
                "{framing:?} split at {k},{j}"
            );
        }
    }
}

#[test]
fn many_frames_per_chunk_are_borrowed_from_it() {
    for framing in ALL {
        let c = codec(framing, 4096);
        let msgs: Vec<Vec<u8>> = (0..590).map(|i| payload(framing, 110, i)).collect();
        let wire = encode_all(&c, &msgs);
        let range = wire.as_ptr_range();
        let mut decoder = Decoder::new(c);
        let mut got = Vec::new();
        let n = decoder
            .decode(&wire, |p| {
                let r = p.as_ptr_range();
                assert!(range.start <= r.start && r.end <= range.end, "copied");
                got.push(p.to_vec());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(got, msgs);
        decoder.finish().unwrap();

        // Cut into 64 KiB-ish chunks at odd places: whole frames still borrowed, all arrive.
        let got = decode_chunks(c, wire.chunks(4093));
        assert_eq!(got, msgs);
    }
}

#[test]
fn over_max_rejected_on_encode() {
    for framing in ALL {
        let c = codec(framing, 100);
        let mut dst = BytesMut::from(&b"keep"[..]);
        let big = payload(framing, 101, 0);
        assert_eq!(
            c.encode(&big, &mut dst),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert_eq!(&dst[..], b"keep");
        let mut h = [0; MAX_HEADER_LEN];
        assert_eq!(
            c.encode_header(101, &mut h),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert!(c.encode(&big[..100], &mut dst).is_ok());
    }
    let c = codec(Framing::U32Be, 0);
    let mut dst = BytesMut::new();
    assert_eq!(c.encode(b"", &mut dst), Ok(4));
    assert!(c.encode(b"x", &mut dst).is_err());
    assert_eq!(decode_chunks(c, [&dst[..]]), [Vec::<u8>::new()]);
}

#[test]
fn over_max_rejected_from_header_alone() {
    let max = 60_000;
    for framing in ALL {
        if let Framing::Delimited(_) = framing {
            continue;
        }
        // A header announcing max + 1 (written by a codec allowing more).
        let big = codec(framing, max + 1);
        let mut h = [0; MAX_HEADER_LEN];
        let mut n = big.encode_header(max + 1, &mut h).unwrap();
        if framing == Framing::BuffStreams {
            // same header length for max and max + 1 here
            assert_eq!(n, codec(framing, max).max_overhead());
        }
        let header = &h[..n];
        let c = codec(framing, max);
        let want = FrameError::TooLarge {
            len: max as u64 + 1,
            max,
        };
        assert_eq!(c.parse(header), Err(want.clone()), "{framing:?}");
        let mut src = BytesMut::from(header);
        assert_eq!(c.decode_from(&mut src), Err(want.clone()));

        // Whole header in one chunk, no payload: error right away.
        let mut d = Decoder::new(c);
        assert_eq!(d.decode(header, |_| panic!("no frame")), Err(want.clone()));
        assert!(d.buffered() <= MAX_HEADER_LEN);
        // The decoder stays dead but does not panic.
        assert_eq!(d.decode(b"more", |_| panic!()), Err(want.clone()));
        assert_eq!(d.finish(), Err(want.clone()));

        // Header trickling in byte by byte: error at its last byte.
        let mut d = Decoder::new(c);
        n -= 1;
        for b in &header[..n] {
            assert_eq!(d.decode(std::slice::from_ref(b), |_| panic!()), Ok(1));
        }
        assert_eq!(d.decode(&header[n..], |_| panic!()), Err(want.clone()));
        assert!(d.buffered() <= MAX_HEADER_LEN);

        // After a good frame in the same chunk: the good one is delivered first.
        let mut wire = BytesMut::new();
        c.encode(b"ok", &mut wire).unwrap();
        wire.extend_from_slice(header);
        let mut got = Vec::new();
        let mut d = Decoder::new(c);
        let r = d.decode(&wire, |p| {
            got.push(p.to_vec());
            ControlFlow::Continue(())
        });
        assert_eq!(r, Err(want.clone()));
        assert_eq!(got, [b"ok".to_vec()]);
    }
}

#[test]
fn delimited_max_enforced_without_rescanning_or_overholding() {
    let max = 1000;
    let c = codec(Framing::Delimited(b'\n'), max);
    let body = vec![b'a'; max + 1];

    // exactly max bytes then the delimiter: fine, in any chunking
    let mut frame = body[..max].to_vec();
    frame.push(b'\n');
    assert_eq!(decode_chunks(c, frame.chunks(7)), [body[..max].to_vec()]);

    // max bytes without a delimiter: still waiting, holding max bytes
    let mut d = Decoder::new(c);
    for chunk in body[..max].chunks(3) {
        d.decode(chunk, |_| panic!()).unwrap();
    }
    assert_eq!(d.buffered(), max);
    assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: max }));
    // one more non-delimiter byte: error, nothing more held
    let want = FrameError::TooLarge {
        len: max as u64 + 1,
        max,
    };
    assert_eq!(d.decode(b"ab\n", |_| panic!()), Err(want.clone()));
    assert!(d.buffered() <= max + 1);

    // in one chunk, and via parse / decode_from
    let mut d = Decoder::new(c);
    assert_eq!(d.decode(&body, |_| panic!()), Err(want.clone()));
    assert_eq!(c.parse(&body), Err(want.clone()));
    assert_eq!(c.parse(&body[..max]), Ok(Parse::Incomplete));
    assert_eq!(c.decode_from(&mut BytesMut::from(&body[..])), Err(want));

    // Large max, many small chunks: linear time (rescanning would take ~5e9 byte visits).
    let c = codec(Framing::Delimited(0), 1 << 30);
    let mut d = Decoder::new(c);
    let chunk = [1u8; 100];
    for _ in 0..10_000 {
        d.decode(&chunk, |_| panic!()).unwrap();
    }
    let mut got = 0;
    d.decode(&[0], |p| {
        got = p.len();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, 1_000_000);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn varint_errors() {
    let c = codec(Framing::Varint, usize::MAX);
    let unterminated = FrameError::UnterminatedLength { max_bytes: 10 };
    assert_eq!(c.parse(&[0xff; 11]), Err(unterminated.clone()));
    assert_eq!(c.parse(&[0xff; 10]), Err(unterminated.clone()));
    assert_eq!(c.parse(&[0xff; 9]), Ok(Parse::Incomplete));
    let mut d = Decoder::new(c);
    for i in 0..9 {
        assert_eq!(d.decode(&[0xff], |_| panic!()), Ok(1), "byte {i}");
    }
    assert_eq!(d.decode(&[0xff], |_| panic!()), Err(unterminated.clone()));
    assert_eq!(
        Decoder::new(c).decode(&[0xff; 11], |_| panic!()),
        Err(unterminated)
    );

    let mut overflow = [0xffu8; 10];
    overflow[9] = 0x02;
    assert_eq!(c.parse(&overflow), Err(FrameError::LengthOverflow));
    let mut d = Decoder::new(c);
    d.decode(&overflow[..4], |_| panic!()).unwrap();
    assert_eq!(
        d.decode(&overflow[4..], |_| panic!()),
        Err(FrameError::LengthOverflow)
    );

    // u64::MAX is a valid varint but over any maximum
    overflow[9] = 0x01;
    let small = codec(Framing::Varint, 1000);
    assert_eq!(
        small.parse(&overflow),
        Err(FrameError::TooLarge {
            len: u64::MAX,
            max: 1000
        })
    );
    // non-minimal encodings are accepted, as protobuf does
    assert_eq!(
        small.parse(&[0x81, 0x00, b'x']),
        Ok(Parse::Frame {
            payload_start: 2,
            payload_len: 1,
            frame_len: 3
        })
    );
}

#[test]
fn buffstreams_header_errors() {
    let c = codec(Framing::BuffStreams, 4096); // H = 3
    let cases: [(&[u8], FrameError); 6] = [
        (&[0x01, 0, 0], FrameError::NegativeLength { len: -1 }),
        (&[0x03], FrameError::NegativeLength { len: -2 }),
        (&[0x04, 0, 1], FrameError::NonZeroPadding),
        (&[0x04, 5], FrameError::NonZeroPadding),
        (
            &[0x80, 0x80, 0x80],
            FrameError::UnterminatedLength { max_bytes: 3 },
        ),
        (
            &[0x82, 0x40, 0],
            FrameError::TooLarge {
                len: 4097,
                max: 4096,
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(c.parse(bytes), Err(want.clone()), "{bytes:02x?}");
        let mut d = Decoder::new(c);
        let r = bytes
            .iter()
            .try_for_each(|b| d.decode(std::slice::from_ref(b), |_| panic!()).map(drop));
        assert_eq!(r, Err(want), "{bytes:02x?}");
        assert!(d.buffered() <= 3);
    }
    // valid header, non-minimal varint
    assert_eq!(
        c.parse(&[0x84, 0x00, 0x00, b'a', b'b']),
        Ok(Parse::Frame {
            payload_start: 3,
            payload_len: 2,
            frame_len: 5
        })
    );
}

#[test]
fn truncated_stream() {
    for framing in ALL {
        let c = codec(framing, 1000);
        let wire = encode_all(&c, &[payload(framing, 50, 1), payload(framing, 60, 2)]);
        let first = c.frame_len(50).unwrap();
        for cut in [1, first - 1, first + 1, first + 5, wire.len() - 1] {
            let mut d = Decoder::new(c);
            let mut frames = 0;
            d.decode(&wire[..cut], |_| {
                frames += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
            let held = if cut > first { cut - first } else { cut };
            assert_eq!(d.buffered(), held, "{framing:?} cut {cut}");
            assert_eq!(
                d.finish(),
                Err(FrameError::Truncated { buffered: held }),
                "{framing:?} cut {cut}"
            );
            assert_eq!(frames, usize::from(cut >= first));
        }
        let mut d = Decoder::new(c);
        d.decode(&wire, |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(d.finish(), Ok(()));
    }
}

#[test]
fn delimiter_in_payload_rejected() {
    let c = codec(Framing::Delimited(b'\n'), 100);
    let mut dst = BytesMut::from(&b"x"[..]);
    assert_eq!(
        c.encode(b"a\nb", &mut dst),
        Err(FrameError::DelimiterInPayload { delimiter: b'\n' })
    );
    assert_eq!(&dst[..], b"x");
    let mut h = [0; MAX_HEADER_LEN];
    assert_eq!(c.encode_header(3, &mut h), Ok(0));
}

#[test]
fn break_returns_offset_and_rest_can_be_refed() {
    for framing in ALL {
        let c = codec(framing, 1000);
        let msgs: Vec<Vec<u8>> = (0..6).map(|i| payload(framing, i * 37, i)).collect();
        let wire = encode_all(&c, &msgs);
        let ends: Vec<usize> = msgs
            .iter()
            .scan(0, |end, m| {
                *end += c.frame_len(m.len()).unwrap();
                Some(*end)
            })
            .collect();

        // Break after every frame: each call returns the end of the next frame.
        let mut d = Decoder::new(c);
        let mut got = Vec::new();
        let mut pos = 0;
        for &end in &ends {
            let n = d
                .decode(&wire[pos..], |p| {
                    got.push(p.to_vec());
                    ControlFlow::Break(())
                })
                .unwrap();
            pos += n;
            assert_eq!(pos, end, "{framing:?}");
        }
        assert_eq!(got, msgs);
        assert_eq!(d.decode(&wire[pos..], |_| panic!()), Ok(0));
        d.finish().unwrap();

        // Break on a frame assembled across chunks, then feed the rest.
        let cut = ends[2] - 3; // inside frame 2
        let mut d = Decoder::new(c);
        let mut got = Vec::new();
        let mut push = |p: &[u8]| {
            got.push(p.to_vec());
            if got.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        assert_eq!(d.decode(&wire[..cut], &mut push), Ok(cut));
        let second = &wire[cut..];
        let n = d.decode(second, &mut push).unwrap();
        assert_eq!(n, 3);
        assert_eq!(d.decode(&second[n..], &mut push), Ok(second.len() - n));
        d.finish().unwrap();
        assert_eq!(got, msgs, "{framing:?}");
    }
}

#[test]
fn decode_from_bytes_mut() {
    let c = codec(Framing::U32Be, 1 << 20);
    let msgs = [b"first".to_vec(), Vec::new(), vec![9; 100_000]];
    let wire = encode_all(&c, &msgs);
    let mut src = BytesMut::new();
    let mut got = Vec::new();
    for chunk in wire.chunks(4000) {
        src.extend_from_slice(chunk);
        while let Some(p) = c.decode_from(&mut src).unwrap() {
            got.push(p.to_vec());
        }
    }
    assert!(src.is_empty());
    assert_eq!(got, msgs);

    // once the header is known, room for the whole frame is reserved
    let mut src = BytesMut::from(&wire[wire.len() - 100_004..wire.len() - 50_000][..]);
    assert_eq!(c.decode_from(&mut src), Ok(None));
    assert!(src.capacity() >= 100_004);
}

#[test]
fn assembly_buffer_is_released_after_large_frames() {
    let c = codec(Framing::U32Be, 1 << 20);
    let msgs = [vec![1u8; 1 << 20], vec![2u8; 10]];
    let wire = encode_all(&c, &msgs);
    // split everything into 2 KiB chunks: both frames are assembled
    assert_eq!(decode_chunks(c, wire.chunks(2048)), msgs);
    assert_eq!(decode_chunks(c, wire.chunks(3)), msgs);
}

#[test]
fn error_messages() {
    let e = FrameError::TooLarge { len: 5, max: 4 };
    assert_eq!(
        e.to_string(),
        "message length 5 exceeds the maximum message size 4"
    );
    assert!(FrameError::DelimiterInPayload { delimiter: b'\n' }
        .to_string()
        .contains("0x0a"));
    assert!(FrameError::MaxTooLarge {
        framing: Framing::U16Be,
        max: 70_000
    }
    .to_string()
    .contains("U16Be"));
}

fn framing_strategy() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::U16Be),
        Just(Framing::U16Le),
        Just(Framing::U32Be),
        Just(Framing::U32Le),
        Just(Framing::U64Be),
        Just(Framing::U64Le),
        Just(Framing::Varint),
        Just(Framing::BuffStreams),
        any::<u8>().prop_map(Framing::Delimited),
    ]
}

fn case_strategy() -> impl Strategy<Value = (Framing, usize, Vec<Vec<u8>>, Vec<usize>)> {
    (
        framing_strategy(),
        prop_oneof![Just(0usize), 1usize..20, 100usize..400],
    )
        .prop_flat_map(|(framing, max)| {
            let len = prop_oneof![Just(0), Just(max), 0..=max];
            let msg = (len, any::<u8>())
                .prop_map(move |(len, seed)| payload(framing, len, usize::from(seed)));
            (
                Just(framing),
                Just(max),
                prop::collection::vec(msg, 0..12),
                prop::collection::vec(1usize..64, 1..40),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn random_messages_random_chunks((framing, max, msgs, sizes) in case_strategy()) {
        let c = codec(framing, max);
        let wire = encode_all(&c, &msgs);
        let mut chunks = Vec::new();
        let (mut pos, mut i) = (0, 0);
        while pos < wire.len() {
            let n = sizes[i % sizes.len()].min(wire.len() - pos);
            chunks.push(&wire[pos..pos + n]);
            pos += n;
            i += 1;
        }
        prop_assert_eq!(decode_chunks(c, chunks.iter().copied()), msgs.clone());

        // same stream, random breaks: feed back the rest until everything is consumed
        let mut d = Decoder::new(c);
        let mut got = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let mut rest = *chunk;
            loop {
                let n = d.decode(rest, |p| {
                    got.push(p.to_vec());
                    if (got.len() + k) % 3 == 0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                }).unwrap();
                rest = &rest[n..];
                if rest.is_empty() { break; }
            }
        }
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        framing in framing_strategy(),
        max in prop_oneof![Just(0usize), 1usize..300],
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        size in 1usize..17,
    ) {
        let c = codec(framing, max);
        // reference: repeated parse over the whole input
        let mut reference = Vec::new();
        let mut rest = &bytes[..];
        let ref_err = loop {
            match c.parse(rest) {
                Ok(Parse::Frame { payload_start, payload_len, frame_len }) => {
                    reference.push(rest[payload_start..payload_start + payload_len].to_vec());
                    rest = &rest[frame_len..];
                }
                Ok(Parse::Incomplete) => break None,
                Err(e) => break Some(e),
            }
        };
        let mut d = Decoder::new(c);
        let mut got = Vec::new();
        let mut err = None;
        for chunk in bytes.chunks(size) {
            if let Err(e) = d.decode(chunk, |p| { got.push(p.to_vec()); ControlFlow::Continue(()) }) {
                err = Some(e);
                break;
            }
        }
        prop_assert_eq!(&got, &reference);
        prop_assert_eq!(&err, &ref_err);
        if err.is_none() {
            prop_assert_eq!(d.buffered(), rest.len());
        }
        for p in &got {
            let mut dst = BytesMut::new();
            c.encode(p, &mut dst).unwrap();
            let decoded = c.decode_from(&mut dst).unwrap();
            prop_assert_eq!(decoded.as_deref(), Some(&p[..]));
        }
    }
}
