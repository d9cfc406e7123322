//! End to end over loopback: every framing, several writers on several threads, random sizes
//! from 0 to the maximum, over a million messages in all. Every message arrives exactly once,
//! in order per connection, with the same content.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, Framing, Listener, ListenerConfig, RuntimeConfig, Writer, WriterConfig,
};
use common::{all_framings, fill, wait_until, Digest, Rng};

const WRITERS: usize = 4;
const PER_WRITER: usize = 28_000; // x 4 writers x 10 framings = 1,120,000 messages

fn message_size(rng: &mut Rng, max: usize) -> usize {
    match rng.below(100) {
        0 => 0,
        1 => max,
        _ => rng.below(max as u64 + 1) as usize,
    }
}

fn stream_with(backend: Backend, framing: Framing, max: usize, seed: u64) {
    let rt = move |cores| RuntimeConfig {
        cores,
        backend,
        ..RuntimeConfig::default()
    };
    let digests: Arc<Mutex<HashMap<u64, Digest>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let (d, r) = (digests.clone(), received.clone());
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
            d.lock().unwrap().entry(conn.id()).or_default().add(msg);
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .framing(framing)
        .max_message_size(max)
        .runtime(rt(2)),
    )
    .expect("bind");
    let addr = listener.local_addr().to_string();

    let senders: Vec<_> = (0..WRITERS)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let writer = Writer::dial(
                    WriterConfig::new(addr)
                        .framing(framing)
                        .max_message_size(max)
                        .runtime(RuntimeConfig {
                            pin: false,
                            ..rt(1)
                        }),
                )
                .expect("dial");
                let mut rng = Rng::new(seed * 100 + w as u64);
                let mut digest = Digest::default();
                let mut msg = vec![0u8; max];
                for _ in 0..PER_WRITER {
                    let len = message_size(&mut rng, max);
                    fill(&mut rng, &mut msg[..len], framing);
                    writer.write(&msg[..len]).expect("write");
                    digest.add(&msg[..len]);
                }
                writer.close().expect("close sends everything");
                digest
            })
        })
        .collect();
    let mut sent: Vec<Digest> = senders.into_iter().map(|h| h.join().unwrap()).collect();

    let total = (WRITERS * PER_WRITER) as u64;
    assert!(
        wait_until(Duration::from_secs(30), || received.load(Ordering::Relaxed)
            >= total),
        "{backend:?} {framing:?}: received {} of {total}",
        received.load(Ordering::Relaxed)
    );
    // Nothing extra arrives later.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        received.load(Ordering::Relaxed),
        total,
        "{backend:?} {framing:?}: duplicates"
    );
    let messages: u64 = listener
        .runtime()
        .stats()
        .iter()
        .map(|s| s.messages_received)
        .sum();
    assert_eq!(messages, total, "{backend:?} {framing:?}: engine counters");
    listener.close();

    let mut got: Vec<Digest> = digests.lock().unwrap().values().copied().collect();
    let key = |d: &Digest| (d.count, d.bytes, d.hash);
    sent.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(
        got, sent,
        "{backend:?} {framing:?}: per-connection sequences differ"
    );
}

#[test]
fn every_framing_end_to_end_io_uring() {
    common::init_tracing();
    for (i, (framing, max)) in all_framings().into_iter().enumerate() {
        stream_with(Backend::IoUring, framing, max, i as u64 + 1);
    }
}

#[test]
fn every_framing_end_to_end_epoll() {
    common::init_tracing();
    for (i, (framing, max)) in all_framings().into_iter().enumerate() {
        stream_with(Backend::Epoll, framing, max, i as u64 + 101);
    }
}

/// Many threads share one writer: frames never interleave and each thread's order holds.
#[test]
fn shared_writer_never_interleaves() {
    const THREADS: usize = 6;
    const PER_THREAD: u32 = 20_000;
    const MAX: usize = 2048;
    let next_seq: Arc<Mutex<[u32; THREADS]>> = Arc::default();
    let bad = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (seqs, b, r) = (next_seq.clone(), bad.clone(), received.clone());
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            let ok = check_tagged(msg, &mut seqs.lock().unwrap()[..]);
            if !ok {
                b.fetch_add(1, Ordering::Relaxed);
            }
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .max_message_size(MAX)
        .cores(1),
    )
    .unwrap();
    let writer =
        Writer::dial(WriterConfig::new(listener.local_addr().to_string()).max_message_size(MAX))
            .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 77);
                let mut msg = vec![0u8; MAX];
                for seq in 0..PER_THREAD {
                    let len = 5 + rng.below((MAX - 5) as u64 + 1) as usize;
                    tag(&mut msg[..len], t as u8, seq);
                    writer.write(&msg[..len]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    writer.close().unwrap();
    let total = THREADS as u64 * u64::from(PER_THREAD);
    assert!(wait_until(Duration::from_secs(30), || received
        .load(Ordering::Relaxed)
        >= total));
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "interleaved or reordered frames"
    );
    assert_eq!(*next_seq.lock().unwrap(), [PER_THREAD; THREADS]);
    listener.close();
}

/// Message = thread id, sequence number, then bytes derived from both.
fn tag(msg: &mut [u8], thread: u8, seq: u32) {
    msg[0] = thread;
    msg[1..5].copy_from_slice(&seq.to_be_bytes());
    let mut x = u32::from(thread) * 7919 + seq;
    for b in &mut msg[5..] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8;
    }
}

fn check_tagged(msg: &[u8], next: &mut [u32]) -> bool {
    if msg.len() < 5 || usize::from(msg[0]) >= next.len() {
        return false;
    }
    let thread = msg[0];
    let seq = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
    let mut expect = vec![0u8; msg.len()];
    tag(&mut expect, thread, seq);
    let in_order = next[usize::from(thread)] == seq;
    next[usize::from(thread)] = seq + 1;
    in_order && expect == msg
}
