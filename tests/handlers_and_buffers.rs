//! Handler error policies and panics, receive-buffer exhaustion, and large frames that span
//! many receive buffers and partial sends — on both backends.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, CloseReason, ConnError, HandlerError, HandlerErrorPolicy, Listener, ListenerConfig,
    Runtime, RuntimeConfig, Writer, WriterConfig,
};
use common::wait_until;

fn backends() -> Vec<Backend> {
    vec![Backend::IoUring, Backend::Epoll]
}

fn runtime(backend: Backend, cores: usize) -> RuntimeConfig {
    RuntimeConfig {
        cores,
        backend,
        pin: false,
        ..RuntimeConfig::default()
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

type Closed = Arc<Mutex<HashMap<SocketAddr, CloseReason>>>;

/// A one-core listener whose handler fails on "fail", panics on "panic", counts the rest.
fn policy_listener(
    backend: Backend,
    policy: HandlerErrorPolicy,
) -> (Listener, Closed, Arc<AtomicU64>) {
    let closed: Closed = Arc::default();
    let ok = Arc::new(AtomicU64::new(0));
    let (c, o) = (closed.clone(), ok.clone());
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| match msg {
            b"fail" => Err(HandlerError::msg("refused")),
            b"panic" => panic!("handler panic (expected by the test)"),
            _ => {
                o.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .runtime(runtime(backend, 1))
        .on_handler_error(policy)
        .on_close(move |info, reason, _| {
            c.lock().unwrap().insert(info.peer, reason.clone());
        }),
    )
    .unwrap();
    (listener, closed, ok)
}

#[test]
fn log_and_continue_keeps_reading_after_a_handler_error() {
    for backend in backends() {
        let (listener, closed, ok) = policy_listener(backend, HandlerErrorPolicy::LogAndContinue);
        let mut s = TcpStream::connect(listener.local_addr()).unwrap();
        for m in [&b"a"[..], b"fail", b"b"] {
            s.write_all(&frame(m)).unwrap();
        }
        assert!(
            wait_until(Duration::from_secs(5), || ok.load(Ordering::Relaxed) == 2),
            "{backend:?}"
        );
        assert!(
            closed.lock().unwrap().is_empty(),
            "{backend:?}: closed on a handler error"
        );
        listener.close();
    }
}

#[test]
fn close_policy_closes_only_that_connection() {
    for backend in backends() {
        let (listener, closed, ok) = policy_listener(backend, HandlerErrorPolicy::Close);
        let mut good = TcpStream::connect(listener.local_addr()).unwrap();
        let mut bad = TcpStream::connect(listener.local_addr()).unwrap();
        bad.write_all(&frame(b"fail")).unwrap();
        bad.write_all(&frame(b"after")).unwrap();
        let peer = bad.local_addr().unwrap();
        assert!(wait_until(Duration::from_secs(5), || closed
            .lock()
            .unwrap()
            .contains_key(&peer)));
        let reason = closed.lock().unwrap()[&peer].clone();
        assert!(
            matches!(&reason, CloseReason::Error(e) if matches!(&**e, ConnError::Handler(_))),
            "{backend:?}: {reason:?}"
        );
        good.write_all(&frame(b"still here")).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || ok.load(Ordering::Relaxed) == 1),
            "{backend:?}"
        );
        listener.close();
    }
}

#[test]
fn a_panicking_handler_closes_its_connection_and_the_core_lives_on() {
    for backend in backends() {
        let (listener, closed, ok) = policy_listener(backend, HandlerErrorPolicy::LogAndContinue);
        let mut bad = TcpStream::connect(listener.local_addr()).unwrap();
        bad.write_all(&frame(b"panic")).unwrap();
        let peer = bad.local_addr().unwrap();
        assert!(wait_until(Duration::from_secs(5), || closed
            .lock()
            .unwrap()
            .contains_key(&peer)));
        let reason = closed.lock().unwrap()[&peer].clone();
        assert!(
            matches!(&reason, CloseReason::Error(e) if matches!(&**e, ConnError::HandlerPanic)),
            "{backend:?}: {reason:?}"
        );
        // The same core still accepts and serves.
        let mut next = TcpStream::connect(listener.local_addr()).unwrap();
        next.write_all(&frame(b"ok")).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || ok.load(Ordering::Relaxed) == 1),
            "{backend:?}"
        );
        listener.close();
    }
}

/// Two 4 KiB receive buffers for a core streaming from 4 connections: the buffer ring runs dry
/// over and over (io_uring re-arms the multishot receive each time) and nothing is lost.
#[test]
fn a_tiny_receive_buffer_ring_runs_dry_and_recovers() {
    let rt = Runtime::new(RuntimeConfig {
        cores: 1,
        backend: Backend::IoUring,
        pin: false,
        recv_buffers: 2,
        recv_buffer_size: 4096,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let listener = Listener::bind_on(
        &rt,
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            assert_eq!(msg.len(), 100);
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    )
    .unwrap();
    const PER: u64 = 50_000;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let addr = listener.local_addr().to_string();
            std::thread::spawn(move || {
                let w = Writer::dial(WriterConfig::new(addr)).unwrap();
                for _ in 0..PER {
                    w.write(&[3u8; 100]).unwrap();
                }
                w.close().unwrap();
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(wait_until(Duration::from_secs(20), || received
        .load(Ordering::Relaxed)
        == 4 * PER));
    let stats = listener.runtime().stats();
    assert!(
        stats[0].recv_no_buffers > 0,
        "the ring never ran dry: {stats:?}"
    );
    listener.close();
}

/// 4 MiB messages: each spans many receive buffers (assembled once) and many partial sends.
#[test]
fn large_frames_span_buffers_and_partial_sends() {
    for backend in backends() {
        const SIZE: usize = 4 << 20;
        let sums = Arc::new(Mutex::new(Vec::new()));
        let s = sums.clone();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                // A slow reader: the sender's socket buffer fills and sends come back partial.
                std::thread::sleep(Duration::from_millis(30));
                let sum: u64 = msg.iter().map(|&b| u64::from(b)).sum();
                s.lock().unwrap().push((msg.len(), sum));
                Ok(())
            })
            .max_message_size(SIZE)
            .runtime(runtime(backend, 1)),
        )
        .unwrap();
        let writer = Writer::dial(
            WriterConfig::new(listener.local_addr().to_string())
                .max_message_size(SIZE)
                .runtime(runtime(backend, 1)),
        )
        .unwrap();
        let mut expect = Vec::new();
        for i in 0..8u8 {
            let msg: Vec<u8> = (0..SIZE).map(|j| (j as u8).wrapping_mul(i + 1)).collect();
            expect.push((SIZE, msg.iter().map(|&b| u64::from(b)).sum::<u64>()));
            writer.write(&msg).unwrap();
        }
        writer.close().unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || sums.lock().unwrap().len() == 8),
            "{backend:?}"
        );
        assert_eq!(*sums.lock().unwrap(), expect, "{backend:?}");
        assert!(
            writer.runtime().stats()[0].sends > 8,
            "{backend:?}: no partial sends"
        );
        listener.close();
    }
}
