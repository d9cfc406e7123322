//! A listener's own counters on a runtime it shares with another listener: each counts only its
//! connections and messages, on both backends.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use buffstreams::{Backend, Listener, ListenerConfig, Runtime};
use common::{runtime_on, wait_until};

fn frames(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.push(i as u8);
    }
    out
}

fn each_listener_counts_only_its_own(backend: Backend) {
    common::init_tracing();
    let runtime = Runtime::new(runtime_on(backend, 2)).expect("runtime");
    let bind = |max: Option<usize>| {
        let mut config = ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())).max_message_size(16);
        if let Some(max) = max {
            config = config.max_connections(max);
        }
        Listener::bind_on(&runtime, config).expect("bind")
    };
    let (a, b) = (bind(None), bind(Some(2)));

    let mut to_a = TcpStream::connect(a.local_addr()).expect("connect");
    to_a.write_all(&frames(3)).expect("write");
    let mut to_b: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(b.local_addr()).expect("connect"))
        .collect();
    to_b[0].write_all(&frames(5)).expect("write");
    // Over b's maximum message size: that connection closes with an error.
    to_b[1].write_all(&100u32.to_be_bytes()).expect("write");
    assert!(wait_until(Duration::from_secs(5), || a
        .stats()
        .messages_received
        == 3
        && b.stats().messages_received == 5
        && b.stats().conn_errors == 1));
    // Over b's cap of 2 (one of the two may still be closing: wait for it).
    assert!(wait_until(Duration::from_secs(5), || b.stats().connections == 1));
    let _third = TcpStream::connect(b.local_addr()).expect("connect");
    let _fourth = TcpStream::connect(b.local_addr()).expect("connect");
    assert!(wait_until(Duration::from_secs(5), || b.stats().refused
        == 1
        && b.stats().accepted == 3));

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.accepted, sa.connections, sa.messages_received),
        (1, 1, 3)
    );
    assert_eq!((sa.conn_errors, sa.refused), (0, 0));
    assert_eq!(
        (sb.accepted, sb.connections, sb.messages_received),
        (3, 2, 5)
    );
    // The runtime's counters add both listeners up.
    assert!(wait_until(Duration::from_secs(5), || runtime
        .stats()
        .iter()
        .map(|s| s.messages_received)
        .sum::<u64>()
        == 8));

    drop(to_a);
    assert!(wait_until(Duration::from_secs(5), || a.stats().connections == 0));
    assert_eq!(a.stats().conn_errors, 0, "a peer's close is no error");
    a.close();
    b.close();
}

common::on_both_backends!(each_listener_counts_only_its_own);
