//! Listener close and re-bind, writer reconnect across a listener restart, SO_REUSEPORT spread,
//! blocking `wait`, and a typed start error when io_uring is blocked.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, Listener, ListenerConfig, RetryPolicy, Runtime, RuntimeConfig, StartError, WriteError,
    Writer, WriterConfig,
};
use common::wait_until;

fn rt(cores: usize, backend: Backend) -> RuntimeConfig {
    RuntimeConfig {
        cores,
        backend,
        pin: false,
        ..RuntimeConfig::default()
    }
}

fn counting_listener(
    addr: &str,
    cores: usize,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    backend: Backend,
) -> Listener {
    Listener::bind(
        ListenerConfig::new(addr, move |msg, _| {
            seen.lock().unwrap().push(msg.to_vec());
            Ok(())
        })
        .runtime(rt(cores, backend)),
    )
    .unwrap()
}

fn close_then_rebind_same_port(backend: Backend) {
    let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
    let first = counting_listener("127.0.0.1:0", 2, seen.clone(), backend);
    let addr = first.local_addr();
    // A connection is open (and holds unread data) while the listener closes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0, 0, 0, 1, b'x']).unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 1));
    first.close();
    assert!(first.is_closed());
    // The port is free at once: bind again, same address.
    let second = counting_listener(&addr.to_string(), 2, seen.clone(), backend);
    assert_eq!(second.local_addr(), addr);
    let mut s2 = TcpStream::connect(addr).unwrap();
    s2.write_all(&[0, 0, 0, 1, b'y']).unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 2));
    second.close();
    drop(s);
}

fn writer_reconnects_after_listener_restart(backend: Backend) {
    common::init_tracing();
    let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
    let listener = counting_listener("127.0.0.1:0", 1, seen.clone(), backend);
    let addr = listener.local_addr();
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .runtime(rt(1, backend))
            .connect_timeout(Duration::from_millis(500))
            .retry(RetryPolicy::forever()),
    )
    .unwrap();
    writer.write(b"one").unwrap();
    writer.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 1));
    let first_conn = writer.conn_info().unwrap();

    listener.close();
    assert!(wait_until(Duration::from_secs(5), || !writer.is_connected()));
    // While the policy retries, writes are accepted and wait in the queue.
    writer.write(b"two").unwrap();
    let listener = counting_listener(&addr.to_string(), 1, seen.clone(), backend);
    writer.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 2));
    assert_eq!(seen.lock().unwrap()[1], b"two");
    assert_ne!(
        writer.conn_info().unwrap().id,
        first_conn.id,
        "a new connection"
    );
    writer.close().unwrap();
    listener.close();
}

fn never_policy_reconnects_on_the_next_write(backend: Backend) {
    let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
    let listener = counting_listener("127.0.0.1:0", 1, seen.clone(), backend);
    let addr = listener.local_addr();
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .runtime(rt(1, backend))
            .connect_timeout(Duration::from_millis(500))
            .retry(RetryPolicy::never()),
    )
    .unwrap();
    writer.write(b"one").unwrap();
    writer.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 1));
    listener.close();
    // Go BuffStreams semantics: with nobody listening, the next write tries to reconnect and
    // fails with a typed error; that message is not accepted. (Writes made before the core saw
    // the close are accepted and queued: they go out after the reconnect below.)
    let mut attempt = 0u32;
    let mut refused = None;
    assert!(wait_until(Duration::from_secs(5), || {
        attempt += 1;
        let msg = format!("attempt {attempt}");
        match writer.write(msg.as_bytes()) {
            Err(WriteError::Reconnect(_)) => {
                refused = Some(msg);
                true
            }
            _ => false,
        }
    }));
    let refused = refused.unwrap();
    let listener = counting_listener(&addr.to_string(), 1, seen.clone(), backend);
    writer.write(b"two").unwrap();
    writer.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == b"two")));
    assert!(
        seen.lock().unwrap().iter().all(|m| m != refused.as_bytes()),
        "a refused write was delivered"
    );
    writer.close().unwrap();
    listener.close();
}

fn reuseport_spreads_connections_over_cores(backend: Backend) {
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .runtime(rt(2, backend)),
    )
    .unwrap();
    const CONNS: u64 = 64;
    let streams: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let mut s = TcpStream::connect(listener.local_addr()).unwrap();
            s.write_all(&[0, 0, 0, 2, b'h', b'i']).unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || received
        .load(Ordering::Relaxed)
        == CONNS));
    // Counters are published once per loop turn.
    assert!(wait_until(Duration::from_secs(5), || listener
        .runtime()
        .stats()
        .iter()
        .map(|s| s.messages_received)
        .sum::<u64>()
        == CONNS));
    let stats = listener.runtime().stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats.iter().map(|s| s.accepted).sum::<u64>(), CONNS);
    for core in &stats {
        // The chance that 64 connections all hash to one of two sockets is 2^-63.
        assert!(
            core.accepted > 0,
            "core {} accepted nothing: {stats:?}",
            core.core
        );
        assert_eq!(core.connections, core.accepted);
        assert_eq!(core.messages_received, core.accepted);
    }
    drop(streams);
    assert!(wait_until(Duration::from_secs(5), || listener
        .runtime()
        .stats()
        .iter()
        .all(|s| s.connections == 0)));
    listener.close();
}

#[test]
fn wait_blocks_until_closed() {
    let listener =
        Listener::bind(ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())).cores(1)).unwrap();
    let waiter = {
        let l = listener.clone();
        std::thread::spawn(move || l.wait())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    listener.close();
    waiter.join().unwrap();
}

#[test]
fn handler_can_close_its_listener() {
    let slot: Arc<Mutex<Option<Listener>>> = Arc::default();
    let s = slot.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |_, _| {
            if let Some(l) = s.lock().unwrap().as_ref() {
                l.close();
            }
            Ok(())
        })
        .cores(1),
    )
    .unwrap();
    *slot.lock().unwrap() = Some(listener.clone());
    let mut s = TcpStream::connect(listener.local_addr()).unwrap();
    s.write_all(&[0, 0, 0, 0]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || listener.is_closed()));
    slot.lock().unwrap().take();
}

/// Installs a seccomp filter on the calling thread (inherited by threads it spawns) that fails
/// `io_uring_setup` with EPERM, as Docker's default profile does.
fn block_io_uring_on_this_thread() {
    const SYS_IO_URING_SETUP: u32 = 425;
    let ret_eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut filter = [
        // A = syscall number
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: ret_eperm,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl/seccomp with a valid, fully initialised filter program that outlives the
    // call; the filter applies to this thread only (no TSYNC).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const _
            ),
            0
        );
    }
}

#[test]
fn blocked_io_uring_is_a_typed_error() {
    let uring_only = RuntimeConfig {
        cores: 1,
        backend: Backend::IoUring,
        ..RuntimeConfig::default()
    };
    let cfg = uring_only.clone();
    let result = std::thread::spawn(move || {
        block_io_uring_on_this_thread();
        Runtime::new(cfg).map(|_| ())
    })
    .join()
    .unwrap();
    let err = result.expect_err("io_uring_setup is blocked");
    assert!(matches!(err, StartError::IoUringBlocked), "{err:?}");
    assert!(
        err.to_string().contains("seccomp"),
        "the message says why: {err}"
    );
    // Listener::bind reports the same, as a ListenError::Start.
    let result = std::thread::spawn(move || {
        block_io_uring_on_this_thread();
        Listener::bind(ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())).runtime(uring_only))
            .map(|_| ())
    })
    .join()
    .unwrap();
    assert!(matches!(
        result,
        Err(buffstreams::ListenError::Start(StartError::IoUringBlocked))
    ));
}

#[test]
fn auto_backend_falls_back_to_epoll_when_io_uring_is_blocked() {
    let (backend, delivered) = std::thread::spawn(|| {
        block_io_uring_on_this_thread();
        let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
        let listener = counting_listener("127.0.0.1:0", 1, seen.clone(), Backend::Auto);
        let backend = listener.runtime().backend();
        let mut s = TcpStream::connect(listener.local_addr()).unwrap();
        s.write_all(&[0, 0, 0, 2, b'o', b'k']).unwrap();
        let delivered = wait_until(Duration::from_secs(5), || seen.lock().unwrap().len() == 1);
        listener.close();
        (backend, delivered)
    })
    .join()
    .unwrap();
    assert_eq!(backend, Backend::Epoll);
    assert!(delivered);
}

/// A second listener on a port that is already listening is refused (`EADDRINUSE`) instead of
/// silently taking part of its connections through `SO_REUSEPORT`; once the first closes, the
/// port binds again.
#[test]
fn a_second_listener_on_a_busy_port_is_refused() {
    let seen = Arc::<Mutex<Vec<Vec<u8>>>>::default();
    let first = counting_listener("127.0.0.1:0", 2, seen.clone(), Backend::IoUring);
    let addr = first.local_addr();
    let second = Listener::bind(
        ListenerConfig::new(addr.to_string(), |_, _| Ok(())).runtime(rt(1, Backend::IoUring)),
    );
    match second {
        Err(buffstreams::ListenError::Bind { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
        }
        other => panic!("bound twice: {other:?}"),
    }
    // A plain socket listening there (another program) is detected the same way.
    first.close();
    let other_program = std::net::TcpListener::bind(addr).unwrap();
    assert!(Listener::bind(
        ListenerConfig::new(addr.to_string(), |_, _| Ok(())).runtime(rt(1, Backend::IoUring))
    )
    .is_err());
    drop(other_program);
    let again = counting_listener(&addr.to_string(), 1, seen, Backend::IoUring);
    again.close();
}

common::on_both_backends!(
    close_then_rebind_same_port,
    writer_reconnects_after_listener_restart,
    never_policy_reconnects_on_the_next_write,
    reuseport_spreads_connections_over_cores,
);
