//! Broadcast: one message to every live connection (or a filtered set), in order, without a
//! slow reader holding up the others; on both backends.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{Backend, Listener, ListenerConfig, Runtime, WriteError, Writer, WriterConfig};
use common::{runtime_on, wait_until};

const CLIENTS: usize = 16;

/// A subscriber: a writer whose reply handler counts what the listener sends it and checks the
/// order (message `n` carries `n` in its first 8 bytes).
struct Client {
    writer: Writer,
    local: SocketAddr,
    received: Arc<AtomicU64>,
    in_order: Arc<AtomicBool>,
}

/// The clients' runtime: two cores on `backend`.
fn runtime(backend: Backend) -> Runtime {
    Runtime::new(runtime_on(backend, 2)).expect("runtime")
}

/// A two-core listener on `backend` that ignores what it receives.
fn listener(backend: Backend, send_queue_bytes: usize) -> Listener {
    let config = ListenerConfig::new("127.0.0.1:0", |_, _| Ok(()))
        .runtime(runtime_on(backend, 2))
        .send_queue_bytes(send_queue_bytes);
    Listener::bind(config).expect("bind")
}

fn connect(listener: &Listener, on: &Runtime, n: usize) -> Vec<Client> {
    let clients: Vec<Client> = (0..n)
        .map(|_| {
            let received = Arc::new(AtomicU64::new(0));
            let in_order = Arc::new(AtomicBool::new(true));
            let (r, o) = (received.clone(), in_order.clone());
            let config =
                WriterConfig::new(listener.local_addr().to_string()).on_message(move |msg, _| {
                    let seq = u64::from_be_bytes(msg[..8].try_into().unwrap_or_default());
                    if seq != r.fetch_add(1, Ordering::Relaxed) {
                        o.store(false, Ordering::Relaxed);
                    }
                    Ok(())
                });
            let writer = Writer::dial_on(on, config).expect("dial");
            let local = writer.conn_info().expect("connected").local;
            Client {
                writer,
                local,
                received,
                in_order,
            }
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || listener.connections().len() == n),
        "{} of {n} connections registered",
        listener.connections().len()
    );
    clients
}

fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut msg = vec![(seq % 251) as u8; len.max(8)];
    msg[..8].copy_from_slice(&seq.to_be_bytes());
    msg
}

fn every_client_gets_every_broadcast_in_order(backend: Backend) {
    common::init_tracing();
    const COUNT: u64 = 2_000;
    let listener = listener(backend, 1 << 20);
    let clients_rt = runtime(backend);
    let clients = connect(&listener, &clients_rt, CLIENTS);

    let infos = listener.connections();
    assert_eq!(infos.len(), CLIENTS);
    let mut peers: Vec<SocketAddr> = infos.iter().map(|i| i.peer).collect();
    let mut locals: Vec<SocketAddr> = clients.iter().map(|c| c.local).collect();
    peers.sort();
    locals.sort();
    assert_eq!(peers, locals);

    for seq in 0..COUNT {
        // 2000 small messages fit in every queue: nothing is refused.
        let report = listener.broadcast(&message(seq, 100)).expect("frame");
        assert_eq!(report.queued, CLIENTS, "{:?}", report.failed);
        assert!(report.is_complete());
        assert_eq!(report.attempted(), CLIENTS);
    }
    assert!(wait_until(Duration::from_secs(5), || clients
        .iter()
        .all(|c| c.received.load(Ordering::Relaxed) == COUNT)));
    for c in &clients {
        assert!(c.in_order.load(Ordering::Relaxed));
    }

    // A message that cannot be framed is refused as a whole.
    let too_big = vec![0u8; 9 << 20];
    assert!(listener.broadcast(&too_big).is_err());

    // Closed connections leave the registry.
    for c in clients.iter().take(4) {
        let _ = c.writer.close();
    }
    assert!(wait_until(Duration::from_secs(5), || listener
        .connections()
        .len()
        == CLIENTS - 4));
    let report = listener.broadcast(&message(COUNT, 8)).expect("frame");
    assert_eq!(report.queued, CLIENTS - 4);
    listener.close();
    assert!(listener.connections().is_empty());
    assert_eq!(listener.broadcast(b"nobody").expect("frame").attempted(), 0);
}

fn broadcast_to_reaches_only_the_matching_connections(backend: Backend) {
    common::init_tracing();
    let listener = listener(backend, 1 << 20);
    let clients_rt = runtime(backend);
    let clients = connect(&listener, &clients_rt, CLIENTS);
    // Every other client (by its address) is selected.
    let selected: HashMap<SocketAddr, bool> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.local, i % 2 == 0))
        .collect();

    for seq in 0..100 {
        let mut asked = 0;
        let report = listener
            .broadcast_to(&message(seq, 64), |info| {
                asked += 1;
                selected.get(&info.peer).copied().unwrap_or(false)
            })
            .expect("frame");
        assert_eq!(asked, CLIENTS);
        assert_eq!(report.queued, CLIENTS / 2);
        assert!(report.is_complete());
    }
    // Then one to the others only: its sequence number is 0 for them.
    let report = listener
        .broadcast_to(&message(0, 64), |info| {
            !selected.get(&info.peer).copied().unwrap_or(false)
        })
        .expect("frame");
    assert_eq!(report.queued, CLIENTS / 2);

    assert!(wait_until(Duration::from_secs(5), || clients.iter().all(
        |c| {
            let want = if selected[&c.local] { 100 } else { 1 };
            c.received.load(Ordering::Relaxed) == want
        }
    )));
    // Nothing more arrives.
    std::thread::sleep(Duration::from_millis(100));
    for c in &clients {
        let want = if selected[&c.local] { 100 } else { 1 };
        assert_eq!(c.received.load(Ordering::Relaxed), want);
        assert!(c.in_order.load(Ordering::Relaxed));
    }
    listener.close();
}

fn a_client_that_never_reads_does_not_hold_up_the_others(backend: Backend) {
    common::init_tracing();
    const SIZE: usize = 4096;
    let listener = listener(backend, 64 * 1024);
    let clients_rt = runtime(backend);
    let clients = connect(&listener, &clients_rt, CLIENTS);

    // A peer that connects and never reads, with a small receive buffer.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect(&listener.local_addr().into())
        .expect("connect");
    let stalled: TcpStream = socket.into();
    let stalled_addr = stalled.local_addr().expect("local addr");
    assert!(wait_until(Duration::from_secs(5), || listener
        .connections()
        .iter()
        .any(|i| i.peer == stalled_addr)));
    let stalled_id = listener
        .connections()
        .iter()
        .find(|i| i.peer == stalled_addr)
        .map(|i| i.id)
        .expect("registered");

    // Broadcast until the stalled peer's queue has refused a good many messages. Each call must
    // return at once; a good client that is momentarily full gets the message again (alone) so
    // that it still sees every message in order.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut stalled_full = 0u64;
    let mut retries = 0u64;
    let mut seq = 0u64;
    while stalled_full < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the stalled peer never filled up ({seq} messages)"
        );
        let msg = message(seq, SIZE);
        let t = Instant::now();
        let report = listener.broadcast(&msg).expect("frame");
        slowest = slowest.max(t.elapsed());
        for (info, err) in &report.failed {
            assert!(matches!(err, WriteError::Full), "{err}");
            if info.id == stalled_id {
                stalled_full += 1;
                continue;
            }
            // A good client: retry just for it until its queue has room.
            retries += 1;
            let id = info.id;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let again = listener.broadcast_to(&msg, |i| i.id == id).expect("frame");
                if again.queued == 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "client {id} stuck");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        seq += 1;
    }
    eprintln!(
        "broadcast {seq} messages of {SIZE} bytes; the stalled peer refused {stalled_full}; \
         good clients retried {retries} times; slowest broadcast call {slowest:?}"
    );
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert!(wait_until(Duration::from_secs(5), || clients
        .iter()
        .all(|c| c.received.load(Ordering::Relaxed) == seq)));
    for c in &clients {
        assert!(c.in_order.load(Ordering::Relaxed));
    }
    // The stalled peer is still connected, just full.
    assert!(listener.connections().iter().any(|i| i.id == stalled_id));
    drop(stalled);
    listener.close();
}

common::on_both_backends!(
    every_client_gets_every_broadcast_in_order,
    broadcast_to_reaches_only_the_matching_connections,
    a_client_that_never_reads_does_not_hold_up_the_others,
);
