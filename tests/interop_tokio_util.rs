//! Interop with tokio-util's `LengthDelimitedCodec`, both directions, over loopback: a tokio
//! client into a buffstreams listener, and a buffstreams writer into a tokio server; counts and
//! order-sensitive digests must match. Default (u32 big-endian), u16 little-endian and
//! u64 big-endian length fields.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{Framing, Listener, ListenerConfig, Writer, WriterConfig};
use bytes::Bytes;
use common::{runtime_on, wait_until, Digest, BACKENDS};
use futures::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

const N: usize = 5000;
const MAX: usize = 60_000;

fn codec_for(framing: Framing) -> LengthDelimitedCodec {
    let mut b = LengthDelimitedCodec::builder();
    b.max_frame_length(MAX);
    match framing {
        Framing::U16Le => b.length_field_length(2).little_endian(),
        Framing::U64Be => b.length_field_length(8).big_endian(),
        _ => b.length_field_length(4).big_endian(),
    };
    b.new_codec()
}

fn payload(i: usize) -> Vec<u8> {
    let len = (i * 7717) % 2000 + usize::from(i % 500 == 0) * 50_000;
    (0..len).map(|k| (k ^ i) as u8).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tokio_util_client_into_a_buffstreams_listener() {
    for (backend, framing) in [
        (BACKENDS[0], Framing::U32Be),
        (BACKENDS[1], Framing::U32Be),
        (BACKENDS[0], Framing::U16Le),
        (BACKENDS[0], Framing::U64Be),
    ] {
        let got = Arc::new(Mutex::new(Digest::default()));
        let g = got.clone();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                g.lock().unwrap().add(msg);
                Ok(())
            })
            .framing(framing)
            .max_message_size(MAX)
            .runtime(runtime_on(backend, 1)),
        )
        .unwrap();
        let addr = listener.local_addr();
        let sent = rt().block_on(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut sink = FramedWrite::new(stream, codec_for(framing));
            let mut sent = Digest::default();
            for i in 0..N {
                let p = payload(i);
                sent.add(&p);
                sink.feed(Bytes::from(p)).await.unwrap();
            }
            SinkExt::<Bytes>::flush(&mut sink).await.unwrap();
            sent
        });
        assert!(
            wait_until(Duration::from_secs(10), || *got.lock().unwrap() == sent),
            "{backend:?} {framing:?}: got {:?}, sent {sent:?}",
            got.lock().unwrap()
        );
        listener.close();
    }
}

#[test]
fn buffstreams_writer_into_a_tokio_util_server() {
    for framing in [Framing::U32Be, Framing::U16Le, Framing::U64Be] {
        // A worker thread runs the server while this thread writes.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let server = rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut frames = FramedRead::new(stream, codec_for(framing));
            let mut got = Digest::default();
            while let Some(frame) = frames.next().await {
                got.add(&frame.unwrap());
            }
            got
        });
        let writer = Writer::dial(
            WriterConfig::new(addr.to_string())
                .framing(framing)
                .max_message_size(MAX),
        )
        .unwrap();
        let mut sent = Digest::default();
        let mut batch = writer.buffered();
        for i in 0..N {
            let p = payload(i);
            sent.add(&p);
            if i % 3 == 0 {
                writer.write(&p).unwrap();
            } else {
                batch.write(&p).unwrap();
            }
            batch.flush().unwrap(); // keep the two paths in order
        }
        drop(batch);
        writer.close().unwrap();
        let got =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
        assert_eq!(got.unwrap().unwrap(), sent, "{framing:?}");
    }
}
