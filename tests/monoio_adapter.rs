//! The monoio adapter on a monoio io_uring runtime, talking to this crate's own listener and
//! writer: every framing, messages in order both ways, in-place encoding, a Unix stream, and bad
//! input as typed errors.
#![cfg(feature = "monoio")]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buffstreams::frame::Codec;
use buffstreams::monoio::{FramedError, FramedStream};
use buffstreams::{FrameError, Framing, Listener, ListenerConfig, Writer, WriterConfig};
use common::{all_framings, fill, runtime_on, wait_until, Digest, Rng, BACKENDS};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .expect("a monoio io_uring runtime")
        .block_on(f)
}

#[test]
fn adapter_client_against_a_buffstreams_echo_listener_on_every_framing() {
    for (framing, max) in all_framings() {
        let codec = Codec::new(framing, max).unwrap();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", |msg, conn| {
                conn.write(msg)?;
                Ok(())
            })
            .framing(framing)
            .max_message_size(max)
            .runtime(runtime_on(BACKENDS[0], 1)),
        )
        .unwrap();
        let addr = listener.local_addr();
        let (sent, got) = block_on(async move {
            let stream = monoio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut framed = FramedStream::new(stream, codec);
            let mut rng = Rng::new(7);
            let (mut sent, mut got) = (Digest::default(), Digest::default());
            for batch in 0..40u32 {
                for i in 0..100u32 {
                    let mut p = vec![0u8; ((batch * 100 + i) as usize * 7919) % (max + 1)];
                    fill(&mut rng, &mut p, framing);
                    sent.add(&p);
                    if i % 2 == 0 {
                        framed.feed_message(&p).await.unwrap();
                    } else {
                        // In place, into the write buffer.
                        framed
                            .feed_with(p.len(), |dst| dst.copy_from_slice(&p))
                            .await
                            .unwrap();
                    }
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
    let codec = Codec::new(Framing::Varint, 4096).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let replies = Arc::new(AtomicU64::new(0));
    let r = replies.clone();
    let runtime = buffstreams::Runtime::new(runtime_on(BACKENDS[1], 1)).unwrap();
    let writer = Writer::dial_on(
        &runtime,
        WriterConfig::new(addr.to_string())
            .framing(Framing::Varint)
            .max_message_size(4096)
            .on_message(move |msg, _| {
                assert_eq!(msg, b"ack");
                r.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
    )
    .unwrap();
    let (accepted, _) = std_listener.accept().unwrap();
    const N: u32 = 20_000;
    let payload = |i: u32| -> Vec<u8> {
        (0..(i as usize * 31) % 3000)
            .map(|k| (k as u32 ^ i) as u8)
            .collect()
    };
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
    let got = block_on(async move {
        let stream = monoio::net::TcpStream::from_std(accepted).unwrap();
        let mut framed = FramedStream::new(stream, codec);
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
fn a_unix_stream_pair_carries_messages_both_ways() {
    let codec = Codec::new(Framing::U32Le, 1 << 16).unwrap();
    block_on(async move {
        let (a, b) = monoio::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (FramedStream::new(a, codec), FramedStream::new(b, codec));
        for i in 0..1000u32 {
            a.feed_message(&i.to_le_bytes()).await.unwrap();
        }
        a.flush().await.unwrap();
        for i in 0..1000u32 {
            let msg = b.read_message().await.unwrap().expect("a message");
            assert_eq!(&msg[..], &i.to_le_bytes());
        }
        b.write_message(b"done").await.unwrap();
        assert_eq!(&a.read_message().await.unwrap().unwrap()[..], b"done");
        drop(b);
        assert!(a.read_message().await.unwrap().is_none(), "a clean end");
    });
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
    block_on(async move {
        let mut a = FramedStream::new(monoio::net::TcpStream::from_std(a).unwrap(), codec);
        assert!(matches!(
            a.read_message().await,
            Err(FramedError::Frame(FrameError::TooLarge {
                len: 5000,
                max: 1000
            }))
        ));
        let mut b = FramedStream::new(monoio::net::TcpStream::from_std(b).unwrap(), codec);
        assert!(matches!(
            b.read_message().await,
            Err(FramedError::Frame(FrameError::Truncated { buffered: 7 }))
        ));
        assert!(matches!(
            b.write_message(&[0; 1001]).await,
            Err(FramedError::Frame(FrameError::TooLarge { .. }))
        ));
        assert!(matches!(
            b.feed_with(1001, |_| {}).await,
            Err(FramedError::Frame(FrameError::TooLarge { len: 1001, .. }))
        ));
        assert_eq!(b.buffered_write(), 0, "a refused message leaves nothing");
    });
    peer.join().unwrap();
}

#[test]
fn a_refused_in_place_message_leaves_nothing_fed() {
    let codec = Codec::new(Framing::Delimited(b'\n'), 64).unwrap();
    block_on(async move {
        let (a, b) = monoio::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (FramedStream::new(a, codec), FramedStream::new(b, codec));
        a.feed_message(b"one").await.unwrap();
        let fed = a.buffered_write();
        assert!(matches!(
            a.feed_with(3, |dst| dst.copy_from_slice(b"a\nb")).await,
            Err(FramedError::Frame(FrameError::DelimiterInPayload {
                delimiter: b'\n'
            }))
        ));
        assert_eq!(
            a.buffered_write(),
            fed,
            "the refused frame left no bytes behind"
        );
        a.feed_with(3, |dst| dst.copy_from_slice(b"two"))
            .await
            .unwrap();
        a.flush().await.unwrap();
        assert_eq!(&b.read_message().await.unwrap().unwrap()[..], b"one");
        assert_eq!(&b.read_message().await.unwrap().unwrap()[..], b"two");
    });
}
