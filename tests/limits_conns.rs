//! Connection limits, the same on both backends: idle and frame timeouts, the connection cap,
//! connections reset before accept, and the 16-bit framings' default maximum.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{Backend, CloseReason, Framing, Listener, ListenerConfig, Writer, WriterConfig};
use common::{runtime_on, wait_until, BACKENDS};

type Closed = Arc<Mutex<HashMap<SocketAddr, CloseReason>>>;

fn recording_listener(
    backend: Backend,
    config: impl FnOnce(ListenerConfig) -> ListenerConfig,
) -> (Listener, Closed, Arc<AtomicU64>) {
    let closed: Closed = Arc::default();
    let got = Arc::new(AtomicU64::new(0));
    let (c, g) = (closed.clone(), got.clone());
    let base = ListenerConfig::new("127.0.0.1:0", move |_msg, _| {
        g.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .runtime(runtime_on(backend, 1))
    .on_close(move |info, reason, _| {
        c.lock().unwrap().insert(info.peer, reason.clone());
    });
    let listener = Listener::bind(config(base)).unwrap();
    (listener, closed, got)
}

fn timeouts_close_silent_and_stuck_peers_only(backend: Backend) {
    const LIMIT: Duration = Duration::from_millis(300);
    let (listener, closed, got) =
        recording_listener(backend, |c| c.idle_timeout(LIMIT).frame_timeout(LIMIT));
    let addr = listener.local_addr();
    let start = Instant::now();
    // Silent: connects and says nothing.
    let silent = TcpStream::connect(addr).unwrap();
    // Stuck: half a frame, then a byte every 50 ms (never idle, never finishing).
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck.write_all(&100u32.to_be_bytes()).unwrap();
    // Busy: a whole message every 50 ms.
    let mut busy = TcpStream::connect(addr).unwrap();
    while start.elapsed() < 4 * LIMIT {
        let _ = stuck.write_all(&[1]);
        busy.write_all(&[0, 0, 0, 2, b'h', b'i']).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let reason = |s: &TcpStream| {
        closed
            .lock()
            .unwrap()
            .get(&s.local_addr().unwrap())
            .cloned()
    };
    assert!(
        matches!(reason(&silent), Some(CloseReason::IdleTimeout(t)) if t == LIMIT),
        "{backend:?}: silent peer: {:?}",
        reason(&silent)
    );
    assert!(
        matches!(reason(&stuck), Some(CloseReason::FrameTimeout(t)) if t == LIMIT),
        "{backend:?}: stuck peer: {:?}",
        reason(&stuck)
    );
    assert!(
        reason(&busy).is_none(),
        "{backend:?}: busy peer closed: {:?}",
        reason(&busy)
    );
    assert!(got.load(Ordering::Relaxed) >= 10);
    let stats = &listener.runtime().stats()[0];
    assert_eq!(
        (stats.idle_timeouts, stats.frame_timeouts),
        (1, 1),
        "{backend:?}"
    );
    // The silent peer sees its connection closed.
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(matches!(silent.read(&mut [0; 8]), Ok(0) | Err(_)));
    listener.close();
}

#[test]
fn timeouts_close_silent_and_stuck_peers_only_uring() {
    timeouts_close_silent_and_stuck_peers_only(BACKENDS[0]);
}

#[test]
fn timeouts_close_silent_and_stuck_peers_only_epoll() {
    timeouts_close_silent_and_stuck_peers_only(BACKENDS[1]);
}

/// By default, an idle connection stays open.
#[test]
fn no_idle_timeout_by_default() {
    let (listener, closed, _) = recording_listener(BACKENDS[0], |c| c);
    let idle = TcpStream::connect(listener.local_addr()).unwrap();
    assert!(wait_until(Duration::from_secs(2), || listener
        .connections()
        .len()
        == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(closed.lock().unwrap().is_empty());
    drop(idle);
    listener.close();
}

fn connections_over_the_cap_are_refused(backend: Backend) {
    const CAP: usize = 4;
    let (listener, closed, got) = recording_listener(backend, |c| c.max_connections(CAP));
    let addr = listener.local_addr();
    let writers: Vec<Writer> = (0..CAP)
        .map(|_| Writer::dial(WriterConfig::new(addr.to_string())).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(5), || listener
        .connections()
        .len()
        == CAP));
    // Over the cap: accepted and closed at once.
    for _ in 0..10 {
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = extra.write_all(&[0, 0, 0, 1, b'x']);
        assert!(
            matches!(extra.read(&mut [0; 8]), Ok(0) | Err(_)),
            "{backend:?}"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || listener
        .runtime()
        .stats()[0]
        .refused
        == 10));
    // Existing connections keep streaming.
    let before = got.load(Ordering::Relaxed);
    for w in &writers {
        for _ in 0..100 {
            w.write(b"still here").unwrap();
        }
        w.flush().unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::Relaxed)
        == before + 400));
    let stats = &listener.runtime().stats()[0];
    assert_eq!(stats.accepted, CAP as u64);
    assert!(
        closed.lock().unwrap().is_empty(),
        "a refused connection reached on_close"
    );
    // A slot that frees is usable again.
    writers[0].close().unwrap();
    assert!(wait_until(Duration::from_secs(5), || listener
        .connections()
        .len()
        == CAP - 1));
    let again = Writer::dial(WriterConfig::new(addr.to_string())).unwrap();
    again.write(b"in").unwrap();
    again.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::Relaxed)
        == before + 401));
    listener.close();
}

#[test]
fn connections_over_the_cap_are_refused_uring() {
    connections_over_the_cap_are_refused(BACKENDS[0]);
}

#[test]
fn connections_over_the_cap_are_refused_epoll() {
    connections_over_the_cap_are_refused(BACKENDS[1]);
}

/// Connect, then reset at once (SO_LINGER 0): each is accepted, counted and reported to
/// `on_close` as an error, on both backends.
#[test]
fn connections_reset_before_accept_are_accounted_alike() {
    const N: usize = 2000;
    for backend in BACKENDS {
        let reports = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (r, e) = (reports.clone(), errors.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", |_, _| Ok(()))
                .runtime(runtime_on(backend, 1))
                .backlog(4096)
                .on_close(move |_, reason, _| {
                    r.fetch_add(1, Ordering::Relaxed);
                    if matches!(reason, CloseReason::Error(_)) {
                        e.fetch_add(1, Ordering::Relaxed);
                    }
                }),
        )
        .unwrap();
        let mut made = 0u64;
        for _ in 0..N {
            let Ok(s) = TcpStream::connect(listener.local_addr()) else {
                continue;
            };
            made += 1;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
        assert!(
            made as usize > N / 2,
            "{backend:?}: only {made} connects succeeded"
        );
        let settled = wait_until(Duration::from_secs(20), || {
            reports.load(Ordering::Relaxed) == made
        });
        let stats = listener.runtime().stats()[0];
        assert!(
            settled && stats.accepted == made && listener.connections().is_empty(),
            "{backend:?}: made {made}, accepted {}, reported {}, still open {}",
            stats.accepted,
            reports.load(Ordering::Relaxed),
            listener.connections().len()
        );
        // Each was reset: reported as an error (ECONNRESET), and counted as one.
        assert_eq!(errors.load(Ordering::Relaxed), made, "{backend:?}");
        assert_eq!(stats.conn_errors, made, "{backend:?}");
        listener.close();
    }
}

/// A 16-bit framing without an explicit maximum gets its own largest length instead of failing
/// on the 8 MiB default.
#[test]
fn sixteen_bit_framings_default_to_their_largest_length() {
    for framing in [Framing::U16Be, Framing::U16Le] {
        let got = Arc::new(AtomicU64::new(0));
        let g = got.clone();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                g.fetch_add(msg.len() as u64, Ordering::Relaxed);
                Ok(())
            })
            .framing(framing)
            .runtime(runtime_on(BACKENDS[0], 1)),
        )
        .unwrap();
        let writer =
            Writer::dial(WriterConfig::new(listener.local_addr().to_string()).framing(framing))
                .unwrap();
        writer.write(&vec![7; 65_535]).unwrap();
        assert!(writer.write(&vec![7; 65_536]).is_err());
        writer.close().unwrap();
        assert!(wait_until(Duration::from_secs(5), || got
            .load(Ordering::Relaxed)
            == 65_535));
        listener.close();
    }
}
