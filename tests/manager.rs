//! The manager: 8 threads write through one manager to 16 listener addresses; every message
//! arrives exactly once, in order per (thread, address), and no frame is ever interleaved.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{ListenerConfig, Manager, ManagerError, RuntimeConfig, WriterConfig};
use common::{wait_until, Rng};

const THREADS: usize = 8;
const ADDRESSES: usize = 16;
const PER_THREAD: u64 = 256_000; // 8 x 256,000 = 2,048,000 messages
const MAX: usize = 96;

/// thread (1 byte), sequence (4 bytes), then bytes derived from both (length varies).
fn message(thread: u8, seq: u32, len: usize, out: &mut [u8]) {
    out[0] = thread;
    out[1..5].copy_from_slice(&seq.to_be_bytes());
    let mut x = u32::from(thread).wrapping_mul(2_654_435_761) ^ seq;
    for b in &mut out[5..len] {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
}

#[test]
fn many_threads_many_addresses_exactly_once_in_order() {
    common::init_tracing();
    let manager = Manager::new(RuntimeConfig {
        cores: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    // Per address: the next sequence number expected from each thread.
    let expected: Arc<Vec<Mutex<[u32; THREADS]>>> =
        Arc::new((0..ADDRESSES).map(|_| Mutex::new([0; THREADS])).collect());
    let bad = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut addresses = Vec::new();
    for a in 0..ADDRESSES {
        let (expected, bad, received) = (expected.clone(), bad.clone(), received.clone());
        let addr = manager
            .listen(
                ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                    let mut check = [0u8; MAX];
                    let ok = msg.len() >= 5 && usize::from(msg[0]) < THREADS && {
                        let (t, seq) = (msg[0], u32::from_be_bytes(msg[1..5].try_into()?));
                        message(t, seq, msg.len(), &mut check);
                        let mut next = expected[a].lock().unwrap();
                        let in_order = next[usize::from(t)] == seq;
                        next[usize::from(t)] = seq + 1;
                        in_order && check[..msg.len()] == *msg
                    };
                    if !ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .max_message_size(MAX),
            )
            .unwrap()
            .to_string();
        manager
            .dial(WriterConfig::new(addr.clone()).max_message_size(MAX))
            .unwrap();
        addresses.push(addr);
    }
    assert!(matches!(
        manager.write_to("127.0.0.1:1", b"x"),
        Err(ManagerError::NotDialed(_))
    ));
    assert_eq!(manager.writers().len(), ADDRESSES);

    let sent_per_address: Arc<Vec<AtomicU64>> =
        Arc::new((0..ADDRESSES).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (manager, addresses, sent) =
                (manager.clone(), addresses.clone(), sent_per_address.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut seqs = [0u32; ADDRESSES];
                let mut buf = [0u8; MAX];
                for _ in 0..PER_THREAD {
                    let a = rng.below(ADDRESSES as u64) as usize;
                    let len = 5 + rng.below((MAX - 5) as u64 + 1) as usize;
                    message(t as u8, seqs[a], len, &mut buf);
                    seqs[a] += 1;
                    manager.write_to(&addresses[a], &buf[..len]).unwrap();
                    sent[a].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for addr in &addresses {
        manager.flush(addr).unwrap();
    }
    let total = THREADS as u64 * PER_THREAD;
    assert!(
        wait_until(Duration::from_secs(60), || received.load(Ordering::Relaxed)
            >= total),
        "received {} of {total}",
        received.load(Ordering::Relaxed)
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(received.load(Ordering::Relaxed), total, "duplicates");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "out of order or interleaved"
    );
    // Each address got exactly the per-thread counts that were sent to it.
    for (a, sent) in sent_per_address.iter().enumerate() {
        let got: u64 = expected[a]
            .lock()
            .unwrap()
            .iter()
            .map(|&n| u64::from(n))
            .sum();
        assert_eq!(got, sent.load(Ordering::Relaxed), "address {a}");
    }
    let report = manager.shutdown(Duration::from_secs(5));
    assert_eq!(report.unsent_messages(), 0);
    assert!(matches!(
        manager.write_to(&addresses[0], b"x"),
        Err(ManagerError::Shutdown)
    ));
}

#[test]
fn close_listener_and_writer_by_address() {
    let manager = Manager::new(RuntimeConfig {
        cores: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let addr = manager
        .listen(ListenerConfig::new("127.0.0.1:0", move |_, _| {
            g.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }))
        .unwrap()
        .to_string();
    manager.dial(WriterConfig::new(addr.clone())).unwrap();
    assert!(matches!(
        manager.dial(WriterConfig::new(addr.clone())),
        Err(ManagerError::AlreadyDialed(_))
    ));
    manager.write_to(&addr, b"one").unwrap();
    assert!(manager
        .close_writer(&addr, Duration::from_secs(5))
        .unwrap()
        .is_ok());
    assert!(matches!(
        manager.write_to(&addr, b"x"),
        Err(ManagerError::NotDialed(_))
    ));
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::Relaxed)
        == 1));
    assert!(manager.listeners().contains(&addr));
    manager.close_listener(&addr).unwrap();
    assert!(manager.listeners().is_empty());
    assert!(matches!(
        manager.close_listener(&addr),
        Err(ManagerError::NotListening(_))
    ));
    // The port is free again.
    std::net::TcpListener::bind(&addr).unwrap();
    manager.shutdown(Duration::from_secs(1));
}
