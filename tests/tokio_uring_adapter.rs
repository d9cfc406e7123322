//! The `tokio-uring` adapter on a `tokio_uring::start` runtime, talking to this crate's own
//! listener and writer: every message in order both ways, and bad input as typed errors.
#![cfg(feature = "tokio-uring")]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buffstreams::frame::Codec;
use buffstreams::tokio_uring::{FramedError, FramedStream};
use buffstreams::{FrameError, Framing, Listener, ListenerConfig, Writer, WriterConfig};
use common::{runtime_on, wait_until, Digest, BACKENDS};

const N: u32 = 20_000;

fn payload(i: u32) -> Vec<u8> {
    let len = (i as usize * 7919) % 3000;
    (0..len).map(|k| (k as u32 ^ i) as u8).collect()
}

#[test]
fn adapter_client_against_a_buffstreams_echo_listener() {
    for framing in [Framing::U32Be, Framing::Varint, Framing::U16Le] {
        let codec = Codec::new(framing, 4096).unwrap();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", |msg, conn| {
                conn.write(msg)?;
                Ok(())
            })
            .framing(framing)
            .max_message_size(4096)
            .runtime(runtime_on(BACKENDS[0], 1)),
        )
        .unwrap();
        let addr = listener.local_addr();
        let (sent, got) = tokio_uring::start(async move {
            let stream = tokio_uring::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut framed = FramedStream::new(stream, codec);
            let (mut sent, mut got) = (Digest::default(), Digest::default());
            // Feed in batches, flush, then read the echoes of that batch.
            for batch in 0..N / 100 {
                for i in batch * 100..(batch + 1) * 100 {
                    let p = payload(i);
                    sent.add(&p);
                    framed.feed_message(&p).await.unwrap();
                }
                framed.flush().await.unwrap();
                for _ in 0..100 {
                    let msg = framed.read_message().await.unwrap().expect("echo");
                    got.add(&msg);
                }
            }
            (sent, got)
        });
        assert_eq!(sent, got, "{framing:?}");
        listener.close();
    }
}

#[test]
fn adapter_server_against_a_buffstreams_writer() {
    let codec = Codec::new(Framing::U32Be, 4096).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let replies = Arc::new(AtomicU64::new(0));
    let r = replies.clone();
    let writer = Writer::dial_on(
        &buffstreams::Runtime::new(runtime_on(BACKENDS[1], 1)).unwrap(),
        WriterConfig::new(addr.to_string())
            .max_message_size(4096)
            .on_message(move |msg, _| {
                assert_eq!(msg, b"ack");
                r.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
    );
    let (accepted, _) = std_listener.accept().unwrap();
    let writer = writer.unwrap();
    let producer = std::thread::spawn({
        let writer = writer.clone();
        move || {
            let mut sent = Digest::default();
            for i in 0..N {
                let p = payload(i);
                sent.add(&p);
                writer.write(&p).unwrap();
            }
            writer.flush().unwrap();
            sent
        }
    });
    let got = tokio_uring::start(async move {
        let mut framed = FramedStream::new(tokio_uring::net::TcpStream::from_std(accepted), codec);
        let mut got = Digest::default();
        for i in 0..N {
            let msg = framed.read_message().await.unwrap().expect("a message");
            got.add(&msg);
            if i % 1000 == 0 {
                framed.write_message(b"ack").await.unwrap();
            }
        }
        got
    });
    assert_eq!(producer.join().unwrap(), got);
    assert!(wait_until(Duration::from_secs(5), || replies
        .load(Ordering::Relaxed)
        == 20));
    writer.close().unwrap();
}

#[test]
fn bad_input_is_a_typed_error() {
    let codec = Codec::new(Framing::U32Be, 1000).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        // First connection: an oversized header. Second: half a frame, then EOF.
        let mut a = std::net::TcpStream::connect(addr).unwrap();
        a.write_all(&5000u32.to_be_bytes()).unwrap();
        let mut b = std::net::TcpStream::connect(addr).unwrap();
        b.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let (a, _) = std_listener.accept().unwrap();
    let (b, _) = std_listener.accept().unwrap();
    tokio_uring::start(async move {
        let mut a = FramedStream::new(tokio_uring::net::TcpStream::from_std(a), codec);
        assert!(matches!(
            a.read_message().await,
            Err(FramedError::Frame(FrameError::TooLarge {
                len: 5000,
                max: 1000
            }))
        ));
        let mut b = FramedStream::new(tokio_uring::net::TcpStream::from_std(b), codec);
        assert!(matches!(
            b.read_message().await,
            Err(FramedError::Frame(FrameError::Truncated { buffered: 7 }))
        ));
        assert!(matches!(
            b.write_message(&[0; 1001]).await,
            Err(FramedError::Frame(FrameError::TooLarge { .. }))
        ));
    });
    peer.join().unwrap();
}
