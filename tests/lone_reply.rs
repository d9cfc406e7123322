//! A reply that is the only thing a core has to do (request/response, one connection at a
//! time) is sent by a plain nonblocking syscall on io_uring, so a round trip costs the core one
//! kernel wait, not two (an operation submitted, its completion waited for, then the wait for
//! the next request).

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
    // Warm up: the connection is accepted and its receive armed.
    peer.write_all(&frame).expect("write");
    peer.read_exact(&mut reply).expect("read");
    let before = listener.stats()[0];
    for _ in 0..ROUND_TRIPS {
        peer.write_all(&frame).expect("write");
        peer.read_exact(&mut reply).expect("read");
        assert_eq!(reply, frame);
    }
    let after = listener.stats()[0];
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
