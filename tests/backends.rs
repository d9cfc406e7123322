//! Each engine backend (io_uring and epoll, every test run on both) end to end over loopback:
//! echo replies, a bad peer beside a good stream, a reset peer reported once, a writer
//! recovering after its retries gave up, runtime shutdown sending what is queued; and the two
//! backends talking to each other.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, CloseReason, ConnError, FrameError, Framing, Listener, ListenerConfig, RetryPolicy,
    Runtime, WriteError, Writer, WriterConfig,
};
use common::{fill, runtime_on, wait_until, Digest, Rng};

/// A runtime of `cores` unpinned cores on `backend`.
fn runtime(backend: Backend, cores: usize) -> Runtime {
    let rt = Runtime::new(runtime_on(backend, cores)).expect("runtime");
    assert_eq!(rt.backend(), backend);
    assert_eq!(rt.cores(), cores);
    rt
}

fn message_size(rng: &mut Rng, max: usize) -> usize {
    match rng.below(100) {
        0 => 0,
        1 => max,
        _ => rng.below(max as u64 + 1) as usize,
    }
}

type Digests = Arc<Mutex<HashMap<u64, Digest>>>;

/// A listener that digests every message per connection.
struct Sink {
    listener: Listener,
    digests: Digests,
    received: Arc<AtomicU64>,
}

/// A [`Sink`] on `rt`.
fn digesting_listener(rt: &Runtime, framing: Framing, max: usize) -> Sink {
    let digests: Digests = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let (d, r) = (digests.clone(), received.clone());
    let listener = Listener::bind_on(
        rt,
        ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
            d.lock().unwrap().entry(conn.id()).or_default().add(msg);
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .framing(framing)
        .max_message_size(max),
    )
    .expect("bind");
    Sink {
        listener,
        digests,
        received,
    }
}

/// `writers` writers on `client_rt`, each on its own thread, stream `per_writer` random
/// messages to `sink`; every message arrives exactly once, in order per connection.
fn stream_and_check(
    client_rt: &Runtime,
    sink: &Sink,
    framing: Framing,
    max: usize,
    writers: usize,
    per_writer: usize,
    seed: u64,
) {
    let addr = sink.listener.local_addr().to_string();
    let received = &sink.received;
    let before = received.load(Ordering::Relaxed);
    let senders: Vec<_> = (0..writers)
        .map(|w| {
            let addr = addr.clone();
            let rt = client_rt.clone();
            std::thread::spawn(move || {
                let writer = Writer::dial_on(
                    &rt,
                    WriterConfig::new(addr)
                        .framing(framing)
                        .max_message_size(max),
                )
                .expect("dial");
                let mut rng = Rng::new(seed * 100 + w as u64);
                let mut digest = Digest::default();
                let mut msg = vec![0u8; max];
                for _ in 0..per_writer {
                    let len = message_size(&mut rng, max);
                    fill(&mut rng, &mut msg[..len], framing);
                    writer.write(&msg[..len]).expect("write");
                    digest.add(&msg[..len]);
                }
                writer.close().expect("close sends everything");
                digest
            })
        })
        .collect();
    let mut sent: Vec<Digest> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    let total = before + (writers * per_writer) as u64;
    assert!(
        wait_until(Duration::from_secs(8), || received.load(Ordering::Relaxed)
            >= total),
        "{framing:?}: received {} of {}",
        received.load(Ordering::Relaxed) - before,
        total - before
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        received.load(Ordering::Relaxed),
        total,
        "{framing:?}: duplicates"
    );
    let key = |d: &Digest| (d.count, d.bytes, d.hash);
    let mut got: Vec<Digest> = sink
        .digests
        .lock()
        .unwrap()
        .drain()
        .map(|(_, d)| d)
        .collect();
    sent.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, sent, "{framing:?}: per-connection sequences differ");
}

fn echo_through_conn_write(backend: Backend) {
    common::init_tracing();
    const N: u32 = 50_000;
    let server_rt = runtime(backend, 2);
    let client_rt = runtime(backend, 1);
    let listener = Listener::bind_on(
        &server_rt,
        ListenerConfig::new("127.0.0.1:0", |msg, conn| {
            conn.write(msg)?;
            Ok(())
        })
        .framing(Framing::Varint),
    )
    .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (n, b) = (next.clone(), bad.clone());
    let writer = Writer::dial_on(
        &client_rt,
        WriterConfig::new(listener.local_addr().to_string())
            .framing(Framing::Varint)
            .on_message(move |msg, _| {
                let expect = n.fetch_add(1, Ordering::Relaxed) as u32;
                if msg != format!("ping {expect}").as_bytes() {
                    b.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }),
    )
    .unwrap();
    for i in 0..N {
        writer.write(format!("ping {i}").as_bytes()).unwrap();
    }
    writer.flush().unwrap();
    assert!(
        wait_until(Duration::from_secs(8), || next.load(Ordering::Relaxed)
            == u64::from(N)),
        "{} replies of {N}",
        next.load(Ordering::Relaxed)
    );
    assert_eq!(bad.load(Ordering::Relaxed), 0, "replies out of order");
    let server = || -> u64 { server_rt.stats().iter().map(|s| s.messages_received).sum() };
    assert!(
        wait_until(Duration::from_secs(2), || server() == u64::from(N)),
        "server counted {}",
        server()
    );
    writer.close().unwrap();
    listener.close();
}

/// A peer announcing 1 GiB is cut with `FrameError::TooLarge`; a good connection on the same
/// core keeps streaming and closes cleanly.
fn bad_peer_closes_only_its_connection(backend: Backend) {
    const MAX: usize = 64 * 1024;
    let rt = runtime(backend, 1);
    let closed: Arc<Mutex<HashMap<SocketAddr, CloseReason>>> = Arc::default();
    let good = Arc::new(AtomicU64::new(0));
    let (c, g) = (closed.clone(), good.clone());
    let listener = Listener::bind_on(
        &rt,
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            if msg == b"good" {
                g.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .max_message_size(MAX)
        .on_close(move |info, reason, _| {
            c.lock().unwrap().insert(info.peer, reason.clone());
        }),
    )
    .unwrap();
    let addr = listener.local_addr();
    let client_rt = runtime(backend, 1);
    let writer = Writer::dial_on(
        &client_rt,
        WriterConfig::new(addr.to_string()).send_queue_bytes(16 * 1024),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (s, w) = (stop.clone(), writer.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                w.write(b"good").unwrap();
            }
            w.flush().unwrap();
        })
    };
    assert!(wait_until(Duration::from_secs(5), || good
        .load(Ordering::Relaxed)
        > 1000));

    let mut bad = TcpStream::connect(addr).unwrap();
    let bad_peer = bad.local_addr().unwrap();
    bad.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || closed
            .lock()
            .unwrap()
            .contains_key(&bad_peer)),
        "the bad connection was not closed"
    );
    let reason = closed.lock().unwrap()[&bad_peer].clone();
    match &reason {
        CloseReason::Error(err) => assert!(
            matches!(
                &**err,
                ConnError::Frame(FrameError::TooLarge { len, max }) if *len == 1 << 30 && *max == MAX
            ),
            "{err:?}"
        ),
        other => panic!("closed with {other:?}"),
    }
    // The server closed it: the bad peer reads EOF (or a reset), not a hang.
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(bad.read(&mut byte), Ok(0) | Err(_)));

    let before = good.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || good.load(Ordering::Relaxed)
            > before + 1000),
        "the good connection stalled after the bad peer"
    );
    stop.store(true, Ordering::Relaxed);
    streamer.join().unwrap();
    writer.close().unwrap();
    let good_peer = writer.conn_info().unwrap().local;
    assert!(wait_until(Duration::from_secs(5), || closed
        .lock()
        .unwrap()
        .contains_key(&good_peer)));
    assert!(
        matches!(closed.lock().unwrap()[&good_peer], CloseReason::PeerClosed),
        "the good connection closed with {:?}",
        closed.lock().unwrap()[&good_peer]
    );
    assert_eq!(rt.stats()[0].conn_errors, 1);
    listener.close();
}

/// A peer that resets mid-frame closes its connection with an I/O error (or a truncated frame,
/// if the EOF is seen first), reported once.
fn reset_peer_is_reported_once(backend: Backend) {
    let rt = runtime(backend, 1);
    let closed: Arc<Mutex<Vec<(SocketAddr, CloseReason)>>> = Arc::default();
    let c = closed.clone();
    let listener = Listener::bind_on(
        &rt,
        ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())).on_close(move |info, reason, _| {
            c.lock().unwrap().push((info.peer, reason.clone()));
        }),
    )
    .unwrap();
    let s = TcpStream::connect(listener.local_addr()).unwrap();
    let peer = s.local_addr().unwrap();
    let mut bytes = 1000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[2; 10]);
    (&s).write_all(&bytes).unwrap();
    assert!(wait_until(Duration::from_secs(5), || rt.stats()[0]
        .bytes_received
        == 14));
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(5), || !closed
        .lock()
        .unwrap()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(20));
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 1, "{closed:?}");
    let (who, reason) = &closed[0];
    assert_eq!(*who, peer);
    assert!(
        matches!(reason, CloseReason::Error(e) if matches!(&**e, ConnError::Io(_) | ConnError::Frame(FrameError::Truncated { .. }))),
        "{reason:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || {
        let s = rt.stats()[0];
        s.connections == 0 && s.conn_errors == 1
    }));
    listener.close();
}

fn counting_listener(rt: &Runtime, addr: &str, seen: Arc<Mutex<Vec<Vec<u8>>>>) -> Listener {
    Listener::bind_on(
        rt,
        ListenerConfig::new(addr, move |msg, _| {
            seen.lock().unwrap().push(msg.to_vec());
            Ok(())
        }),
    )
    .unwrap()
}

fn flush_within(writer: &Writer, timeout: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let w = writer.clone();
    std::thread::spawn(move || {
        let _ = tx.send(w.flush().map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(timeout) {
        Ok(result) => result.expect("flush"),
        Err(_) => panic!("flush did not return within {timeout:?}"),
    }
}

/// Outage after outage: the background retries give up, the next write reconnects by itself,
/// and what is written then goes out (the queue is re-armed on every new connection, even when
/// the old one died with a send in flight).
fn writer_recovers_after_giving_up(backend: Backend) {
    let server_rt = runtime(backend, 1);
    let client_rt = runtime(backend, 1);
    let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
    let mut listener = counting_listener(&server_rt, "127.0.0.1:0", seen.clone());
    let addr = listener.local_addr().to_string();
    let writer = Writer::dial_on(
        &client_rt,
        WriterConfig::new(addr.clone())
            .connect_timeout(Duration::from_millis(500))
            .retry(RetryPolicy {
                max_attempts: Some(2),
                initial_backoff: Duration::from_millis(5),
                ..RetryPolicy::default()
            }),
    )
    .unwrap();
    for round in 0..5 {
        listener.close();
        // Keep writing through the outage until the policy gives up and a write's own
        // reconnect fails.
        let refused = wait_until(Duration::from_secs(5), || {
            matches!(writer.write(b"x"), Err(WriteError::Reconnect(_)))
        });
        assert!(refused, "round {round}: writes kept succeeding");
        listener = counting_listener(&server_rt, &addr, seen.clone());
        let marker = format!("round {round}").into_bytes();
        writer.write(&marker).unwrap();
        flush_within(&writer, Duration::from_secs(5));
        assert!(
            wait_until(Duration::from_secs(5), || seen
                .lock()
                .unwrap()
                .contains(&marker)),
            "round {round}: marker not delivered"
        );
    }
    writer.close().unwrap();
    listener.close();
}

fn runtime_shutdown_sends_queued_messages(backend: Backend) {
    let server_rt = runtime(backend, 1);
    let Sink {
        listener, received, ..
    } = digesting_listener(&server_rt, Framing::U32Be, 1024);
    let client_rt = runtime(backend, 1);
    let writer = Writer::dial_on(
        &client_rt,
        WriterConfig::new(listener.local_addr().to_string()).max_message_size(1024),
    )
    .unwrap();
    for i in 0..20_000u32 {
        writer.write(&i.to_be_bytes()).unwrap();
    }
    client_rt.shutdown();
    assert!(wait_until(Duration::from_secs(5), || received
        .load(Ordering::Relaxed)
        == 20_000));
    assert!(
        writer.write(b"late").is_err(),
        "the writer closed with its runtime"
    );
    listener.close();
}

/// Both directions between an epoll and an io_uring runtime (skipped without io_uring, unless
/// required).
#[test]
fn epoll_and_io_uring_interoperate() {
    let uring_rt = match Runtime::new(runtime_on(Backend::IoUring, 1)) {
        Ok(rt) => rt,
        Err(err) => return common::skip(&format!("io_uring unavailable ({err})")),
    };
    let epoll_rt = runtime(Backend::Epoll, 1);
    for (server, client) in [(&epoll_rt, &uring_rt), (&uring_rt, &epoll_rt)] {
        let sink = digesting_listener(server, Framing::Varint, 4096);
        stream_and_check(client, &sink, Framing::Varint, 4096, 2, 10_000, 7);
        sink.listener.close();
    }
}

common::on_both_backends!(
    echo_through_conn_write,
    bad_peer_closes_only_its_connection,
    reset_peer_is_reported_once,
    writer_recovers_after_giving_up,
    runtime_shutdown_sends_queued_messages,
);
