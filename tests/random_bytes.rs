//! A live listener fed random bytes on every framing and both backends: raw sockets send random
//! bytes, valid frames followed by garbage, half frames, oversized headers, in random chunks,
//! and end with a FIN, a half close or a reset, while a good writer streams on the same core.
//!
//! Checks: the good writer's messages all arrive, in order and intact; every bad connection is
//! closed exactly once (one `on_close` each); no connection dies of a handler panic or a bad
//! receive buffer; and a new connection still delivers at the end.
//!
//! `BUFFSTREAMS_RANDOM_SECS` (default 4) is the time of bad traffic over all 20 combinations.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::frame::Codec;
use buffstreams::{
    Backend, CloseReason, ConnError, Framing, Listener, ListenerConfig, Writer, WriterConfig,
};
use bytes::BytesMut;
use common::{all_framings, fill, runtime_on, wait_until, Digest, Rng, BACKENDS};

/// Raw connections sending bad bytes at the same time.
const BAD_PEERS: usize = 3;

/// What the listener saw, by peer address.
#[derive(Default)]
struct Seen {
    digests: Mutex<HashMap<SocketAddr, Digest>>,
    closes: Mutex<HashMap<SocketAddr, Vec<CloseReason>>>,
}

fn listen(framing: Framing, max: usize, backend: Backend, seen: &Arc<Seen>) -> Listener {
    let (on_msg, on_close) = (seen.clone(), seen.clone());
    Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
            let mut digests = on_msg.digests.lock().unwrap();
            digests.entry(conn.peer_addr()).or_default().add(msg);
            Ok(())
        })
        .framing(framing)
        .max_message_size(max)
        .runtime(runtime_on(backend, 1))
        .on_close(move |info, reason, _unsent| {
            // A later connection may reuse this peer's port (the ephemeral range wraps within
            // a run at thousands of connections a second): it starts from nothing.
            on_close.digests.lock().unwrap().remove(&info.peer);
            let mut closes = on_close.closes.lock().unwrap();
            closes.entry(info.peer).or_default().push(reason.clone());
        }),
    )
    .unwrap()
}

#[test]
fn random_bytes_on_every_framing_and_backend() {
    common::init_tracing();
    let secs: f64 = std::env::var("BUFFSTREAMS_RANDOM_SECS")
        .map(|v| v.parse().expect("BUFFSTREAMS_RANDOM_SECS is a number"))
        .unwrap_or(4.0);
    let combos: Vec<(Backend, Framing, usize)> = BACKENDS
        .iter()
        .flat_map(|&b| all_framings().into_iter().map(move |(f, m)| (b, f, m)))
        .collect();
    let each = Duration::from_secs_f64(secs / combos.len() as f64);
    for (i, &(backend, framing, max)) in combos.iter().enumerate() {
        let bad = one_combination(backend, framing, max, each, 1000 + i as u64);
        eprintln!("{backend:?} {framing:?}: {bad} bad connections, all closed once");
    }
}

/// Runs bad peers for `time` against one listener while a good writer streams; returns how many
/// bad connections were made.
fn one_combination(
    backend: Backend,
    framing: Framing,
    max: usize,
    time: Duration,
    seed: u64,
) -> usize {
    let what = format!("{backend:?} {framing:?}");
    let seen = Arc::new(Seen::default());
    let listener = listen(framing, max, backend, &seen);
    let addr = listener.local_addr();
    let dial = || {
        Writer::dial(
            WriterConfig::new(addr.to_string())
                .framing(framing)
                .max_message_size(max)
                .send_queue_bytes(32 * 1024),
        )
        .unwrap()
    };

    // The good writer streams from its own thread for the whole run.
    let writer = dial();
    let good_peer = writer.conn_info().unwrap().local;
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (writer, stop) = (writer.clone(), stop.clone());
        std::thread::spawn(move || {
            stream_until(&writer, framing, max, seed, || stop.load(Ordering::Relaxed))
        })
    };

    // Bad peers, each one connection at a time until the deadline.
    let deadline = Instant::now() + time;
    let expected: Arc<Mutex<HashMap<SocketAddr, usize>>> = Arc::default();
    let bad_threads: Vec<_> = (0..BAD_PEERS as u64)
        .map(|t| {
            let (seen, expected, listener) = (seen.clone(), expected.clone(), listener.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed * 100 + t);
                let mut made = 0;
                while Instant::now() < deadline || made == 0 {
                    bad_connection(&listener, &seen, &expected, framing, max, &mut rng);
                    made += 1;
                }
                made
            })
        })
        .collect();
    let bad: usize = bad_threads.into_iter().map(|t| t.join().unwrap()).sum();

    stop.store(true, Ordering::Relaxed);
    let sent = streamer.join().unwrap();
    let received = |peer: SocketAddr| seen.digests.lock().unwrap().get(&peer).copied();
    assert!(
        wait_until(Duration::from_secs(10), || received(good_peer)
            == Some(sent)),
        "{what}: the good writer sent {sent:?}, the listener got {:?}",
        received(good_peer)
    );
    assert!(
        !seen.closes.lock().unwrap().contains_key(&good_peer),
        "{what}: the good connection was closed: {:?}",
        seen.closes.lock().unwrap()[&good_peer]
    );

    // Every bad connection closed exactly once, none by a panic or a bad buffer.
    let closes = seen.closes.lock().unwrap().clone();
    for (peer, &count) in expected.lock().unwrap().iter() {
        let reasons = closes.get(peer).map_or(&[][..], |r| &r[..]);
        assert_eq!(
            reasons.len(),
            count,
            "{what}: bad connection(s) from {peer}: {count} made, closes seen: {reasons:?}"
        );
    }
    for reason in closes.values().flatten() {
        assert!(
            !matches!(reason, CloseReason::Error(e)
                if matches!(**e, ConnError::HandlerPanic | ConnError::BadBuffer)),
            "{what}: {reason}"
        );
    }

    // The listener is still up: a new connection delivers.
    let late = dial();
    let late_peer = late.conn_info().unwrap().local;
    let mut sent = 0;
    let late_sent = stream_until(&late, framing, max, seed + 7, || {
        sent += 1;
        sent > 200
    });
    assert!(
        wait_until(Duration::from_secs(10), || received(late_peer)
            == Some(late_sent)),
        "{what}: a new connection after the bad peers did not deliver: sent {late_sent:?}, got {:?}, closes {:?}",
        received(late_peer),
        seen.closes.lock().unwrap().get(&late_peer)
    );
    writer.close().unwrap();
    late.close().unwrap();
    listener.close();
    bad
}

/// Writes messages of random sizes (up to `max`, mostly small) until `done`; flushes and
/// returns the digest of what was written.
fn stream_until(
    writer: &Writer,
    framing: Framing,
    max: usize,
    seed: u64,
    mut done: impl FnMut() -> bool,
) -> Digest {
    let mut rng = Rng::new(seed);
    let mut digest = Digest::default();
    let mut buf = vec![0; max];
    while !done() {
        let len = match rng.below(8) {
            0 => rng.below(max as u64 + 1),
            _ => rng.below(64),
        } as usize;
        fill(&mut rng, &mut buf[..len], framing);
        writer.write(&buf[..len]).unwrap();
        digest.add(&buf[..len]);
    }
    writer.flush().unwrap();
    digest
}

/// One bad connection: connects, waits until the listener owns it (closes are matched by peer
/// address, and a connection reset before it is accepted is reported with an unknown peer on
/// io_uring), sends bad bytes in random chunks, ends it one way or another and waits for the
/// listener's `on_close`.
fn bad_connection(
    listener: &Listener,
    seen: &Seen,
    expected: &Mutex<HashMap<SocketAddr, usize>>,
    framing: Framing,
    max: usize,
    rng: &mut Rng,
) {
    let addr = listener.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    let peer = s.local_addr().unwrap();
    let closes_of = |peer| seen.closes.lock().unwrap().get(&peer).map_or(0, Vec::len);
    let before = closes_of(peer);
    let want = {
        let mut expected = expected.lock().unwrap();
        let n = expected.entry(peer).or_default();
        *n += 1;
        *n
    };
    assert_eq!(
        before + 1,
        want,
        "an earlier connection from {peer} is open"
    );
    assert!(
        wait_until(Duration::from_secs(5), || listener
            .connections()
            .iter()
            .any(|c| c.peer == peer)),
        "connection from {peer} was not accepted"
    );

    let bytes = bad_bytes(framing, max, rng);
    let mut sent = 0;
    while sent < bytes.len() {
        let n = (1 + rng.below(bytes.len() as u64) as usize).min(bytes.len() - sent);
        if s.write_all(&bytes[sent..sent + n]).is_err() {
            break; // the listener already closed it
        }
        sent += n;
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
    }
    match rng.below(3) {
        0 => drop(s), // FIN
        1 => {
            // Half close, then read until the listener closes its side.
            let _ = s.shutdown(Shutdown::Write);
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut sink = [0; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
        _ => {
            // Reset: SO_LINGER 0, then close.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || closes_of(peer) >= want),
        "bad connection from {peer} was never closed"
    );
}

/// Bytes a bad peer sends: random bytes, valid frames then garbage, a half frame, an oversized
/// header, or only valid frames.
fn bad_bytes(framing: Framing, max: usize, rng: &mut Rng) -> Vec<u8> {
    let codec = Codec::new(framing, max).unwrap();
    let random = |rng: &mut Rng, n: u64| -> Vec<u8> {
        let len = rng.below(n) as usize + 1;
        (0..len).map(|_| rng.next() as u8).collect()
    };
    let valid = |rng: &mut Rng, most: u64| -> Vec<u8> {
        let mut out = BytesMut::new();
        for _ in 0..1 + rng.below(most) {
            let mut payload = vec![0; rng.below(max as u64 + 1) as usize];
            fill(rng, &mut payload, framing);
            codec.encode(&payload, &mut out).unwrap();
        }
        out.to_vec()
    };
    match rng.below(6) {
        0 | 1 => random(rng, 3 * max as u64),
        2 => {
            let mut bytes = valid(rng, 4);
            bytes.extend(random(rng, 2 * max as u64));
            bytes
        }
        3 => {
            let mut bytes = valid(rng, 2);
            let keep = bytes.len() - 1 - rng.below(bytes.len() as u64 / 2 + 1) as usize;
            bytes.truncate(keep);
            bytes
        }
        4 => oversized_header(framing, max, rng),
        _ => valid(rng, 8),
    }
}

/// A header over the maximum (or malformed), for each framing.
fn oversized_header(framing: Framing, max: usize, rng: &mut Rng) -> Vec<u8> {
    let len = max as u64 + 1 + rng.below(1 << 20);
    match framing {
        Framing::U16Be => (len.min(0xffff) as u16).to_be_bytes().to_vec(),
        Framing::U16Le => (len.min(0xffff) as u16).to_le_bytes().to_vec(),
        Framing::U32Be => (len as u32).to_be_bytes().to_vec(),
        Framing::U32Le => (len as u32).to_le_bytes().to_vec(),
        Framing::U64Be => (len << rng.below(40)).to_be_bytes().to_vec(),
        Framing::U64Le => (len << rng.below(40)).to_le_bytes().to_vec(),
        // Unterminated, 11 bytes.
        Framing::Varint => vec![0xff; 11],
        // max 1024: a 3-byte header; zigzag(-1) = 1 is negative, 0x80 0x80 0x80 unterminated.
        Framing::BuffStreams => match rng.below(3) {
            0 => vec![0x01, 0, 0],
            1 => vec![0x80, 0x80, 0x80],
            _ => vec![0x82, 0x40, 0x00],
        },
        Framing::Delimited(d) => vec![d.wrapping_add(1); max + 1 + rng.below(100) as usize],
    }
}
