//! TLS and mutual TLS (the `tls` feature) on both backends: round trips on every framing with
//! replies, the peer's identity on `ConnInfo`, and a BufferedWriter's stream.
#![cfg(feature = "tls")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{Backend, Listener, ListenerConfig, Writer, WriterConfig};
use common::tls::{localhost, Pki};
use common::{all_framings, on_both_backends, runtime_on, wait_until, Digest};

fn round_trips(backend: Backend, mtls: bool) {
    common::init_tracing();
    let pki = Pki::new();
    for (framing, max) in all_framings() {
        let got = Arc::new(Mutex::new(Digest::default()));
        let certs = Arc::new(AtomicU64::new(0));
        let (seen, certs_seen) = (got.clone(), certs.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
                seen.lock().unwrap().add(msg);
                let tls = conn.info().tls.expect("a TLS connection has its TlsPeer");
                certs_seen.store(tls.certificates.len() as u64, Ordering::Relaxed);
                conn.write(msg)?;
                Ok(())
            })
            .framing(framing)
            .max_message_size(max)
            .runtime(runtime_on(backend, 1))
            .tls(pki.server(mtls)),
        )
        .unwrap();
        let replies = Arc::new(Mutex::new(Digest::default()));
        let r = replies.clone();
        let writer = Writer::dial(
            WriterConfig::new(listener.local_addr().to_string())
                .framing(framing)
                .max_message_size(max)
                .runtime(runtime_on(backend, 1))
                .on_message(move |msg, _| {
                    r.lock().unwrap().add(msg);
                    Ok(())
                })
                .tls(pki.client(mtls), localhost()),
        )
        .unwrap();
        let info = writer.conn_info().expect("connected");
        let server = info.tls.expect("the writer's TlsPeer");
        assert_eq!(server.certificates.len(), 2, "the server's chain");
        assert!(server.protocol.contains("TLSv1_3"), "{}", server.protocol);
        let mut sent = Digest::default();
        let mut rng = common::Rng::new(7);
        for i in 0..2000 {
            let len = rng.below(max as u64) as usize + (i % 2);
            let mut msg = vec![0u8; len.min(max)];
            common::fill(&mut rng, &mut msg, framing);
            sent.add(&msg);
            writer.write(&msg).unwrap();
        }
        writer.flush().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || *got.lock().unwrap() == sent
                && *replies.lock().unwrap() == sent),
            "{framing:?}: received {:?} and replies {:?} of {sent:?}",
            got.lock().unwrap(),
            replies.lock().unwrap()
        );
        let expected = if mtls { 1 } else { 0 };
        assert_eq!(
            certs.load(Ordering::Relaxed),
            expected,
            "client certificates seen"
        );
        writer.close().unwrap();
        listener.close();
    }
}

fn round_trips_on_every_framing(backend: Backend) {
    round_trips(backend, false);
}

fn round_trips_under_mutual_tls(backend: Backend) {
    round_trips(backend, true);
}

on_both_backends!(round_trips_on_every_framing, round_trips_under_mutual_tls);

/// A listener restarted while a TLS writer streams (plain writes, then a `BufferedWriter`): the
/// new connection is a new TLS session, and the records the old one did not take whole are
/// sealed again and re-sent. Every message is received at most once (never twice, inside a
/// connection or across), in order, or handed back; only what sat in kernel buffers when the
/// listener died may be lost (TCP's limit, as without TLS).
fn restart_mid_stream(backend: Backend, buffered: bool) {
    common::init_tracing();
    const TOTAL: u32 = 200_000;
    let pki = Pki::new();
    let received: Arc<Mutex<Vec<(u64, u32)>>> = Arc::default();
    let make_listener = |addr: &str| {
        let received = received.clone();
        Listener::bind(
            ListenerConfig::new(addr, move |msg, conn| {
                let seq = u32::from_be_bytes(msg[..4].try_into()?);
                received.lock().unwrap().push((conn.id(), seq));
                Ok(())
            })
            .runtime(runtime_on(backend, 1))
            .tls(pki.server(false)),
        )
        .unwrap()
    };
    let listener = make_listener("127.0.0.1:0");
    let addr = listener.local_addr().to_string();
    let failed: Arc<Mutex<Vec<u32>>> = Arc::default();
    let f = failed.clone();
    let writer = Writer::dial(
        WriterConfig::new(addr.clone())
            .runtime(runtime_on(backend, 1))
            .retry(buffstreams::RetryPolicy::forever())
            .send_queue_bytes(64 * 1024)
            .on_failed(move |batch| {
                for m in batch.messages {
                    f.lock()
                        .unwrap()
                        .push(u32::from_be_bytes(m[..4].try_into().unwrap()));
                }
            })
            .tls(pki.client(false), localhost()),
    )
    .unwrap();
    let w = writer.clone();
    let streamer = std::thread::spawn(move || {
        let mut msg = [7u8; 64];
        let mut out = buffered.then(|| w.buffered());
        for seq in 0..TOTAL {
            msg[..4].copy_from_slice(&seq.to_be_bytes());
            match out.as_mut() {
                Some(out) => out.write(&msg).map(drop).unwrap(),
                None => w.write(&msg).map(drop).unwrap(),
            }
        }
        if let Some(mut out) = out {
            out.flush().unwrap();
        }
    });
    assert!(wait_until(Duration::from_secs(10), || received
        .lock()
        .unwrap()
        .len()
        > 20_000));
    listener.close();
    std::thread::sleep(Duration::from_millis(50));
    let listener = make_listener(&addr);
    streamer.join().unwrap();
    let leftover = writer.close_timeout(Duration::from_secs(10));
    let mut returned = failed.lock().unwrap().clone();
    if let Err(unsent) = leftover {
        returned.extend(
            unsent
                .unsent
                .iter()
                .map(|m| u32::from_be_bytes(m[..4].try_into().unwrap())),
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    listener.close();
    let got = received.lock().unwrap().clone();
    let conns: std::collections::HashSet<u64> = got.iter().map(|g| g.0).collect();
    assert!(conns.len() >= 2, "the stream did not span a reconnect");
    let seqs: Vec<u32> = got.iter().map(|g| g.1).collect();
    let unique: std::collections::HashSet<u32> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a message was received twice");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "reordered");
    assert!(
        returned.iter().all(|s| !unique.contains(s)),
        "received and returned"
    );
    let lost = TOTAL as usize - unique.len() - returned.len();
    eprintln!(
        "received {} on {} connections, returned {}, lost in kernel buffers {lost}",
        unique.len(),
        conns.len(),
        returned.len()
    );
    // The writer's send buffer plus the dead listener's receive buffer, at most their sysctl
    // maximum each (as in tests/delivery.rs).
    let sysctl_max = |path: &str| -> usize {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|v| v.split_whitespace().last()?.parse().ok())
            .unwrap_or(4 << 20)
    };
    let in_kernel =
        sysctl_max("/proc/sys/net/ipv4/tcp_wmem") + sysctl_max("/proc/sys/net/ipv4/tcp_rmem");
    assert!(
        lost <= in_kernel / (4 + 64),
        "{lost} messages unaccounted for"
    );
}

fn restart_mid_stream_plain_writes(backend: Backend) {
    restart_mid_stream(backend, false);
}

fn restart_mid_stream_buffered(backend: Backend) {
    restart_mid_stream(backend, true);
}

on_both_backends!(restart_mid_stream_plain_writes, restart_mid_stream_buffered);

/// The Manager takes the same TLS options: a TLS listener and a TLS writer kept by address.
fn through_the_manager(backend: Backend) {
    let pki = Pki::new();
    let manager = buffstreams::Manager::new(runtime_on(backend, 1)).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let endpoint = manager
        .listen(
            ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
                assert!(conn.info().tls.is_some());
                assert_eq!(msg, b"via the manager");
                c.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .tls(pki.server(true)),
        )
        .unwrap();
    let addr = endpoint.to_string();
    manager
        .dial(WriterConfig::new(addr.clone()).tls(pki.client(true), localhost()))
        .unwrap();
    for _ in 0..10 {
        manager.write_to(&addr, b"via the manager").unwrap();
    }
    manager.flush(&addr).unwrap();
    assert!(wait_until(Duration::from_secs(5), || count
        .load(Ordering::Relaxed)
        == 10));
    manager.shutdown(Duration::from_secs(2));
}

on_both_backends!(through_the_manager);

/// A writer's clean close ends its TLS stream with `close_notify`: a strict peer (rustls, which
/// calls a close without it a truncation) reads everything, then a clean end.
fn a_clean_close_sends_close_notify(backend: Backend) {
    use std::io::Read;
    let pki = Pki::new();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let config = pki.server(false);
    let peer = std::thread::spawn(move || {
        let (sock, _) = server.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let conn = buffstreams::tls::rustls::ServerConnection::new(config).unwrap();
        let mut tls = buffstreams::tls::rustls::StreamOwned::new(conn, sock);
        let mut got = Vec::new();
        let end = tls.read_to_end(&mut got);
        (got.len(), end.map(drop))
    });
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .runtime(runtime_on(backend, 1))
            .tls(pki.client(false), localhost()),
    )
    .unwrap();
    for _ in 0..1000 {
        writer.write(&[5u8; 100]).unwrap();
    }
    writer.close().unwrap();
    let (len, end) = peer.join().unwrap();
    assert_eq!(len, 1000 * 104, "every frame arrived ({end:?})");
    assert!(
        end.is_ok(),
        "the stream ended without close_notify: {end:?}"
    );
}

on_both_backends!(a_clean_close_sends_close_notify);

/// A writer that writes and closes at once loses nothing. The listener's TLS 1.3 session
/// tickets (rustls sends 2) can reach the writer's socket after it stopped reading; closing a
/// socket with unread bytes makes Linux reset the connection and drop what it had not sent
/// yet. A clean close sends `close_notify` and lets the socket linger, its sending side shut,
/// until the peer closes (about 1 run in 3 lost its tail on io_uring before that).
fn close_right_after_writing_loses_nothing(backend: Backend) {
    common::init_tracing();
    let pki = Pki::new();
    for run in 0..20 {
        let got = Arc::new(AtomicU64::new(0));
        let seen = got.clone();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |_msg, _conn| {
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .runtime(runtime_on(backend, 1))
            .tls(pki.server(false)),
        )
        .unwrap();
        let writer = Writer::dial(
            WriterConfig::new(listener.local_addr().to_string())
                .runtime(runtime_on(backend, 1))
                .tls(pki.client(false), localhost()),
        )
        .unwrap();
        let mut out = writer.buffered();
        for i in 0..5000usize {
            out.write(&vec![7u8; (i * 7) % 300 + 3]).unwrap();
        }
        out.flush().unwrap();
        drop(out);
        writer.close().unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || got.load(Ordering::Relaxed)
                == 5000),
            "run {run}: the listener got {} of 5000",
            got.load(Ordering::Relaxed)
        );
        listener.close();
    }
}

on_both_backends!(close_right_after_writing_loses_nothing);

/// The listener's handshake thread runs at the nice value asked for (10 by default): what
/// keeps a handshake flood from taking the CPU of established streams (`benches/tls_flood`).
#[test]
fn the_handshake_thread_runs_at_a_lower_priority() {
    let pki = Pki::new();
    // The nice values of this process's TLS handshake threads (field 19 of a task's stat).
    let nices = || -> Vec<i64> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let dir = task.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                if comm.trim() != "buffstreams-tls" {
                    return None;
                }
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let after_comm = &stat[stat.rfind(')')? + 2..];
                after_comm.split_whitespace().nth(16)?.parse().ok()
            })
            .collect()
    };
    for nice in [buffstreams::tls::DEFAULT_HANDSHAKE_NICE, 5] {
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", |_m, _c| Ok(()))
                .runtime(runtime_on(Backend::Epoll, 1))
                .tls(pki.server(false))
                .handshake_nice(nice),
        )
        .unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || nices().contains(&(nice as i64))),
            "no handshake thread at nice {nice}: {:?}",
            nices()
        );
        listener.close();
    }
}
