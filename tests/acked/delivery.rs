//! Acknowledged delivery end to end: acknowledgements, resume after connections cut while both
//! processes live (exactly once, in order), and bad input. The listener-restart test is
//! `acked_restart.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{on_both_backends, runtime_on, wait_until};
use buffstreams::{Backend, Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};

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
    recording_listener_on(None)
}

fn recording_listener_on(backend: Option<Backend>) -> (Listener, Arc<Mutex<Vec<u64>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let mut config = ListenerConfig::new("127.0.0.1:0", move |msg, _conn| {
        sink.lock().unwrap().push(seq_of(msg));
        Ok(())
    })
    .cores(2)
    .acked(true);
    if let Some(backend) = backend {
        config = config.runtime(runtime_on(backend, 2));
    }
    (Listener::bind(config).expect("bind"), got)
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

on_both_backends!(connections_cut_while_both_live_lose_and_duplicate_nothing);

/// Connections cut at random points (the proxy drops what it holds, both ways) while both
/// ends live: every message arrives exactly once, in order.
fn connections_cut_while_both_live_lose_and_duplicate_nothing(backend: Backend) {
    let (listener, got) = recording_listener_on(Some(backend));
    let proxy = crate::common::cutter::Cutter::start(listener.local_addr(), 20_000, 400_000, 7);
    let writer = Writer::dial(
        WriterConfig::new(proxy.addr.to_string())
            .acked(true)
            .max_unacked_bytes(128 << 10)
            .runtime(runtime_on(backend, 1))
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
    assert_eq!(got.len() as u64, n, "exactly once ({stats:?}, {lstats:?})");
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

/// A channel listener acknowledges a message only once the consumer took it: while the consumer
/// sleeps, `flush_acked` waits; once it has taken everything, `flush_acked` returns.
#[test]
fn a_channel_listener_acknowledges_what_the_consumer_took() {
    let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", 100_000);
    let listener = Listener::bind(config.cores(1).acked(true)).expect("bind");
    let writer = Writer::dial(WriterConfig::new(listener.local_addr().to_string()).acked(true))
        .expect("dial");
    let n = 20_000u64;
    for seq in 1..=n {
        writer.write(&payload(seq, 16)).expect("write");
    }
    let acked = Arc::new(AtomicU64::new(0));
    let (w, a) = (writer.clone(), acked.clone());
    let flusher = std::thread::spawn(move || {
        w.flush_acked().expect("flush_acked");
        a.store(1, Ordering::SeqCst);
    });
    // Everything is queued on the channel, nothing taken: nothing is acknowledged.
    assert!(wait_until(Duration::from_secs(10), || messages.len()
        as u64
        == n));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        acked.load(Ordering::SeqCst),
        0,
        "acknowledged before it was taken"
    );
    assert_eq!(writer.acked_stats().expect("acked").acked, 0);
    let taken = Arc::new(AtomicU64::new(0));
    for (i, msg) in messages.try_iter().enumerate() {
        assert_eq!(seq_of(&msg.payload), i as u64 + 1);
        assert_eq!(msg.seq(), Some(i as u64 + 1));
        assert!(!msg.possible_duplicate());
        taken.fetch_add(1, Ordering::SeqCst);
        // The writer never hears of more than was taken.
        assert!(writer.acked_stats().expect("acked").acked <= taken.load(Ordering::SeqCst));
    }
    assert_eq!(taken.load(Ordering::SeqCst), n);
    assert!(wait_until(Duration::from_secs(10), || acked
        .load(Ordering::SeqCst)
        == 1));
    flusher.join().expect("flusher");
}

/// A handler's message is acknowledged only after the handler returned; replies written on an
/// acknowledged connection reach the writer's handler (tagged apart from acknowledgements).
#[test]
fn handler_messages_are_acknowledged_after_the_handler_returns_and_replies_come_back() {
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
            if seq_of(msg) % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            conn.write(msg)?;
            h.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .cores(1)
        .acked(true),
    )
    .expect("bind");
    let replies = Arc::new(Mutex::new(Vec::new()));
    let r = replies.clone();
    let writer = Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .acked(true)
            .on_message(move |msg, _| {
                r.lock().unwrap().push(seq_of(msg));
                Ok(())
            }),
    )
    .expect("dial");
    let n = 10_000u64;
    for seq in 1..=n {
        writer.write(&payload(seq, 16)).expect("write");
        if seq % 97 == 0 {
            let acked = writer.acked_stats().expect("acked").acked;
            assert!(
                acked <= handled.load(Ordering::SeqCst),
                "acknowledged before handled"
            );
        }
    }
    writer.flush_acked().expect("flush_acked");
    assert_eq!(handled.load(Ordering::SeqCst), n);
    assert!(wait_until(
        Duration::from_secs(10),
        || replies.lock().unwrap().len() as u64 == n
    ));
    assert!(replies.lock().unwrap().iter().copied().eq(1..=n));
}

/// When the retry policy gives up, every message not acknowledged goes to `on_failed`: the
/// caller learns exactly which were never confirmed.
#[test]
fn giving_up_hands_back_exactly_the_unacknowledged_messages() {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let d = delivered.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            d.lock().unwrap().push(seq_of(msg));
            std::thread::sleep(Duration::from_micros(200));
            Ok(())
        })
        .cores(1)
        .acked(true),
    )
    .expect("bind");
    let failed = Arc::new(Mutex::new(Vec::new()));
    let f = failed.clone();
    let writer = Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .acked(true)
            .retry(RetryPolicy {
                max_attempts: Some(2),
                initial_backoff: Duration::from_millis(10),
                ..RetryPolicy::default()
            })
            .on_failed(move |failed| {
                f.lock()
                    .unwrap()
                    .extend(failed.messages.iter().map(|m| seq_of(m)))
            }),
    )
    .expect("dial");
    let n = 2_000u64;
    for seq in 1..=n {
        writer.write(&payload(seq, 16)).expect("write");
    }
    assert!(wait_until(Duration::from_secs(10), || {
        writer.acked_stats().expect("acked").acked >= 200
    }));
    listener.close();
    assert!(
        wait_until(Duration::from_secs(10), || !failed
            .lock()
            .unwrap()
            .is_empty()),
        "the writer gave up and handed messages back"
    );
    let acked = writer.acked_stats().expect("acked").acked;
    assert!(acked < n, "closed mid-stream");
    let failed = failed.lock().unwrap();
    assert!(
        failed.iter().copied().eq(acked + 1..=n),
        "exactly the unacknowledged ones, in order: acked {acked}, handed back {}..={:?}",
        failed.first().copied().unwrap_or_default(),
        failed.last()
    );
    let delivered = delivered.lock().unwrap();
    assert!(delivered.iter().copied().eq(1..=delivered.len() as u64));
    assert!(
        delivered.len() as u64 >= acked,
        "acknowledged means delivered"
    );
}

/// A `BufferedWriter`'s batches (chunks built off the queue) are numbered and kept like single
/// writes, through cut connections.
#[test]
fn buffered_batches_through_cuts_arrive_exactly_once() {
    let (listener, got) = recording_listener();
    let proxy = crate::common::cutter::Cutter::start(listener.local_addr(), 50_000, 300_000, 11);
    let writer = Writer::dial(
        WriterConfig::new(proxy.addr.to_string())
            .acked(true)
            .max_unacked_bytes(512 << 10)
            .retry(RetryPolicy::forever()),
    )
    .expect("dial");
    let n = 200_000u64;
    let w = writer.clone();
    let t = std::thread::spawn(move || {
        let mut out = w.buffered();
        for seq in 1..=n {
            out.write(&payload(seq, 24)).expect("write");
        }
        out.flush().expect("flush");
        drop(out);
        w.flush_acked().expect("flush_acked");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !t.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            writer.acked_stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    t.join().expect("writer thread");
    let got = got.lock().unwrap();
    assert!(proxy.cuts() >= 3, "cut {} times", proxy.cuts());
    assert_eq!(got.len() as u64, n, "{:?}", writer.acked_stats());
    assert!(got.iter().copied().eq(1..=n));
}

/// Over a Unix domain socket, and through the `Manager`.
#[test]
fn unix_sockets_and_the_manager_run_acknowledged() {
    let name = format!("unix:@buffstreams-acked-{}", std::process::id());
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let manager = buffstreams::Manager::new(runtime_on(Backend::IoUring, 1)).expect("manager");
    manager
        .listen(
            ListenerConfig::new(name.clone(), move |_, conn| {
                assert!(conn.is_acked());
                g.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .acked(true),
        )
        .expect("listen");
    let writer = manager
        .dial(WriterConfig::new(name.clone()).acked(true))
        .expect("dial");
    for seq in 1..=5_000u64 {
        manager.write_to(&name, &payload(seq, 32)).expect("write");
    }
    writer.flush_acked().expect("flush_acked");
    assert_eq!(got.load(Ordering::SeqCst), 5_000);
    assert_eq!(writer.acked_stats().expect("acked").acked, 5_000);
    manager.shutdown(Duration::from_secs(5));
}
