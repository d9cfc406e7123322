//! A writer's link through its reconnect states, on a real core but driven by hand: the
//! background redial is held off by an hour-long backoff, and the test calls the redial itself.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::handle::{Gate, Next, Redial};
use crate::error::FailReason;
use crate::stream::retry::Reconnect;
use crate::writer::shared::Link;
use crate::{Failed, RetryPolicy, Writer, WriterConfig};

/// An address nothing listens on (bound once, then released).
fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn wait_until(mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

type Failures = Arc<Mutex<Vec<Failed>>>;

/// A writer to a refused address, connecting in the background, allowed `max` failed attempts
/// an hour apart; its `on_failed` calls are collected.
fn writer(addr: SocketAddr, max: u32) -> (Writer, Failures) {
    let failures: Failures = Arc::default();
    let sink = failures.clone();
    let policy = RetryPolicy {
        max_attempts: Some(max),
        initial_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        multiplier: 1.0,
        jitter: 0.0,
    };
    let config = WriterConfig::new(addr.to_string())
        .background_connect(true)
        .retry(policy)
        .on_failed(move |f| sink.lock().expect("lock").push(f));
    (Writer::dial(config).expect("dial"), failures)
}

#[test]
fn the_link_names_each_gate() {
    let err = Arc::new(crate::ConnError::NotConnected);
    assert!(matches!(Link::from(Gate::Open), Link::Up));
    assert!(matches!(Link::from(Gate::Reconnecting), Link::Reconnecting));
    assert!(matches!(Link::from(Gate::Refusing(err)), Link::Down(_)));
    assert!(matches!(Link::from(Gate::Closed), Link::Closed));
}

#[test]
fn redials_retry_while_the_policy_allows_then_give_up_and_hand_back_the_queue() {
    let (w, failures) = writer(refused_addr(), 3);
    let inner = &*w.inner;
    // The first background attempt fails at once; the next waits an hour.
    assert!(wait_until(|| inner
        .attempts
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1));
    assert!(matches!(inner.link(), Link::Reconnecting));
    w.write(b"queued meanwhile")
        .expect("queued while reconnecting");
    assert!(matches!(inner.attempt(), Next::RetryIn(d) if d == Duration::from_secs(3600)));
    assert!(
        matches!(inner.link(), Link::Reconnecting),
        "two failures of three allowed"
    );
    assert!(failures.lock().expect("lock").is_empty());
    assert!(
        matches!(inner.attempt(), Next::Done),
        "the third failure gives up"
    );
    assert!(matches!(inner.link(), Link::Down(_)));
    let failed = failures.lock().expect("lock").pop().expect("handed back");
    assert_eq!(
        failed.messages,
        vec![bytes::Bytes::from_static(b"queued meanwhile")]
    );
    assert!(matches!(
        failed.reason,
        FailReason::GaveUp { attempts: 3, .. }
    ));
    assert!(
        matches!(inner.attempt(), Next::Done),
        "a link that is down is not redialed"
    );

    // A later write starts the reconnects again, from a fresh count.
    inner.reconnect_later();
    assert!(matches!(
        inner.link(),
        Link::Reconnecting | Link::Down(_) // the background attempt may already have failed
    ));
    assert!(wait_until(|| inner
        .attempts
        .load(std::sync::atomic::Ordering::Relaxed)
        == 1));
}

#[test]
fn a_blocking_reconnect_brings_a_down_link_up() {
    let addr = refused_addr();
    let (w, _failures) = writer(addr, 1);
    let inner = &*w.inner;
    assert!(
        wait_until(|| matches!(inner.link(), Link::Down(_))),
        "one attempt allowed"
    );
    assert!(inner.reconnect().is_err(), "still refused");
    let listener = TcpListener::bind(addr).expect("the port is free again");
    inner.reconnect().expect("connects");
    assert!(matches!(inner.link(), Link::Up));
    assert_eq!(inner.attempts.load(std::sync::atomic::Ordering::Relaxed), 0);
    w.write(b"hello").expect("write");
    w.flush().expect("flush");
    drop(listener);
}
