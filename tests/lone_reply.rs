//! A reply that is the only thing a core has to do (request/response, one connection at a
//! time) is sent by a plain nonblocking syscall on io_uring, so a round trip costs the core one
//! kernel wait, not two (an operation submitted, its completion waited for, then the wait for
//! the next request). A reply the socket cannot take at once is finished by the ring.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use buffstreams::{Backend, Listener, ListenerConfig};
use common::runtime_on;

const ROUND_TRIPS: u64 = 2_000;

#[test]
fn a_lone_reply_costs_one_kernel_wait_per_round_trip() {
    common::init_tracing();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |msg, conn| {
            conn.write(msg)?;
            Ok(())
        })
        .runtime(runtime_on(Backend::IoUring, 1)),
    )
    .expect("bind");
    let mut peer = TcpStream::connect(listener.local_addr()).expect("connect");
    peer.set_nodelay(true).expect("nodelay");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let frame = [0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut reply = [0u8; 12];
    // Warm up: the connection is accepted and its receive armed. Counters are published once
    // per loop turn, so wait until they show the warm-up message.
    peer.write_all(&frame).expect("write");
    peer.read_exact(&mut reply).expect("read");
    let published = |n: u64| {
        common::wait_until(Duration::from_secs(5), || {
            listener.runtime().stats()[0].messages_received >= n
        })
    };
    assert!(published(1));
    let before = listener.runtime().stats()[0];
    for _ in 0..ROUND_TRIPS {
        peer.write_all(&frame).expect("write");
        peer.read_exact(&mut reply).expect("read");
        assert_eq!(reply, frame);
    }
    assert!(published(before.messages_received + ROUND_TRIPS));
    let after = listener.runtime().stats()[0];
    let enters = after.enters - before.enters;
    let received = after.messages_received - before.messages_received;
    assert_eq!(received, ROUND_TRIPS);
    // Through the ring alone it is two waits per round trip (the send's completion comes back
    // at once, then the core waits for the next request); a direct send makes it one. Other
    // wake-ups (the tick) add a few.
    assert!(
        enters * 4 < ROUND_TRIPS * 5,
        "{enters} kernel waits for {ROUND_TRIPS} round trips"
    );
    listener.close();
}

/// A 4 MiB reply to a small request, to a peer that reads late: the direct send takes what
/// fits, the ring sends the rest as the peer drains it, and the next small round trips go
/// direct again, whole.
#[test]
fn a_lone_reply_the_socket_cannot_take_is_finished_by_the_ring() {
    common::init_tracing();
    let len = 4usize << 20;
    let big: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
    let expected = big.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
            if msg == b"big" {
                conn.write(&big)?;
            } else {
                conn.write(msg)?;
            }
            Ok(())
        })
        .max_message_size(8 << 20)
        .runtime(runtime_on(Backend::IoUring, 1)),
    )
    .expect("bind");
    let mut peer = TcpStream::connect(listener.local_addr()).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    peer.write_all(&[0, 0, 0, 3, b'b', b'i', b'g'])
        .expect("write");
    // Let the reply fill the socket buffers before reading any of it.
    std::thread::sleep(Duration::from_millis(200));
    let mut reply = vec![0u8; 4 + len];
    peer.read_exact(&mut reply).expect("read the large reply");
    assert_eq!(reply[..4], (len as u32).to_be_bytes());
    assert!(
        reply[4..] == expected[..],
        "the large reply came back changed"
    );
    let small = [0, 0, 0, 3, 9, 8, 7];
    for _ in 0..10 {
        peer.write_all(&small).expect("write");
        let mut back = [0u8; 7];
        peer.read_exact(&mut back).expect("read");
        assert_eq!(back, small);
    }
    let sent = (reply.len() + 10 * small.len()) as u64;
    assert!(
        common::wait_until(Duration::from_secs(5), || listener.runtime().stats()[0]
            .bytes_sent
            >= sent),
        "the core sent fewer bytes than came back"
    );
    assert_eq!(listener.runtime().stats()[0].bytes_sent, sent);
    listener.close();
}
