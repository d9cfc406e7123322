//! Acknowledged writers whose threads flush after each burst (a flush sends from the writer's
//! thread: a "direct send") while the listener is closed and bound again. A direct send racing
//! the connection's end once put its chunks back ahead of older unacknowledged ones (found by
//! the soak), so the next connection sent frames out of order; the listener, numbering frames by
//! position, delivered out of order and acknowledged messages it never had.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};

fn seq_of(msg: &[u8]) -> u64 {
    u64::from_be_bytes(msg[..8].try_into().expect("8 bytes"))
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0xab; len.max(8)];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// (listener lifetime, sequence, flagged) per delivery.
type Got = Arc<Mutex<Vec<(u64, u64, bool)>>>;

fn bind(addr: &str, epoch: u64, got: &Got) -> Listener {
    let sink = got.clone();
    let config = ListenerConfig::new(addr, move |msg, conn| {
        sink.lock()
            .unwrap()
            .push((epoch, seq_of(msg), conn.possible_duplicate()));
        Ok(())
    })
    .cores(2)
    .acked(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Listener::bind(config.clone()) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("bind: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("bind: {e}"),
        }
    }
}

#[test]
fn flushes_racing_listener_restarts_keep_order_and_lose_nothing() {
    let got: Got = Arc::default();
    let first = bind("127.0.0.1:0", 0, &got);
    let addr = first.local_addr().to_string();
    let listener = Arc::new(Mutex::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicU64::new(0));
    let restarter = {
        let (listener, stop, restarts, got, addr) = (
            listener.clone(),
            stop.clone(),
            restarts.clone(),
            got.clone(),
            addr.clone(),
        );
        std::thread::spawn(move || {
            let mut epoch = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100 + epoch % 7 * 30));
                let mut l = listener.lock().unwrap();
                l.close();
                std::thread::sleep(Duration::from_millis(5 + epoch % 5 * 10));
                epoch += 1;
                *l = bind(&addr, epoch, &got);
                restarts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Writers, each written by two threads (one stream each, with its own numbers), to keep
    // both cores busy: the race needs a direct send in progress when a connection ends.
    const WRITERS: u64 = 4;
    let run = Instant::now() + Duration::from_secs(8);
    let streams: Vec<_> = (0..2 * WRITERS)
        .map(|s| {
            let writer = Writer::dial(
                WriterConfig::new(addr.clone())
                    .acked(true)
                    .max_message_size(1 << 20)
                    .retry(RetryPolicy::forever()),
            )
            .expect("dial");
            std::thread::spawn(move || {
                let mut seq = 1;
                while Instant::now() < run {
                    // A burst, then a flush: the flush sends what is queued from this thread.
                    for _ in 0..32 {
                        let len = 40 + ((seq * 7919 + s) % 64) as usize * 1000;
                        writer.write(&payload(s << 48 | seq, len)).expect("write");
                        seq += 1;
                    }
                    writer.flush().expect("flush");
                }
                writer.flush_acked().expect("flush_acked");
                (writer, seq - 1)
            })
        })
        .collect();
    let streams: Vec<(Writer, u64)> = streams.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    restarter.join().expect("restarter");
    let resent: u64 = streams
        .iter()
        .map(|(w, _)| w.acked_stats().expect("acked").resent)
        .sum();
    let got = got.lock().unwrap();
    let (mut breaks, mut lost, mut unflagged_repeats, mut delivered) = (0, 0, 0, 0);
    for (s, &(_, n)) in streams.iter().enumerate() {
        let s = s as u64;
        let mine: Vec<_> = got
            .iter()
            .filter(|&&(_, seq, _)| seq >> 48 == s)
            .map(|&(e, seq, dup)| (e, seq & ((1 << 48) - 1), dup))
            .collect();
        delivered += mine.len();
        // Within one listener lifetime: each delivery follows the one before (exactly once, in
        // order); across lifetimes, only flagged deliveries may repeat a message.
        for pair in mine.windows(2) {
            let ((e0, s0, _), (e1, s1, _)) = (pair[0], pair[1]);
            if e0 == e1 && s1 != s0 + 1 {
                breaks += 1;
                if breaks <= 5 {
                    eprintln!("writer {s}, listener lifetime {e0}: {s0} then {s1}");
                }
            }
        }
        let mut seen = vec![0u32; n as usize + 1];
        for &(_, seq, dup) in &mine {
            if seen[seq as usize] > 0 && !dup {
                unflagged_repeats += 1;
            }
            seen[seq as usize] += 1;
        }
        lost += seen[1..].iter().filter(|&&c| c == 0).count();
    }
    eprintln!(
        "{} restarts, {resent} re-sent; {delivered} delivered, {lost} lost, {breaks} breaks in \
         order, {unflagged_repeats} unflagged repeats",
        restarts.load(Ordering::Relaxed),
    );
    assert_eq!(breaks, 0, "in order within a listener lifetime");
    assert_eq!(lost, 0, "nothing lost");
    assert_eq!(unflagged_repeats, 0, "repeats flagged");
}
