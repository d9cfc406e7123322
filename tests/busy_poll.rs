//! Busy polling (`RuntimeConfig::busy_poll`) and submission queue polling
//! (`RuntimeConfig::sqpoll`): a ping-pong works with them on, a core that busy polls picks the
//! next request up without sleeping (and one that does not, sleeps), the spin is bounded (an
//! idle core goes back to sleep and burns next to no CPU), and an SQPOLL ring wakes its kernel
//! thread when it has gone to sleep.
//!
//! The tests run one at a time (a lock): a spinning core takes a CPU, and the CPU-time checks
//! must not count another test's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use buffstreams::{
    Backend, CoreStats, Listener, ListenerConfig, Runtime, RuntimeConfig, Writer, WriterConfig,
};
use common::{on_both_backends, runtime_on};

/// One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `backend`, one unpinned core, busy polling for `spin` (or not).
fn config(backend: Backend, spin: Option<Duration>) -> RuntimeConfig {
    RuntimeConfig {
        busy_poll: spin,
        ..runtime_on(backend, 1)
    }
}

/// The `i`-th message of a ping-pong: its number, then `i % 300` bytes derived from it.
fn message(i: u32) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend((0..i % 300).map(|j| (i.wrapping_mul(31) ^ j) as u8));
    m
}

/// A listener that echoes every message, on `runtime`.
fn echo_listener(runtime: &Runtime) -> Listener {
    Listener::bind_on(
        runtime,
        ListenerConfig::new("127.0.0.1:0", |msg, conn| {
            conn.write(msg)?;
            Ok(())
        }),
    )
    .expect("bind")
}

/// A writer to `addr` on `runtime` whose `on_message` handler hands each reply to the receiver.
fn replying_writer(runtime: &Runtime, addr: SocketAddr) -> (Writer, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let writer = Writer::dial_on(
        runtime,
        WriterConfig::new(addr.to_string()).on_message(move |reply, _| {
            let _ = tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(reply.to_vec());
            Ok(())
        }),
    )
    .expect("dial");
    (writer, rx)
}

/// `rounds` round trips through a `Writer` whose `on_message` handler hands each reply back to
/// this thread, which checks it and writes the next message only then (one outstanding).
fn ping_pong(writer_runtime: &Runtime, addr: SocketAddr, rounds: u32) {
    let (writer, rx) = replying_writer(writer_runtime, addr);
    for i in 0..rounds {
        let msg = message(i);
        writer.write(&msg).expect("write");
        let reply = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no reply to message {i}"));
        assert!(reply == msg, "reply {i} differs from what was sent");
    }
    assert!(rx.try_recv().is_err(), "a reply nobody asked for came back");
    writer.close().expect("close");
}

/// Listener and writer each on a runtime of their own that busy polls for 200 us: replies come
/// back whole and in order, and the listener's core found requests while it spun.
fn ping_pong_with_busy_poll(backend: Backend) {
    let _serial = serial();
    common::init_tracing();
    let spin = Some(Duration::from_micros(200));
    let server = Runtime::new(config(backend, spin)).expect("server runtime");
    let client = Runtime::new(config(backend, spin)).expect("client runtime");
    assert_eq!(server.backend(), backend);
    let listener = echo_listener(&server);
    ping_pong(&client, listener.local_addr(), 2_000);
    let (s, c) = (server.stats()[0], client.stats()[0]);
    assert!(s.busy_polls > 0 && c.busy_polls > 0, "{s:?}\n{c:?}");
    assert!(
        s.busy_poll_hits > 0 && c.busy_poll_hits > 0,
        "no spin found work: {s:?}\n{c:?}"
    );
    listener.close();
}

/// The listener's counters once they show `n` messages (they are published once per turn).
fn stats_after(listener: &Listener, n: u64) -> CoreStats {
    assert!(
        common::wait_until(Duration::from_secs(5), || listener.runtime().stats()[0]
            .messages_received
            >= n),
        "the listener's counters never showed {n} messages"
    );
    listener.runtime().stats()[0]
}

/// How a core's counters moved over some round trips.
#[derive(Debug)]
struct Moved {
    messages: u64,
    enters: u64,
    sleeps: u64,
    busy_polls: u64,
    busy_poll_hits: u64,
}

/// `rounds` round trips from a plain socket to an echo listener on one core; returns how the
/// core's counters moved meanwhile.
fn round_trips_from_a_socket(spin: Option<Duration>, backend: Backend, rounds: u64) -> Moved {
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |msg, conn| {
            conn.write(msg)?;
            Ok(())
        })
        .runtime(config(backend, spin)),
    )
    .expect("bind");
    let mut peer = TcpStream::connect(listener.local_addr()).expect("connect");
    peer.set_nodelay(true).expect("nodelay");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let frame = [0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut reply = [0u8; 12];
    peer.write_all(&frame).expect("write");
    peer.read_exact(&mut reply).expect("read");
    let before = stats_after(&listener, 1);
    for _ in 0..rounds {
        peer.write_all(&frame).expect("write");
        peer.read_exact(&mut reply).expect("read");
        assert_eq!(reply, frame);
    }
    let after = stats_after(&listener, 1 + rounds);
    listener.close();
    Moved {
        messages: after.messages_received - before.messages_received,
        enters: after.enters - before.enters,
        sleeps: after.sleeps - before.sleeps,
        busy_polls: after.busy_polls - before.busy_polls,
        busy_poll_hits: after.busy_poll_hits - before.busy_poll_hits,
    }
}

/// With a window far longer than a round trip's turnaround, the core finds every next request
/// while it spins and (almost) never sleeps; without busy polling it sleeps once per round trip.
/// Fails if the spin did nothing (no hits, a sleep per request) or if busy polling were always
/// on (the run without it would not sleep).
fn busy_poll_picks_up_requests_without_sleeping(backend: Backend) {
    let _serial = serial();
    common::init_tracing();
    const ROUNDS: u64 = 1_000;
    let off = round_trips_from_a_socket(None, backend, ROUNDS);
    let on = round_trips_from_a_socket(Some(Duration::from_millis(20)), backend, ROUNDS);
    eprintln!("{backend:?} off: {off:?}\n{backend:?} on: {on:?}");
    assert_eq!(off.messages, ROUNDS);
    assert_eq!(on.messages, ROUNDS);
    assert_eq!(off.busy_polls, 0, "busy polled with busy_poll off");
    assert!(
        off.sleeps * 10 >= ROUNDS * 9,
        "without busy polling the core should sleep once per round trip: {off:?}"
    );
    // A request that comes later than the window (the test thread descheduled for 20 ms) ends
    // in a sleep: allow a few.
    assert!(
        on.busy_poll_hits * 10 >= ROUNDS * 9,
        "the spin should find (almost) every request: {on:?}"
    );
    assert!(
        on.sleeps * 10 <= ROUNDS,
        "a busy polling core should (almost) never sleep here: {on:?}"
    );
    assert!(on.busy_poll_hits <= on.busy_polls);
    if backend == Backend::IoUring && buffstreams::probe().defer_taskrun {
        // The spin enters the ring only when the kernel flags task work (IORING_SQ_TASKRUN),
        // not on every poll: about one enter per round trip more than sleeping costs.
        assert!(
            on.enters <= ROUNDS * 4,
            "the spin entered the kernel {} times for {ROUNDS} round trips",
            on.enters
        );
    }
}

/// The CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for clock_gettime to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPU time (user and system) of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: `rusage` is plain old data; zeroed is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A core that busy polls for 20 ms after each burst of work goes back to sleep when no work
/// comes: over 300 ms of idleness its thread burns about one window of CPU, not 300 ms (an
/// unbounded spin), nor a window per timer tick (every 50 ms: a spin after ticks). The
/// handler reports its own thread's CPU time; the process's is checked too.
fn an_idle_core_stops_spinning(backend: Backend) {
    let _serial = serial();
    common::init_tracing();
    let spin = Duration::from_millis(20);
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |_msg, conn| {
            conn.write(&thread_cpu_ns().to_be_bytes())?;
            Ok(())
        })
        .runtime(config(backend, Some(spin))),
    )
    .expect("bind");
    let mut peer = TcpStream::connect(listener.local_addr()).expect("connect");
    peer.set_nodelay(true).expect("nodelay");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut core_cpu = || {
        peer.write_all(&[0, 0, 0, 3, b'c', b'p', b'u'])
            .expect("write");
        let mut reply = [0u8; 12];
        peer.read_exact(&mut reply).expect("read");
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&reply[4..]);
        Duration::from_nanos(u64::from_be_bytes(ns))
    };
    core_cpu(); // warm up: the connection accepted, its receive armed
    std::thread::sleep(Duration::from_millis(100));
    let before = stats_after(&listener, 1);
    let core_start = core_cpu();
    let process_start = process_cpu();
    let idle = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let process_idle = process_cpu() - process_start;
    let idle_for = idle.elapsed();
    let core_idle = core_cpu() - core_start;
    let after = stats_after(&listener, 3);
    eprintln!(
        "{backend:?}: over {idle_for:?} idle, the core used {core_idle:?} of CPU, the process \
         {process_idle:?}; sleeps +{}, busy polls +{} (hits +{})",
        after.sleeps - before.sleeps,
        after.busy_polls - before.busy_polls,
        after.busy_poll_hits - before.busy_poll_hits,
    );
    assert!(
        after.busy_polls > before.busy_polls,
        "the core never busy polled"
    );
    assert!(
        after.sleeps > before.sleeps,
        "the core never slept after its spin"
    );
    assert!(
        core_idle < spin * 5 / 2,
        "the idle core used {core_idle:?} of CPU in {idle_for:?} (spin {spin:?})"
    );
    assert!(
        process_idle < Duration::from_millis(100),
        "the process used {process_idle:?} of CPU in {idle_for:?} of idleness"
    );
    listener.close();
}

on_both_backends!(
    ping_pong_with_busy_poll,
    busy_poll_picks_up_requests_without_sleeping,
    an_idle_core_stops_spinning,
);

/// Whether this kernel lets this process create an SQPOLL ring; the reason if not.
fn sqpoll_refusal() -> Option<String> {
    match io_uring::IoUring::<io_uring::squeue::Entry>::builder()
        .setup_sqpoll(1)
        .build(8)
    {
        Ok(_) => None,
        Err(err) => Some(err.to_string()),
    }
}

/// A runtime with SQPOLL (idle 1 ms), or the reason the kernel refuses it (the test then
/// skips). If the kernel creates SQPOLL rings, the runtime must have got one.
fn sqpoll_runtime(spin: Option<Duration>) -> Option<Runtime> {
    let cfg = RuntimeConfig {
        busy_poll: spin,
        ..runtime_on(Backend::IoUring, 1).sqpoll(Duration::from_millis(1))
    };
    let runtime = match Runtime::new(cfg) {
        Ok(runtime) => runtime,
        Err(err) => {
            common::skip(&format!("io_uring unavailable: {err}"));
            return None;
        }
    };
    match sqpoll_refusal() {
        None => {
            assert!(
                runtime.sqpoll(),
                "the kernel creates SQPOLL rings, but the runtime has none"
            );
            Some(runtime)
        }
        Some(reason) => {
            assert!(!runtime.sqpoll());
            common::skip(&format!("the kernel refuses IORING_SETUP_SQPOLL: {reason}"));
            None
        }
    }
}

/// Runs `scenario` on a thread of its own and fails if it takes longer than `limit`: a ring
/// whose sleeping SQPOLL thread is never woken hangs (its core waits for completions of
/// submissions nobody takes, even at shutdown), and the test must fail, not hang.
fn within(limit: Duration, scenario: fn()) {
    let (done, finished) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => runner.join().expect("scenario"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("still running after {limit:?}"),
    }
}

/// Ping-pong with both ends on SQPOLL rings, with and without busy polling.
#[test]
fn ping_pong_with_sqpoll() {
    let _serial = serial();
    common::init_tracing();
    within(Duration::from_secs(30), sqpoll_ping_pong);
}

fn sqpoll_ping_pong() {
    for spin in [None, Some(Duration::from_micros(200))] {
        let Some(server) = sqpoll_runtime(spin) else {
            return;
        };
        let Some(client) = sqpoll_runtime(spin) else {
            return;
        };
        let listener = echo_listener(&server);
        ping_pong(&client, listener.local_addr(), 1_000);
        listener.close();
    }
    let plain = Runtime::new(runtime_on(Backend::IoUring, 1)).expect("runtime");
    assert!(!plain.sqpoll(), "SQPOLL without asking for it");
}

/// With SQPOLL the core must wake the kernel thread once it has gone to sleep (1 ms idle):
/// after 50 ms of silence each time, a new connection's receive (a new submission) is taken
/// and echoed, and a writer's message, sent through the core's command queue and its wake-up
/// read re-armed by a submission, comes back. Without the wake-up the submission would wait
/// forever.
#[test]
fn sqpoll_wakes_its_sleeping_thread() {
    let _serial = serial();
    common::init_tracing();
    within(Duration::from_secs(30), sqpoll_wakes);
}

fn sqpoll_wakes() {
    let Some(server) = sqpoll_runtime(None) else {
        return;
    };
    let Some(client) = sqpoll_runtime(None) else {
        return;
    };
    let listener = echo_listener(&server);
    let (writer, rx) = replying_writer(&client, listener.local_addr());
    for i in 0..5u32 {
        std::thread::sleep(Duration::from_millis(50));
        let mut peer = TcpStream::connect(listener.local_addr()).expect("connect");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let frame = [0, 0, 0, 4, 9, 8, 7, i as u8];
        peer.write_all(&frame).expect("write");
        let mut back = [0u8; 8];
        peer.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("round {i}: no echo on a new connection: {e}"));
        assert_eq!(back, frame);
        std::thread::sleep(Duration::from_millis(50));
        let msg = message(i);
        writer.write(&msg).expect("write");
        let reply = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("round {i}: the writer's message never came back"));
        assert!(reply == msg);
    }
    writer.close().expect("close");
    listener.close();
}
