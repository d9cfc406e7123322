//! Channel delivery: every message exactly once with its connection, replies through it,
//! bounded memory and TCP back-pressure with a slow consumer, async receive, and the end of the
//! stream when the listener closes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use buffstreams::{
    Backend, Listener, ListenerConfig, Message, MessageReceiver, RecvError, RecvTimeoutError,
    TryRecvError, Writer, WriterConfig,
};
use common::{runtime_on, wait_until};

// ---- a heap counter: live bytes and their peak ---------------------------------------------

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests of this file run one at a time, so the heap counter sees one test only.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- helpers -------------------------------------------------------------------------------

fn channel_listener(
    capacity: usize,
    cores: usize,
    backend: Backend,
) -> (Listener, MessageReceiver) {
    let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", capacity);
    let listener = Listener::bind(config.runtime(runtime_on(backend, cores))).expect("bind");
    (listener, messages)
}

fn writer_config(listener: &Listener, backend: Backend) -> WriterConfig {
    WriterConfig::new(listener.local_addr().to_string()).runtime(runtime_on(backend, 1))
}

/// Message `seq` of writer `w`: `w` (u32), `seq` (u32), then bytes derived from both.
fn payload(w: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut msg = vec![0u8; len.max(8)];
    msg[..4].copy_from_slice(&w.to_be_bytes());
    msg[4..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in msg[8..].iter_mut().enumerate() {
        *b = (seq as usize)
            .wrapping_mul(31)
            .wrapping_add(i)
            .wrapping_add(w as usize) as u8;
    }
    msg
}

fn parse(msg: &[u8]) -> (u32, u32) {
    let w = u32::from_be_bytes(msg[..4].try_into().expect("4 bytes"));
    let seq = u32::from_be_bytes(msg[4..8].try_into().expect("4 bytes"));
    (w, seq)
}

fn size_of(w: u32, seq: u32) -> usize {
    8 + ((seq as usize * 7 + w as usize * 13) % 300)
}

// ---- (a) several writers: exactly once, in order, right connection, replies --------------

fn several_writers(backend: Backend) {
    const WRITERS: u32 = 4;
    const PER_WRITER: u32 = 20_000;
    let (listener, messages) = channel_listener(64, 2, backend);

    // Each writer checks the replies it gets: one per message, in order.
    let mut writers = Vec::new();
    let mut replies = Vec::new();
    let mut reply_order_ok = Vec::new();
    for w in 0..WRITERS {
        let count = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicBool::new(true));
        let (c, o) = (count.clone(), ok.clone());
        let writer = Writer::dial(writer_config(&listener, backend).on_message(move |msg, _| {
            let n = c.fetch_add(1, Ordering::Relaxed) as u32;
            if parse(msg) != (w, n) {
                o.store(false, Ordering::Relaxed);
            }
            Ok(())
        }))
        .expect("dial");
        writers.push(writer);
        replies.push(count);
        reply_order_ok.push(ok);
    }
    let peers: HashMap<SocketAddr, u32> = writers
        .iter()
        .enumerate()
        .map(|(w, writer)| (writer.conn_info().expect("connected").local, w as u32))
        .collect();

    // The consumer: another thread, replying to every message on its connection.
    let consumer = std::thread::spawn(move || {
        let mut next = vec![0u32; WRITERS as usize];
        let mut ids: HashMap<u64, u32> = HashMap::new();
        let mut problems = Vec::new();
        let mut total = 0u64;
        for msg in &messages {
            total += 1;
            let (w, seq) = parse(&msg.payload);
            let Some(&from) = peers.get(&msg.peer_addr()) else {
                problems.push(format!("unknown peer {}", msg.peer_addr()));
                continue;
            };
            if from != w {
                problems.push(format!("message of writer {w} from writer {from}'s peer"));
            }
            if *ids.entry(msg.id()).or_insert(w) != w || msg.conn.id() != msg.id() {
                problems.push(format!("connection {} carries several writers", msg.id()));
            }
            if seq != next[w as usize] || msg.payload[..] != payload(w, seq, size_of(w, seq))[..] {
                problems.push(format!(
                    "writer {w}: got {seq}, expected {}",
                    next[w as usize]
                ));
            }
            next[w as usize] = seq + 1;
            if let Err(err) = msg.conn.write(&msg.payload[..8]) {
                problems.push(format!("reply failed: {err}"));
            }
            if problems.len() > 10 {
                break;
            }
        }
        (total, next, ids.len(), problems)
    });

    let threads: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(w, writer)| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let w = w as u32;
                for seq in 0..PER_WRITER {
                    writer
                        .write(&payload(w, seq, size_of(w, seq)))
                        .expect("write");
                }
                writer.flush().expect("flush");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let all_replied = wait_until(Duration::from_secs(8), || {
        replies
            .iter()
            .all(|r| r.load(Ordering::Relaxed) == u64::from(PER_WRITER))
    });
    let live = listener.connections();
    listener.close();
    let (total, next, conns, problems) = consumer.join().expect("consumer");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(total, u64::from(WRITERS * PER_WRITER));
    assert_eq!(next, vec![PER_WRITER; WRITERS as usize]);
    assert_eq!(conns, WRITERS as usize);
    assert_eq!(live.len(), WRITERS as usize);
    assert!(all_replied, "replies: {replies:?}");
    assert!(reply_order_ok.iter().all(|ok| ok.load(Ordering::Relaxed)));
    for writer in writers {
        let _ = writer.close();
    }
}

#[test]
fn several_writers_exactly_once_in_order_with_replies() {
    let _serial = serial();
    common::init_tracing();
    several_writers(Backend::Auto);
}

#[test]
fn several_writers_exactly_once_in_order_with_replies_epoll() {
    let _serial = serial();
    common::init_tracing();
    several_writers(Backend::Epoll);
}

// ---- (b) a slow consumer: bounded memory, back-pressure, then everything arrives ----------

fn slow_consumer(backend: Backend) {
    const SIZE: usize = 16 * 1024;
    const COUNT: u32 = 8 * 1024; // 128 MiB in all
    const CAPACITY: usize = 64;
    const LIMIT: usize = 32 << 20;
    let total_bytes = SIZE as u64 * u64::from(COUNT);

    let (listener, messages) = channel_listener(CAPACITY, 1, backend);
    let writer = Writer::dial(writer_config(&listener, backend)).expect("dial");

    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let accepted = Arc::new(AtomicU64::new(0));
    let flushed = Arc::new(AtomicBool::new(false));
    let producer = {
        let (writer, accepted, flushed) = (writer.clone(), accepted.clone(), flushed.clone());
        std::thread::spawn(move || {
            let mut msg = vec![0u8; SIZE];
            for seq in 0..COUNT {
                msg[..4].copy_from_slice(&seq.to_be_bytes());
                msg[SIZE - 4..].copy_from_slice(&seq.to_be_bytes());
                writer.write(&msg).expect("write");
                accepted.fetch_add(SIZE as u64, Ordering::Relaxed);
            }
            writer.flush().expect("flush");
            flushed.store(true, Ordering::SeqCst);
        })
    };

    // The consumer sleeps: the writer must end up blocked, by TCP back-pressure.
    std::thread::sleep(Duration::from_millis(1500));
    let stalled_at = accepted.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let later = accepted.load(Ordering::Relaxed);
    assert!(
        !flushed.load(Ordering::SeqCst),
        "flush completed while nobody consumed"
    );
    assert_eq!(
        stalled_at, later,
        "the writer kept going while nobody consumed"
    );
    assert!(stalled_at < total_bytes / 4, "{stalled_at} bytes accepted");
    assert!(
        messages.len() <= CAPACITY + 1,
        "{} messages queued",
        messages.len()
    );
    let peak_sleeping = PEAK.load(Ordering::Relaxed);

    // Slow draining for a while, then as fast as possible; everything arrives in order.
    let mut next = 0u32;
    let check = |msg: Message, next: &mut u32| {
        let p = &msg.payload;
        assert_eq!(p.len(), SIZE);
        assert_eq!(p[..4], next.to_be_bytes());
        assert_eq!(p[SIZE - 4..], next.to_be_bytes());
        *next += 1;
    };
    let slow_until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < slow_until {
        for _ in 0..CAPACITY / 2 {
            let msg = messages
                .recv_timeout(Duration::from_secs(5))
                .expect("message");
            check(msg, &mut next);
        }
        assert!(messages.len() <= CAPACITY + 1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let peak_slow = PEAK.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while next < COUNT {
        match messages.recv_deadline(deadline) {
            Ok(msg) => check(msg, &mut next),
            Err(err) => panic!("after {next} messages: {err}"),
        }
    }
    producer.join().expect("producer");
    assert!(flushed.load(Ordering::SeqCst));
    let peak_all = PEAK.load(Ordering::Relaxed);
    eprintln!(
        "slow consumer ({backend:?}): {total_bytes} bytes written; accepted while the consumer \
         slept: {stalled_at}; live heap before: {base}, peak while sleeping: {peak_sleeping}, \
         peak while draining slowly: {peak_slow}, peak overall: {peak_all}"
    );
    // Measured from the live heap before the writer started (other tests of this binary run
    // one at a time, but one that failed may have left memory behind).
    assert!(peak_slow - base < LIMIT, "peak live heap {peak_slow} bytes");
    assert!(peak_all - base < LIMIT, "peak live heap {peak_all} bytes");
    assert!(messages.try_recv().is_err());
    let _ = writer.close();
    listener.close();
}

#[test]
fn slow_consumer_bounds_memory_and_pushes_back() {
    let _serial = serial();
    common::init_tracing();
    slow_consumer(Backend::Auto);
}

#[test]
fn slow_consumer_bounds_memory_and_pushes_back_epoll() {
    let _serial = serial();
    common::init_tracing();
    slow_consumer(Backend::Epoll);
}

// ---- (c) async receive on any executor ---------------------------------------------------

#[test]
fn recv_async_with_block_on() {
    let _serial = serial();
    common::init_tracing();
    const COUNT: u32 = 5_000;
    let (listener, messages) = channel_listener(32, 1, Backend::Auto);
    let writer = Writer::dial(writer_config(&listener, Backend::Auto)).expect("dial");
    // The writer starts late, so the first poll finds nothing and must be woken.
    let producer = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            for seq in 0..COUNT {
                writer
                    .write(&payload(0, seq, size_of(0, seq)))
                    .expect("write");
            }
            writer.flush().expect("flush");
        })
    };
    let got = futures::executor::block_on(async {
        let mut next = 0u32;
        while next < COUNT {
            let msg = messages.recv_async().await.expect("message");
            assert_eq!(parse(&msg.payload), (0, next));
            next += 1;
        }
        next
    });
    assert_eq!(got, COUNT);
    producer.join().expect("producer");

    // A pending receive resolves to Closed when the listener closes; a dropped one loses
    // nothing.
    let closer = {
        let listener = listener.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            listener.close();
        })
    };
    futures::executor::block_on(async {
        let mut pending = messages.recv_async();
        assert!(futures::poll!(&mut pending).is_pending());
        drop(pending);
        assert_eq!(messages.recv_async().await.err(), Some(RecvError));
    });
    closer.join().expect("closer");
    let _ = writer.close();
}

// ---- (d) the receiver ends after the listener closes -------------------------------------

#[test]
fn receiver_ends_after_listener_close() {
    let _serial = serial();
    common::init_tracing();
    const COUNT: u32 = 100;
    let (listener, messages) = channel_listener(1024, 2, Backend::Auto);
    let other = messages.clone();
    let writer = Writer::dial(writer_config(&listener, Backend::Auto)).expect("dial");
    for seq in 0..COUNT {
        writer.write(&payload(0, seq, 32)).expect("write");
    }
    writer.flush().expect("flush");
    assert!(wait_until(Duration::from_secs(5), || messages.len() == COUNT as usize));
    assert!(!messages.is_closed());
    assert_eq!(
        messages
            .recv_timeout(Duration::ZERO)
            .map(|m| parse(&m.payload)),
        Ok((0, 0))
    );

    // A consumer blocked on another clone ends too.
    listener.close();
    assert!(messages.is_closed());
    let drained: Vec<u32> = other.iter().map(|m| parse(&m.payload).1).collect();
    assert_eq!(drained, (1..COUNT).collect::<Vec<_>>());
    assert_eq!(messages.recv().err(), Some(RecvError));
    assert_eq!(messages.try_recv().err(), Some(TryRecvError::Closed));
    assert_eq!(
        messages.recv_timeout(Duration::from_secs(1)).err(),
        Some(RecvTimeoutError::Closed)
    );
    let _ = writer.close();
}

#[test]
fn connections_closed_while_paused_are_let_go() {
    let _serial = serial();
    common::init_tracing();
    const CAPACITY: usize = 4;
    let (listener, messages) = channel_listener(CAPACITY, 1, Backend::Auto);
    let writers: Vec<Writer> = (0..3)
        .map(|_| Writer::dial(writer_config(&listener, Backend::Auto)).expect("dial"))
        .collect();
    // Every writer fills the channel: each connection adds at most one message beyond the
    // capacity, then stops reading.
    for writer in &writers {
        for seq in 0..200 {
            writer.write(&payload(0, seq, 64)).expect("write");
        }
    }
    assert!(wait_until(Duration::from_secs(5), || messages.len() > CAPACITY));
    std::thread::sleep(Duration::from_millis(200));
    let queued = messages.len();
    assert!(queued <= CAPACITY + writers.len(), "{queued} queued");
    assert_eq!(listener.connections().len(), writers.len());
    let paused = format!("{messages:?}");
    assert!(paused.contains("paused_connections: 3"), "{paused}");

    // Closing the listener closes the paused connections; the receiver drains what was queued
    // and ends.
    listener.close();
    assert!(listener.connections().is_empty());
    let after = format!("{messages:?}");
    assert!(after.contains("paused_connections: 0"), "{after}");
    assert_eq!(messages.iter().count(), queued);
    assert_eq!(messages.recv().err(), Some(RecvError));
}

fn peer_closing_while_paused(backend: Backend) {
    const COUNT: u32 = 500;
    let (listener, messages) = channel_listener(4, 1, backend);
    let writer = Writer::dial(writer_config(&listener, backend)).expect("dial");
    for seq in 0..COUNT {
        writer.write(&payload(0, seq, 64)).expect("write");
    }
    // Everything reaches the listener's socket while its connection is paused; then the peer
    // closes. The end of the stream waits behind the held-back data.
    writer.close().expect("close");
    assert!(wait_until(Duration::from_secs(5), || messages.len() >= 4));
    std::thread::sleep(Duration::from_millis(50));
    assert!(messages.len() <= 5);
    for seq in 0..COUNT {
        let msg = messages
            .recv_timeout(Duration::from_secs(5))
            .expect("message");
        assert_eq!(parse(&msg.payload), (0, seq));
    }
    assert!(wait_until(Duration::from_secs(5), || listener
        .connections()
        .is_empty()));
    assert_eq!(messages.try_recv().err(), Some(TryRecvError::Empty));
    listener.close();
    assert_eq!(messages.recv().err(), Some(RecvError));
}

#[test]
fn peer_closing_while_paused_loses_nothing() {
    let _serial = serial();
    common::init_tracing();
    peer_closing_while_paused(Backend::Auto);
}

#[test]
fn peer_closing_while_paused_loses_nothing_epoll() {
    let _serial = serial();
    common::init_tracing();
    peer_closing_while_paused(Backend::Epoll);
}

#[test]
fn receiver_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<MessageReceiver>();
    send_sync::<Message>();
    send::<buffstreams::RecvMessage<'static>>();
}

#[test]
fn blocked_receiver_wakes_when_listener_closes() {
    let _serial = serial();
    common::init_tracing();
    let (listener, messages) = channel_listener(8, 2, Backend::Auto);
    let blocked = {
        let messages = messages.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (messages.recv().err(), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    listener.close();
    let (result, waited) = blocked.join().expect("receiver thread");
    assert_eq!(result, Some(RecvError));
    assert!(waited >= Duration::from_millis(90), "{waited:?}");
}

#[test]
fn unbound_config_dropped_ends_the_receiver() {
    let _serial = serial();
    let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", 8);
    let copy = config.clone();
    drop(config);
    assert_eq!(messages.try_recv().err(), Some(TryRecvError::Empty));
    drop(copy);
    assert_eq!(messages.recv().err(), Some(RecvError));
}

#[test]
fn dropped_receiver_lets_writers_go_on() {
    let _serial = serial();
    common::init_tracing();
    let (listener, messages) = channel_listener(8, 1, Backend::Auto);
    let writer = Writer::dial(writer_config(&listener, Backend::Auto)).expect("dial");
    for seq in 0..1000 {
        writer.write(&payload(0, seq, 1024)).expect("write");
    }
    assert!(wait_until(Duration::from_secs(5), || messages.len() >= 8));
    // Nobody will read any more: the paused connection resumes and discards.
    drop(messages);
    for seq in 0..1000 {
        writer.write(&payload(0, seq, 1024)).expect("write");
    }
    writer.flush().expect("flush");
    assert_eq!(listener.connections().len(), 1);
    let _ = writer.close();
    listener.close();
}
