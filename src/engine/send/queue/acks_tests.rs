//! An acknowledged queue without a core thread or a ring: sent chunks kept until acknowledged,
//! a failed connection's frames re-sent from the oldest unacknowledged one behind the hello,
//! a partly acknowledged chunk cut at a frame, and refused acknowledgements.

use std::sync::Arc;

use super::ack_state::{AckFault, Resume};
use super::tests::{frame, queue, socket};
use crate::engine::send::outbox::Outbox;
use crate::error::ConnError;
use crate::frame::{Codec, Framing};

/// Payloads of the frames in `bytes` (the queue's codec).
fn payloads(bytes: bytes::BytesMut) -> Vec<Vec<u8>> {
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    crate::stream::frames::split_frames(&codec, bytes)
        .into_iter()
        .map(|b| b.to_vec())
        .collect()
}

/// The core takes everything queued and the kernel takes it all; returns the (empty) outbox.
fn send_all(
    q: &Arc<super::SendQueue<crate::engine::core::CoreShared>>,
    fd: &Arc<std::os::fd::OwnedFd>,
) -> Outbox {
    let mut out = Outbox::new();
    assert!(q.take(&mut out, fd));
    let mut done = Vec::new();
    out.advance(out.unsent_len(), &mut done);
    q.complete(&mut done, true);
    out
}

#[test]
fn sent_frames_stay_until_acknowledged_and_go_again_after_a_failure() {
    let (_core, q) = queue(1 << 20);
    q.make_acked();
    let hello = |r: Resume| format!("hello {} {}", r.first_seq, r.first_new).into_bytes();
    assert_eq!(
        q.resume_acked(hello),
        Some(Resume {
            first_seq: 1,
            first_new: 1
        })
    );
    let (fd, _peer) = socket();
    q.attach(0, fd.clone());
    for byte in 1..=5u8 {
        frame(&q, byte, 10);
    }
    let mut out = send_all(&q, &fd);
    // Everything was sent: the hello is gone, the frames are kept.
    assert_eq!(q.ack(6), Err(AckFault::Beyond { sent: 5 }));
    assert_eq!(q.ack(2), Ok(()));
    assert_eq!(q.ack(1), Err(AckFault::Backwards { acked: 2 }));
    let counts = q.ack_counts().expect("acked");
    assert_eq!((counts.acked, counts.queued, counts.resent), (2, 5, 0));
    assert!(!q
        .wait_drained(Some(std::time::Instant::now()))
        .expect("open"));
    // The connection fails; the next one starts at 3, after a hello, and 3..=5 were sent before.
    frame(&q, 6, 10);
    q.detach(
        &mut out,
        Some(Arc::new(ConnError::NotConnected)),
        true,
        Some(&fd),
    );
    assert_eq!(
        q.resume_acked(hello),
        Some(Resume {
            first_seq: 3,
            first_new: 6
        })
    );
    assert_eq!(q.ack_counts().expect("acked").resent, 3);
    let (fd2, _peer2) = socket();
    q.attach(1, fd2.clone());
    let mut out2 = Outbox::new();
    assert!(q.take(&mut out2, &fd2));
    let first = out2.chunks_mut().front().map(|c| c.unsent().to_vec());
    assert_eq!(
        first.as_deref(),
        Some(&b"hello 3 6"[..]),
        "the hello goes first"
    );
    q.detach(&mut out2, None, false, Some(&fd2));
    // What a close hands back: the frames not acknowledged (no hello: it is no message).
    let frames = payloads(q.close());
    assert_eq!(
        frames,
        (3..=6u8).map(|b| vec![b; 10]).collect::<Vec<_>>(),
        "the acknowledged frames are dropped, the rest kept in order"
    );
}

#[test]
fn giving_up_returns_exactly_the_unacknowledged_frames() {
    let (_core, q) = queue(1 << 20);
    q.make_acked();
    let (fd, _peer) = socket();
    q.attach(0, fd.clone());
    for byte in 1..=4u8 {
        frame(&q, byte, 10);
    }
    send_all(&q, &fd);
    frame(&q, 5, 10);
    // Frame 1 of the kept chunk is acknowledged: the chunk is cut at frame 2.
    q.ack(1).expect("ack");
    let rest = q.refuse(Arc::new(ConnError::NotConnected));
    assert_eq!(
        payloads(rest),
        (2..=5u8).map(|b| vec![b; 10]).collect::<Vec<_>>()
    );
}

#[test]
fn the_bound_counts_what_waits_for_acknowledgement() {
    let (_core, q) = queue(100);
    q.make_acked();
    let (fd, _peer) = socket();
    q.attach(0, fd.clone());
    for byte in 1..=3u8 {
        frame(&q, byte, 26); // 30 bytes each
    }
    send_all(&q, &fd);
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let payload = [9u8; 26];
    let f = codec.prepare(&payload).expect("frame");
    let now = Some(std::time::Instant::now());
    assert!(
        q.push(&f, now).is_err(),
        "sent but not acknowledged: no room"
    );
    q.ack(3).expect("ack");
    assert!(q.push(&f, now).is_ok(), "acknowledged: room again");
}

/// A connection that ends while a producer's direct send is out (blocked on a full socket):
/// the kept chunks stay kept until the send is back, so they still go first, then what the
/// send had taken, in sequence order.
#[test]
fn a_connection_ending_during_a_direct_send_keeps_the_order() {
    use std::os::fd::AsRawFd;
    let (_core, q) = queue(8 << 20);
    q.make_acked();
    let (fd, _peer) = socket();
    q.attach(0, fd.clone());
    for byte in 1..=3u8 {
        frame(&q, byte, 10);
    }
    send_all(&q, &fd);
    // Fill the socket so that a direct send blocks.
    let junk = [0u8; 4096];
    // SAFETY: a valid socket and buffer; MSG_DONTWAIT never blocks.
    while unsafe {
        libc::send(
            fd.as_raw_fd(),
            junk.as_ptr().cast(),
            junk.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || super::tests::push_batch(&q, 64, 4))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !q.lock().owner.is_direct() {
        assert!(std::time::Instant::now() < deadline, "no direct send");
        std::thread::yield_now();
    }
    // The connection fails while the direct send waits for room.
    q.detach(
        &mut Outbox::new(),
        Some(Arc::new(ConnError::NotConnected)),
        true,
        Some(&fd),
    );
    producer.join().expect("producer");
    let resume = q.resume_acked(|_| Vec::new()).expect("acked");
    assert_eq!(resume.first_seq, 1);
    let frames = payloads(q.close());
    let firsts: Vec<u8> = frames.iter().map(|f| f[0]).collect();
    assert_eq!(
        firsts,
        [1, 2, 3, 4],
        "kept frames first, then the direct send's"
    );
}
