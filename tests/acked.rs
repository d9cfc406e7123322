//! Acknowledged delivery end to end: acknowledgements, resume after connections cut while both
//! processes live (exactly once, in order), and bad input. The listener-restart test is
//! `acked_restart.rs`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::wait_until;

fn seq_of(msg: &[u8]) -> u64 {
    u64::from_be_bytes(msg[..8].try_into().expect("8 bytes"))
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0xab; len.max(8)];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// An acknowledged listener recording every sequence number it is handed, in order.
fn recording_listener() -> (Listener, Arc<Mutex<Vec<u64>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _conn| {
            sink.lock().unwrap().push(seq_of(msg));
            Ok(())
        })
        .cores(2)
        .acked(true),
    )
    .expect("bind");
    (listener, got)
}

#[test]
fn every_message_is_acknowledged_and_delivered_once_in_order() {
    let (listener, got) = recording_listener();
    let writer = Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .acked(true)
            .max_unacked_bytes(256 << 10),
    )
    .expect("dial");
    let n = 200_000u64;
    for seq in 1..=n {
        writer.write(&payload(seq, 32)).expect("write");
    }
    writer.flush_acked().expect("flush_acked");
    let stats = writer.acked_stats().expect("acked");
    assert_eq!((stats.acked, stats.written, stats.resent), (n, n, 0));
    let got = got.lock().unwrap();
    assert_eq!(got.len() as u64, n);
    assert!(got.iter().copied().eq(1..=n), "in order, once each");
    assert_eq!(listener.stats().ack_sessions, 1);
}

/// Connections cut at random points (the proxy drops what it holds, both ways) while both
/// ends live: every message arrives exactly once, in order.
#[test]
fn connections_cut_while_both_live_lose_and_duplicate_nothing() {
    let (listener, got) = recording_listener();
    let proxy = common::cutter::Cutter::start(listener.local_addr(), 20_000, 400_000, 7);
    let writer = Writer::dial(
        WriterConfig::new(proxy.addr.to_string())
            .acked(true)
            .max_unacked_bytes(128 << 10)
            .retry(RetryPolicy::forever()),
    )
    .expect("dial");
    let n = 300_000u64;
    let w = writer.clone();
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let t = std::thread::spawn(move || {
        for seq in 1..=n {
            w.write(&payload(seq, 40)).expect("write");
        }
        w.flush_acked().expect("flush_acked");
        d.store(1, Ordering::Relaxed);
    });
    assert!(
        wait_until(Duration::from_secs(60), || done.load(Ordering::Relaxed)
            == 1),
        "not all acknowledged in time: {:?}, {} cuts",
        writer.acked_stats(),
        proxy.cuts()
    );
    t.join().expect("writer thread");
    let stats = writer.acked_stats().expect("acked");
    let got = got.lock().unwrap();
    let lstats = listener.stats();
    eprintln!(
        "{} cuts, {} re-sent, {} dropped as delivered already",
        proxy.cuts(),
        stats.resent,
        lstats.duplicates_dropped
    );
    assert!(proxy.cuts() >= 5, "the proxy cut connections");
    assert_eq!(got.len() as u64, n, "exactly once");
    assert!(got.iter().copied().eq(1..=n), "in order");
    assert_eq!(stats.acked, n);
    assert!(
        stats.resent > 0,
        "cuts lost bytes in flight, which were re-sent"
    );
    assert_eq!(
        lstats.possible_duplicates, 0,
        "the listener lived: nothing flagged"
    );
}
