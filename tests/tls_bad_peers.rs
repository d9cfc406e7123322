//! Bad peers at a TLS listener, each in its own test on both backends: the bad connection is
//! closed with a typed error (a failed handshake is counted in `handshake_failures`; a bad
//! record or a truncation closes the connection with `ConnError::Tls`), and a good TLS stream
//! on the same core goes on flowing. And bad servers for a TLS writer: a refused certificate
//! makes it give up at once, handing its messages to `on_failed` with the reason.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::tls::rustls::{ClientConnection, StreamOwned};
use buffstreams::tls::TlsError;
use buffstreams::{
    Backend, CloseReason, ConnError, DialError, FailReason, Listener, ListenerConfig, RetryPolicy,
    Writer, WriterConfig,
};
use common::tls::{localhost, Leaf, Pki};
use common::{on_both_backends, runtime_on, wait_until};

/// A one-core TLS listener counting messages, recording why connections closed.
struct Served {
    listener: Listener,
    count: Arc<AtomicU64>,
    closes: Arc<Mutex<Vec<CloseReason>>>,
}

fn serve(backend: Backend, pki: &Pki, mtls: bool, timeout: Duration) -> Served {
    serve_with(backend, pki, mtls, |cfg| cfg.handshake_timeout(timeout))
}

/// [`serve`], with `tweak` applied to the listener's TLS configuration.
fn serve_with(
    backend: Backend,
    pki: &Pki,
    mtls: bool,
    tweak: impl FnOnce(ListenerConfig) -> ListenerConfig,
) -> Served {
    common::init_tracing();
    let count = Arc::new(AtomicU64::new(0));
    let closes: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let (c, r) = (count.clone(), closes.clone());
    let listener = Listener::bind(tweak(
        ListenerConfig::new("127.0.0.1:0", move |_msg, _conn| {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .on_close(move |_info, reason, _unsent| {
            r.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(reason.clone())
        })
        .runtime(runtime_on(backend, 1))
        .tls(pki.server(mtls)),
    ))
    .unwrap();
    Served {
        listener,
        count,
        closes,
    }
}

/// A good TLS writer on `served`'s core, with one message through.
fn good_writer(served: &Served, pki: &Pki, mtls: bool) -> Writer {
    let writer = Writer::dial(
        WriterConfig::new(served.listener.local_addr().to_string())
            .tls(pki.client(mtls), localhost()),
    )
    .unwrap();
    writer.write(b"good").unwrap();
    assert!(wait_until(Duration::from_secs(5), || served
        .count
        .load(Ordering::Relaxed)
        > 0));
    writer
}

/// The good writer's next messages still arrive.
fn still_flows(served: &Served, writer: &Writer) {
    let before = served.count.load(Ordering::Relaxed);
    for _ in 0..100 {
        writer.write(b"still good").unwrap();
    }
    writer.flush().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || served
            .count
            .load(Ordering::Relaxed)
            >= before + 100),
        "the good stream stopped"
    );
}

fn handshake_failures(served: &Served) -> u64 {
    served.listener.stats().handshake_failures
}

/// Sends `bytes` raw, and waits for the listener to close the connection.
fn raw_then_closed(served: &Served, bytes: &[u8]) {
    let mut sock = TcpStream::connect(served.listener.local_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    // The listener answers with an alert (or nothing) and closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(Instant::now() < deadline, "not closed"),
        }
    }
}

fn plaintext_client_is_refused(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_secs(5));
    let good = good_writer(&served, &pki, false);
    // A plain u32-prefixed frame.
    raw_then_closed(&served, &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    assert!(wait_until(Duration::from_secs(5), || handshake_failures(
        &served
    ) == 1));
    assert_eq!(
        served.count.load(Ordering::Relaxed),
        1,
        "nothing delivered from it"
    );
    still_flows(&served, &good);
}

fn garbage_instead_of_client_hello(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_secs(5));
    let good = good_writer(&served, &pki, false);
    let mut rng = common::Rng::new(3);
    let garbage: Vec<u8> = (0..3000).map(|_| rng.next() as u8).collect();
    raw_then_closed(&served, &garbage);
    assert!(wait_until(Duration::from_secs(5), || handshake_failures(
        &served
    ) == 1));
    still_flows(&served, &good);
}

/// The first bytes of a real ClientHello, then silence: the handshake timeout closes it.
fn truncated_handshake_times_out(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_millis(300));
    let good = good_writer(&served, &pki, false);
    let mut conn = ClientConnection::new(pki.client(false), localhost()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut sock = TcpStream::connect(served.listener.local_addr()).unwrap();
    sock.write_all(&hello[..hello.len() / 2]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || handshake_failures(
        &served
    ) == 1));
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(sock.read(&mut [0u8; 64]), Ok(0) | Err(_)),
        "closed"
    );
    still_flows(&served, &good);
}

/// A finished handshake on a raw rustls client, for tests that then misbehave.
fn raw_client(served: &Served, pki: &Pki) -> StreamOwned<ClientConnection, TcpStream> {
    let conn = ClientConnection::new(pki.client(false), localhost()).unwrap();
    let sock = TcpStream::connect(served.listener.local_addr()).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(&[0, 0, 0, 2, b'o', b'k']).unwrap();
    tls.flush().unwrap();
    tls
}

fn the_tls_error(served: &Served) -> TlsError {
    let closes = || {
        served
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    };
    assert!(wait_until(Duration::from_secs(5), || closes()
        .iter()
        .any(|r| matches!(r, CloseReason::Error(_)))));
    // Not under the lock: a failed assertion must not poison it for the close hook.
    for reason in closes() {
        if let CloseReason::Error(err) = reason {
            if let ConnError::Tls(tls) = &*err {
                return clone_tls(tls);
            }
            panic!("closed with {err}, not a TLS error");
        }
    }
    unreachable!()
}

fn clone_tls(e: &TlsError) -> TlsError {
    match e {
        TlsError::Protocol(e) => TlsError::Protocol(e.clone()),
        TlsError::Truncated => TlsError::Truncated,
        other => panic!("unexpected {other}"),
    }
}

fn alert_mid_stream_closes(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_secs(5));
    let good = good_writer(&served, &pki, false);
    let mut tls = raw_client(&served, &pki);
    assert!(wait_until(Duration::from_secs(5), || served
        .count
        .load(Ordering::Relaxed)
        == 2));
    // Garbage fed to the client's own rustls makes it send a fatal (encrypted) alert.
    let _ = tls
        .conn
        .read_tls(&mut &[0x17u8, 0x03, 0x03, 0x00, 0x01, 0x00][..]);
    assert!(tls.conn.process_new_packets().is_err());
    tls.conn.write_tls(&mut tls.sock).unwrap();
    let err = the_tls_error(&served);
    assert!(
        matches!(
            err,
            TlsError::Protocol(buffstreams::tls::rustls::Error::AlertReceived(_))
        ),
        "{err}"
    );
    still_flows(&served, &good);
}

fn oversized_record_closes(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_secs(5));
    let good = good_writer(&served, &pki, false);
    let mut tls = raw_client(&served, &pki);
    // An application-data record header announcing 65,535 bytes (the maximum is 2^14 + 256).
    tls.sock.write_all(&[0x17, 0x03, 0x03, 0xff, 0xff]).unwrap();
    tls.sock.write_all(&[0u8; 1024]).unwrap();
    let err = the_tls_error(&served);
    assert!(matches!(err, TlsError::Protocol(_)), "{err}");
    still_flows(&served, &good);
}

fn close_without_close_notify_inside_a_frame(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, false, Duration::from_secs(5));
    let good = good_writer(&served, &pki, false);
    let mut tls = raw_client(&served, &pki);
    // Half a frame (a 100-byte message announced, 10 bytes sent), then the end of the TCP
    // stream with no close_notify. (A shutdown, not a close: closing a socket holding unread
    // bytes, the server's session tickets, would reset the connection instead.)
    tls.write_all(&[0, 0, 0, 100]).unwrap();
    tls.write_all(&[1u8; 10]).unwrap();
    tls.flush().unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let err = the_tls_error(&served);
    assert!(matches!(err, TlsError::Truncated), "{err}");
    drop(tls);
    still_flows(&served, &good);
}

fn missing_client_certificate_under_mutual_tls(backend: Backend) {
    let pki = Pki::new();
    let served = serve(backend, &pki, true, Duration::from_secs(5));
    let good = good_writer(&served, &pki, true);
    // A raw client without a certificate, then one with a certificate from another CA: the
    // server refuses each at the end of the handshake, and delivers nothing of theirs.
    for (failures, identity) in [(1, None), (2, Some(&pki.rogue_client))] {
        let conn = ClientConnection::new(pki.client_with(identity), localhost()).unwrap();
        let sock = TcpStream::connect(served.listener.local_addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        let _ = tls.write_all(&[0, 0, 0, 2, b'n', b'o']);
        let _ = tls.flush();
        let _ = tls.read(&mut [0u8; 64]);
        assert!(wait_until(Duration::from_secs(5), || handshake_failures(
            &served
        ) == failures));
        assert_eq!(
            served.count.load(Ordering::Relaxed),
            1,
            "nothing from it delivered"
        );
    }
    still_flows(&served, &good);
}

on_both_backends!(
    plaintext_client_is_refused,
    garbage_instead_of_client_hello,
    truncated_handshake_times_out,
    alert_mid_stream_closes,
    oversized_record_closes,
    close_without_close_notify_inside_a_frame,
    missing_client_certificate_under_mutual_tls,
);

/// A writer dialing a server whose certificate is refused gives up at once: `dial` fails with
/// the reason, and a background writer hands its messages to `on_failed` after one attempt
/// (its retry policy would allow many).
fn refused_server(backend: Backend, cert: fn(&Pki) -> &Leaf, what: &str) {
    let pki = Pki::new();
    common::init_tracing();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |_m, _c| Ok(()))
            .runtime(runtime_on(backend, 1))
            .tls(pki.server_with(cert(&pki), false)),
    )
    .unwrap();
    let addr = listener.local_addr().to_string();
    let err = Writer::dial(
        WriterConfig::new(addr.clone())
            .runtime(runtime_on(backend, 1))
            .tls(pki.client(false), localhost()),
    )
    .expect_err("dial must fail");
    assert!(
        matches!(&err, DialError::Tls { source, .. } if source.is_permanent()),
        "{what}: {err}"
    );
    let failed: Arc<Mutex<Vec<(usize, u32)>>> = Arc::default();
    let f = failed.clone();
    let writer = Writer::dial(
        WriterConfig::new(addr)
            .runtime(runtime_on(backend, 1))
            .background_connect(true)
            .retry(RetryPolicy::forever())
            .on_failed(move |batch| {
                if let FailReason::GaveUp { attempts, .. } = batch.reason {
                    f.lock().unwrap().push((batch.messages.len(), attempts));
                }
            })
            .tls(pki.client(false), localhost()),
    )
    .unwrap();
    writer.write(b"never sent").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !failed
            .lock()
            .unwrap()
            .is_empty()),
        "{what}: the writer did not give up"
    );
    let got = failed.lock().unwrap().clone();
    assert_eq!(got[0].1, 1, "{what}: gave up after one attempt");
    listener.close();
}

fn untrusted_server_certificate(backend: Backend) {
    refused_server(backend, |p| &p.rogue_server, "another CA");
}

fn expired_server_certificate(backend: Backend) {
    refused_server(backend, |p| &p.expired, "expired");
}

fn wrong_name_server_certificate(backend: Backend) {
    refused_server(backend, |p| &p.wrong_name, "wrong name");
}

on_both_backends!(
    untrusted_server_certificate,
    expired_server_certificate,
    wrong_name_server_certificate,
);

/// `max_handshakes`: a connection accepted while that many handshakes are in progress is
/// closed at once and counted as refused; the good stream goes on.
fn handshakes_over_the_cap_are_refused(backend: Backend) {
    let pki = Pki::new();
    let served = serve_with(backend, &pki, false, |cfg| cfg.max_handshakes(2));
    let good = good_writer(&served, &pki, false);
    // Two silent connections hold both handshake slots (until the 10 s timeout).
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(served.listener.local_addr()).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(5), || served
        .listener
        .stats()
        .accepted
        >= 1));
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(served.listener.local_addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        matches!(third.read(&mut [0u8; 16]), Ok(0) | Err(_)),
        "closed at once"
    );
    assert!(wait_until(Duration::from_secs(5), || served
        .listener
        .stats()
        .refused
        == 1));
    still_flows(&served, &good);
    drop(silent);
}

/// The partial-frame limits apply to the plaintext: a frame started and not finished within
/// the frame timeout closes that TLS connection with `FrameTimeout`.
fn the_frame_timeout_applies_under_tls(backend: Backend) {
    let pki = Pki::new();
    let served = serve_with(backend, &pki, false, |cfg| {
        cfg.frame_timeout(Duration::from_millis(200))
    });
    let good = good_writer(&served, &pki, false);
    let mut tls = raw_client(&served, &pki);
    // Half a frame, then nothing.
    tls.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    tls.flush().unwrap();
    let closes = || {
        served
            .closes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    };
    let timed_out = wait_until(Duration::from_secs(5), || {
        closes()
            .iter()
            .any(|r| matches!(r, CloseReason::FrameTimeout(_)))
    });
    assert!(timed_out, "closed by the frame timeout: {:?}", closes());
    still_flows(&served, &good);
}

on_both_backends!(
    handshakes_over_the_cap_are_refused,
    the_frame_timeout_applies_under_tls
);
