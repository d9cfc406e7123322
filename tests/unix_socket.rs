//! Unix domain sockets on both backends: round trips over a socket file and an abstract name,
//! replies from the listener, peer credentials, the socket file's life (stale files replaced,
//! live ones and other files left alone, removed on close, permissions), connections spread
//! over the cores, a writer riding out a listener restart, and the manager.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, Endpoint, Framing, ListenError, Listener, ListenerConfig, Manager, PeerCred,
    RuntimeConfig, Writer, WriterConfig,
};
use common::{on_both_backends, runtime_on, wait_until};

/// A fresh socket path under the system's temporary directory (removed first).
fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bs-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn me() -> PeerCred {
    // SAFETY: these getters take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    PeerCred {
        pid: std::process::id() as i32,
        uid,
        gid,
    }
}

/// Listens on `address` with `cores` cores, echoing every message back and counting them.
fn echo_listener(address: &str, backend: Backend, cores: usize) -> (Listener, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let listener = Listener::bind(
        ListenerConfig::new(address, move |msg, conn| {
            seen.fetch_add(1, Ordering::Relaxed);
            conn.write(msg)?;
            Ok(())
        })
        .framing(Framing::Varint)
        .runtime(runtime_on(backend, cores)),
    )
    .unwrap();
    (listener, count)
}

/// A writer to `endpoint` that collects the replies it reads.
fn collecting_writer(endpoint: &Endpoint) -> (Writer, Arc<Mutex<Vec<Vec<u8>>>>) {
    let replies = Arc::new(Mutex::new(Vec::new()));
    let sink = replies.clone();
    let writer = Writer::dial(
        WriterConfig::new(endpoint.to_string())
            .framing(Framing::Varint)
            .on_message(move |msg, _conn| {
                sink.lock().unwrap().push(msg.to_vec());
                Ok(())
            }),
    )
    .unwrap();
    (writer, replies)
}

fn round_trip(backend: Backend) {
    let path = socket_path(&format!("rt-{backend:?}"));
    for address in [
        format!("unix:{}", path.display()),
        format!("unix:@bs-rt-{}-{backend:?}", std::process::id()),
    ] {
        let (listener, count) = echo_listener(&address, backend, 2);
        let endpoint = listener.endpoint();
        assert_eq!(endpoint, Endpoint::parse(&address).unwrap());
        assert_eq!(
            listener.local_addr().port(),
            0,
            "no TCP address for {address}"
        );
        let (writer, replies) = collecting_writer(&endpoint);
        let sent: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| format!("message {i} {}", "x".repeat(i as usize % 300)).into_bytes())
            .collect();
        for msg in &sent {
            writer.write(msg).unwrap();
        }
        writer.flush().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || replies.lock().unwrap().len()
                == sent.len()),
            "{address}: {} of {} replies",
            replies.lock().unwrap().len(),
            sent.len()
        );
        assert_eq!(*replies.lock().unwrap(), sent, "{address}: order and bytes");
        assert_eq!(count.load(Ordering::Relaxed), sent.len() as u64);

        // Both ends know the other is this process.
        let info = writer.conn_info().unwrap();
        assert!(info.is_unix());
        assert_eq!(info.peer_cred, Some(me()));
        let conns = listener.connections();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].peer_cred, Some(me()));
        writer.close().unwrap();
        listener.close();
    }
    assert!(
        !path.exists(),
        "the listener removes its socket file on close"
    );
}

/// A socket file nobody listens on is replaced; a live one, and a file that is not a socket,
/// are left alone and binding fails.
fn stale_live_and_foreign_files(backend: Backend) {
    let path = socket_path(&format!("stale-{backend:?}"));
    let address = format!("unix:{}", path.display());
    // A stale file: bound by a socket that is gone (what a killed process leaves).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let (listener, count) = echo_listener(&address, backend, 1);
    let (writer, _) = collecting_writer(&listener.endpoint());
    writer.write(b"after a stale file").unwrap();
    assert!(wait_until(Duration::from_secs(5), || count
        .load(Ordering::Relaxed)
        == 1));

    // A live one: a second listener fails and the first keeps working.
    let second = Listener::bind(
        ListenerConfig::new(address.as_str(), |_, _| Ok(())).runtime(runtime_on(backend, 1)),
    );
    match second {
        Err(ListenError::Bind { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EADDRINUSE))
        }
        other => panic!("a second listener on a live socket: {other:?}"),
    }
    writer.write(b"still there").unwrap();
    assert!(wait_until(Duration::from_secs(5), || count
        .load(Ordering::Relaxed)
        == 2));
    writer.close().unwrap();
    listener.close();
    assert!(!path.exists());

    // A regular file is never removed.
    std::fs::write(&path, b"not a socket").unwrap();
    let refused = Listener::bind(
        ListenerConfig::new(address.as_str(), |_, _| Ok(())).runtime(runtime_on(backend, 1)),
    );
    assert!(
        matches!(refused, Err(ListenError::Bind { .. })),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    std::fs::remove_file(&path).unwrap();
}

/// `unix_mode` sets the file's permissions; a file replaced after binding is not removed.
fn permissions_and_a_replaced_file(backend: Backend) {
    let path = socket_path(&format!("mode-{backend:?}"));
    let listener = Listener::bind(
        ListenerConfig::new(format!("unix:{}", path.display()), |_, _| Ok(()))
            .unix_mode(0o640)
            .runtime(runtime_on(backend, 1)),
    )
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // Someone else's file now stands at the path: closing leaves it.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"theirs").unwrap();
    listener.close();
    assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
    std::fs::remove_file(&path).unwrap();
}

/// Every core accepts from the one socket: connections reach both cores (on io_uring).
fn connections_reach_every_core(backend: Backend) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return common::skip("fewer than 2 CPUs");
    }
    let address = format!("unix:@bs-spread-{}-{backend:?}", std::process::id());
    let (listener, count) = echo_listener(&address, backend, 2);
    let endpoint = listener.endpoint();
    let mut per_core = [0usize; 2];
    for round in 0..4 {
        // Connections arrive while the cores are busy with earlier ones.
        let writers: Vec<Writer> = (0..16)
            .map(|_| {
                let (w, _) = collecting_writer(&endpoint);
                w.write(&[round; 64]).unwrap();
                w
            })
            .collect();
        let want = 16 * (round as u64 + 1);
        assert!(wait_until(Duration::from_secs(5), || count
            .load(Ordering::Relaxed)
            == want));
        for info in listener.connections() {
            per_core[info.core] += 1;
        }
        for w in writers {
            w.close().unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || listener
            .connections()
            .is_empty()));
    }
    eprintln!("{backend:?}: connections per core {per_core:?}");
    assert_eq!(per_core.iter().sum::<usize>(), 64);
    // On io_uring each core's single accept goes to the back of the line once it has taken a
    // connection, so both cores take some in every round (32/32 measured). On epoll every core
    // is woken and the first to accept wins: spread, but by the scheduler (35/29 to 43/21
    // measured), so not asserted.
    if backend == Backend::IoUring {
        assert!(
            per_core.iter().all(|&n| n > 0),
            "{backend:?}: every core accepts: {per_core:?}"
        );
    }
    listener.close();
}

/// A writer rides out a listener restart on the same path: nothing written is lost.
fn writer_survives_a_listener_restart(backend: Backend) {
    let path = socket_path(&format!("restart-{backend:?}"));
    let address = format!("unix:{}", path.display());
    let (first, first_count) = echo_listener(&address, backend, 1);
    let writer =
        Writer::dial(WriterConfig::new(address.as_str()).framing(Framing::Varint)).unwrap();
    writer.write(b"before").unwrap();
    assert!(wait_until(Duration::from_secs(5), || first_count
        .load(Ordering::Relaxed)
        == 1));
    first.close();
    let (second, second_count) = echo_listener(&address, backend, 1);
    for i in 0..100u32 {
        writer.write(&i.to_be_bytes()).unwrap();
    }
    writer.flush().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || second_count
            .load(Ordering::Relaxed)
            == 100),
        "{} of 100 after the restart",
        second_count.load(Ordering::Relaxed)
    );
    writer.close().unwrap();
    second.close();
}

on_both_backends!(
    round_trip,
    stale_live_and_foreign_files,
    permissions_and_a_replaced_file,
    connections_reach_every_core,
    writer_survives_a_listener_restart,
);

#[test]
fn the_manager_listens_and_dials_by_unix_address() {
    let manager = Manager::new(RuntimeConfig::with_cores(1)).unwrap();
    let address = format!("unix:@bs-manager-{}", std::process::id());
    let got = Arc::new(AtomicU64::new(0));
    let seen = got.clone();
    let endpoint = manager
        .listen(ListenerConfig::new(address.as_str(), move |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }))
        .unwrap();
    assert_eq!(endpoint.to_string(), address);
    manager.dial(WriterConfig::new(address.as_str())).unwrap();
    manager.write_to(&address, b"hi").unwrap();
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::Relaxed)
        == 1));
    manager.shutdown(Duration::from_secs(1));
}

#[test]
fn unresolvable_addresses_are_typed_errors() {
    for bad in ["unix:", "unix:@", "@"] {
        assert!(matches!(
            Listener::bind(ListenerConfig::new(bad, |_, _| Ok(()))),
            Err(ListenError::Resolve(_))
        ));
    }
    let missing = socket_path("nobody-listens");
    match Writer::dial(WriterConfig::new(format!("unix:{}", missing.display()))) {
        Err(buffstreams::DialError::Connect { addr, source }) => {
            assert_eq!(
                addr,
                Endpoint::parse(&format!("unix:{}", missing.display())).unwrap()
            );
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("dialing a missing socket: {:?}", other.map(|_| ())),
    }
}
