//! The `prost` feature: messages encoded straight into the send memory, byte-for-byte prost's
//! `encode_length_delimited` on the varint framing, decoded back with `decode_as`, and an
//! inconsistent `encoded_len` refused without queueing anything.
#![cfg(feature = "prost")]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use buffstreams::{Framing, Listener, ListenerConfig, WriteError, Writer, WriterConfig};
use common::{runtime_on, BACKENDS};
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct Point {
    #[prost(sint32, tag = "1")]
    x: i32,
    #[prost(string, tag = "2")]
    label: String,
    #[prost(bytes = "vec", tag = "3")]
    blob: Vec<u8>,
}

fn points() -> Vec<Point> {
    (0..200)
        .map(|i| Point {
            x: i * 37 - 3000,
            label: format!("p{i}"),
            blob: vec![i as u8; (i * 13 % 300) as usize],
        })
        .collect()
}

#[test]
fn varint_frames_are_prost_length_delimited() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = Writer::dial(
        WriterConfig::new(server.local_addr().unwrap().to_string())
            .framing(Framing::Varint)
            .runtime(runtime_on(BACKENDS[0], 1)),
    )
    .unwrap();
    let (mut peer, _) = server.accept().unwrap();
    let mut expected = Vec::new();
    let mut batch = writer.buffered();
    for (i, p) in points().iter().enumerate() {
        expected.extend(p.encode_length_delimited_to_vec());
        match i % 2 {
            0 => writer.write_message(p).map(drop).unwrap(),
            _ => batch.write_message(p).map(drop).unwrap(),
        }
        batch.flush().unwrap(); // keep the two paths in order
    }
    drop(batch);
    writer.close().unwrap();
    let mut got = Vec::new();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, expected);
    // And prost reads them back.
    let mut rest = &got[..];
    for p in points() {
        assert_eq!(Point::decode_length_delimited(&mut rest).unwrap(), p);
    }
}

#[test]
fn replies_round_trip_through_conn_and_decode_as() {
    for backend in BACKENDS {
        let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", 64);
        let listener = Listener::bind(
            config
                .framing(Framing::Varint)
                .runtime(runtime_on(backend, 1)),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let client = Writer::dial(
            WriterConfig::new(listener.local_addr().to_string())
                .framing(Framing::Varint)
                .on_message(move |payload, _| {
                    tx.send(Point::decode(payload)?).ok();
                    Ok(())
                }),
        )
        .unwrap();
        for p in points() {
            client.write_message(&p).unwrap();
        }
        for p in points() {
            let msg = messages.recv_timeout(Duration::from_secs(5)).unwrap();
            let got: Point = msg.decode_as().unwrap();
            assert_eq!(got, p);
            msg.conn.write_message(&Point { x: -got.x, ..got }).unwrap();
        }
        for p in points() {
            let reply = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(reply.x, -p.x);
            assert_eq!(reply.label, p.label);
        }
        client.close().unwrap();
        listener.close();
    }
}

/// A message whose `encoded_len` is wrong (too short, or too long) is refused and leaves no
/// trace on the wire.
#[derive(Debug, Default, Clone)]
struct Liar {
    claim: usize,
}

impl prost::Message for Liar {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&[0x08, 0x01]); // field 1 = 1: two bytes
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.claim
    }
    fn clear(&mut self) {}
}

#[test]
fn an_inconsistent_encoded_len_is_refused() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let writer = Writer::dial(
        WriterConfig::new(server.local_addr().unwrap().to_string())
            .framing(Framing::U32Be)
            .runtime(runtime_on(BACKENDS[0], 1)),
    )
    .unwrap();
    let (mut peer, _) = server.accept().unwrap();
    for claim in [1, 3, 10] {
        let err = writer.write_message(&Liar { claim }).unwrap_err();
        assert!(matches!(err, WriteError::EncodedLength { announced } if announced == claim));
        let mut batch = writer.buffered();
        let err = batch.write_message(&Liar { claim }).unwrap_err();
        assert!(matches!(err, WriteError::EncodedLength { .. }));
        assert_eq!(batch.buffered_bytes(), 0);
    }
    writer.write_message(&Liar { claim: 2 }).unwrap();
    writer.close().unwrap();
    let mut got = Vec::new();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 2, 0x08, 0x01]);
}
