//! Acknowledged delivery over TLS: the hello and every re-sent chunk are sealed anew for each
//! connection, through connections cut at random points.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::tls::{localhost, Pki};
use buffstreams::{Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};

#[test]
fn tls_connections_cut_while_both_live_lose_and_duplicate_nothing() {
    let pki = Pki::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            sink.lock()
                .unwrap()
                .push(u64::from_be_bytes(msg[..8].try_into().expect("8 bytes")));
            Ok(())
        })
        .cores(1)
        .acked(true)
        .tls(pki.server(false)),
    )
    .expect("bind");
    let proxy = crate::common::cutter::Cutter::start(listener.local_addr(), 30_000, 300_000, 5);
    let writer = Writer::dial(
        WriterConfig::new(proxy.addr.to_string())
            .acked(true)
            .max_unacked_bytes(256 << 10)
            .retry(RetryPolicy::forever())
            .tls(pki.client(false), localhost()),
    )
    .expect("dial");
    let n = 100_000u64;
    let w = writer.clone();
    let t = std::thread::spawn(move || {
        for seq in 1..=n {
            let mut msg = [0u8; 40];
            msg[..8].copy_from_slice(&seq.to_be_bytes());
            w.write(&msg).expect("write");
        }
        w.flush_acked().expect("flush_acked");
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !t.is_finished() {
        assert!(Instant::now() < deadline, "{:?}", writer.acked_stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    t.join().expect("writer thread");
    let got = got.lock().unwrap();
    eprintln!("{} cuts, {:?}", proxy.cuts(), writer.acked_stats());
    assert!(proxy.cuts() >= 3, "cut {} times", proxy.cuts());
    assert_eq!(got.len() as u64, n, "exactly once");
    assert!(got.iter().copied().eq(1..=n), "in order");
}
