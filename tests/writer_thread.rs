//! What a writing thread sends itself, on both backends, so that the send path does not wait for
//! the core's thread to be scheduled: a whole default batch (more than one `sendmsg`'s 64
//! chunks), a flush and a close while the core is busy, a bounded wait on a peer that never
//! reads, and the socket's bound on unsent bytes.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{
    Backend, Listener, ListenerConfig, Writer, WriterConfig, BUFFERED_WRITER_BYTES,
    DEFAULT_NOTSENT_LOWAT,
};
use common::runtime_on as rt;

/// A std peer that reads everything until EOF on one thread; returns the bytes read.
fn draining_peer() -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    (addr, reader)
}

/// A default `BufferedWriter` batch on loopback is 1 MiB of frames, which spans 65 chunks of
/// 16 KiB (frames do not fill a chunk to the byte): the writing thread sends all of it, in two
/// `sendmsg`s, and the core sends nothing (it used to get the 65th chunk, at the cost of a
/// wake-up and two `io_uring_enter`s per batch).
fn a_default_batch_is_sent_whole_by_the_writing_thread(backend: Backend) {
    let mut core_sends = Vec::new();
    // Three tries: a stall of the machine longer than the writing thread waits for room
    // (about 100 ms) rightly hands the rest to the core, but that is not what this checks.
    for _ in 0..3 {
        let (addr, reader) = draining_peer();
        let writer = Writer::dial(WriterConfig::new(addr.to_string()).runtime(rt(backend, 1)))
            .expect("dial");
        let mut out = writer.buffered();
        assert_eq!(out.batch_bytes(), BUFFERED_WRITER_BYTES);
        let before = writer.runtime().stats()[0].sends;
        let mut written = 0;
        while out.buffered_bytes() + 114 <= out.batch_bytes() {
            written += out.write(&[5u8; 110]).expect("write");
        }
        assert!(
            written > 64 * 16 * 1024 - 64 * 114,
            "a batch of {written} bytes"
        );
        out.flush().expect("flush");
        // Not `Writer::flush` first: it would send a tail left in the queue itself. The core
        // publishes its counters once per loop turn: let it take a few.
        std::thread::sleep(Duration::from_millis(30));
        core_sends.push(writer.runtime().stats()[0].sends - before);
        writer.flush().expect("flush");
        drop(out);
        writer.close().expect("close");
        assert_eq!(reader.join().expect("reader"), written);
        if core_sends.last() == Some(&0) {
            return;
        }
    }
    panic!("{backend:?}: the core made {core_sends:?} sends in each try; the writing thread should have sent the whole batch");
}

/// `flush` and `close` of a writer whose core is busy (here: a handler on the same core that
/// sleeps) do not wait for the core: the flushing thread sends what is queued itself, and a
/// writer with nothing in flight closes without a round trip to the core. Without either, this
/// thread would wait out the handler's 400 ms.
fn flush_and_close_do_not_wait_for_a_busy_core(backend: Backend) {
    let runtime = buffstreams::Runtime::new(rt(backend, 1)).expect("runtime");
    let busy = Arc::new(AtomicBool::new(false));
    let b = busy.clone();
    let listener = Listener::bind_on(
        &runtime,
        ListenerConfig::new("127.0.0.1:0", move |_msg, _conn| {
            b.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        }),
    )
    .expect("bind");
    let (addr, reader) = draining_peer();
    let writer = Writer::dial_on(&runtime, WriterConfig::new(addr.to_string())).expect("dial");
    // Occupy the core: a message to the sleeping handler.
    let mut poke = std::net::TcpStream::connect(listener.local_addr()).expect("connect");
    std::io::Write::write_all(&mut poke, &[0, 0, 0, 1, 9]).expect("poke");
    assert!(common::wait_until(Duration::from_secs(5), || busy.load(Ordering::SeqCst)));
    let start = Instant::now();
    for _ in 0..1000 {
        writer.write(&[3u8; 100]).expect("write");
    }
    writer.flush().expect("flush");
    let flushed = start.elapsed();
    writer.close().expect("close");
    let closed = start.elapsed();
    assert!(
        flushed < Duration::from_millis(200) && closed < Duration::from_millis(250),
        "{backend:?}: flush took {flushed:?} and close {closed:?} while the core was busy"
    );
    // The peer gets every byte, then EOF, once the core has come back to the close.
    assert_eq!(reader.join().expect("reader"), 1000 * 104);
    listener.close();
}

/// A producer's send into a peer that never reads waits for room for a bounded time (the
/// socket's `SO_SNDTIMEO`, then `poll` up to the same deadline), then leaves the rest to the
/// core: a flush of a batch far larger than the socket takes returns in well under a second.
fn a_send_into_a_peer_that_never_reads_is_bounded(backend: Backend) {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .max_message_size(1 << 20)
            .runtime(rt(backend, 1)),
    )
    .expect("dial");
    let (conn, _) = server.accept().expect("accept");
    let (done, flushed) = std::sync::mpsc::channel();
    let w = writer.clone();
    // On a thread of its own, so that a send that never returns fails this test, not hangs it.
    std::thread::spawn(move || {
        let mut out = w.buffered_with_capacity(64 << 20);
        for _ in 0..48 {
            out.write(&vec![1u8; 1 << 20]).expect("write");
        }
        let start = Instant::now();
        out.flush().expect("flush");
        let _ = done.send(start.elapsed());
    });
    let took = flushed.recv_timeout(Duration::from_secs(10));
    assert!(
        took.is_ok_and(|t| t < Duration::from_millis(900)),
        "{backend:?}: a flush into a peer that never reads took {took:?}"
    );
    let _ = writer.close_timeout(Duration::from_millis(100));
    drop(conn);
}

/// The `TCP_NOTSENT_LOWAT` of this process's socket whose local address is `local`, read
/// through `/proc/self/fd` (the writer does not hand its socket out).
fn notsent_lowat_of(local: std::net::SocketAddr) -> Option<u32> {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the two reads below, during which the
        // writer that owns it (alive in the caller) keeps it open; a descriptor of another
        // kind just fails the calls.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        if sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(local) {
            return sock.tcp_notsent_lowat().ok();
        }
    }
    None
}

/// A writer's socket bounds the bytes the kernel holds unsent (`TCP_NOTSENT_LOWAT`, what makes
/// large batches pay on a real network's MTU): by default only where segments are small (here
/// a network namespace whose loopback has MTU 1500 or 9000), not on loopback's 64 KiB MTU; or
/// as set.
fn a_writer_bounds_its_unsent_bytes(backend: Backend) {
    // `set`: what `notsent_lowat` is given, if it is called.
    let lowat = move |set: Option<Option<u32>>| {
        let (addr, reader) = draining_peer();
        let mut cfg = WriterConfig::new(addr.to_string()).runtime(rt(backend, 1));
        if let Some(set) = set {
            cfg = cfg.notsent_lowat(set);
        }
        let writer = Writer::dial(cfg).expect("dial");
        let local = writer.conn_info().expect("connected").local;
        let got = notsent_lowat_of(local).expect("the writer's socket");
        writer.close().expect("close");
        reader.join().expect("reader");
        got
    };
    // 0: not set on the socket, the kernel's net.ipv4.tcp_notsent_lowat applies.
    assert_eq!(lowat(None), 0, "{backend:?}: loopback's MTU");
    assert_eq!(lowat(Some(Some(300_000))), 300_000, "{backend:?}");
    if not_root() {
        common::skip("the MTU 1500 and 9000 cases: a network namespace needs root");
        return;
    }
    for mtu in [1500, 9000] {
        let (small, unset) =
            common::in_namespace_with_mtu(mtu, move || (lowat(None), lowat(Some(None))))
                .expect("network namespace");
        assert_eq!(small, DEFAULT_NOTSENT_LOWAT, "{backend:?}: MTU {mtu}");
        assert_eq!(unset, 0, "{backend:?}: MTU {mtu}, notsent_lowat(None)");
    }
}

fn not_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() != 0 }
}

common::on_both_backends!(
    a_default_batch_is_sent_whole_by_the_writing_thread,
    flush_and_close_do_not_wait_for_a_busy_core,
    a_send_into_a_peer_that_never_reads_is_bounded,
    a_writer_bounds_its_unsent_bytes,
);
