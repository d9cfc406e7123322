//! The queue's protocols without a core thread or a ring: the "tell the core once" flag, a send
//! cut mid-frame rewound to the frame, the queue bound, and a producer's direct send on a
//! socket pair.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::core::{Command, CoreShared, SendQueue};
use crate::engine::send::gate::PushError;
use crate::engine::send::outbox::Outbox;
use crate::frame::{Codec, Framing};

fn queue(limit: usize) -> (Arc<CoreShared>, Arc<SendQueue>) {
    queue_with(limit, false)
}

fn queue_with(limit: usize, sealed: bool) -> (Arc<CoreShared>, Arc<SendQueue>) {
    let core = Arc::new(CoreShared::new(0).expect("eventfd"));
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let q = SendQueue::new(core.clone(), limit, Box::new(codec), false, sealed);
    (core, q)
}

/// One end of a socket pair, as the engine holds a connection's socket, and the other end.
fn socket() -> (Arc<OwnedFd>, UnixStream) {
    let (a, b) = UnixStream::pair().expect("pair");
    (Arc::new(OwnedFd::from(a)), b)
}

fn flushes(core: &CoreShared) -> usize {
    core.take_commands()
        .unwrap_or_default()
        .iter()
        .filter(|c| matches!(c, Command::Flush(_)))
        .count()
}

fn frame(q: &Arc<SendQueue>, byte: u8, len: usize) {
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let payload = vec![byte; len];
    let f = codec.prepare(&payload).expect("frame");
    q.push(&f, None).expect("push");
}

/// Queues one `len`-byte frame of `byte`s the way a `BufferedWriter` hands on a batch.
fn push_batch(q: &Arc<SendQueue>, len: usize, byte: u8) {
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let mut chunk = q.core().pool().get(len);
    codec
        .encode_with(len - 4, chunk.spare(len), |p| p.fill(byte))
        .expect("frame");
    chunk.commit(len);
    let mut chunks = std::collections::VecDeque::from([chunk]);
    q.push_chunks(&mut chunks, None).expect("push");
}

#[test]
fn the_core_is_told_once_per_idle_period() {
    let (core, q) = queue(1 << 20);
    let (fd, _b) = socket();
    q.attach(0, fd.clone());
    frame(&q, 1, 10);
    frame(&q, 2, 10);
    assert_eq!(flushes(&core), 1, "one Flush for the first frame only");
    let mut out = Outbox::new();
    assert!(q.take(&mut out, &fd));
    frame(&q, 3, 10);
    assert_eq!(flushes(&core), 0, "the core is busy: nobody tells it");
    let mut done = Vec::new();
    out.advance(out.unsent_len(), &mut done);
    q.complete(&mut done, true);
    assert!(q.take(&mut out, &fd), "takes what came meanwhile");
    out.advance(out.unsent_len(), &mut done);
    q.complete(&mut done, true);
    assert!(!q.take(&mut out, &fd));
    frame(&q, 4, 10);
    assert_eq!(flushes(&core), 1, "idle again: the next frame tells it");
    assert!(q.wait_drained(Some(Instant::now())).is_ok());
}

#[test]
fn a_send_cut_mid_frame_resends_that_frame_whole() {
    let (_core, q) = queue(1 << 20);
    let (fd, _b) = socket();
    q.attach(0, fd.clone());
    for (byte, len) in [(1u8, 100), (2, 200), (3, 300)] {
        frame(&q, byte, len);
    }
    let mut out = Outbox::new();
    assert!(q.take(&mut out, &fd));
    let mut done = Vec::new();
    // The kernel took the first frame (104 bytes) and 50 bytes of the second.
    out.advance(154, &mut done);
    q.complete(&mut done, false);
    q.detach(&mut out, None, false, Some(&fd));
    let rest = q.close();
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let messages = crate::stream::frames::split_frames(&codec, rest);
    assert_eq!(
        messages.len(),
        2,
        "the cut frame and the next one come back"
    );
    assert_eq!(messages[0].as_ref(), &[2u8; 200][..]);
    assert_eq!(messages[1].as_ref(), &[3u8; 300][..]);
}

#[test]
fn the_bound_holds_and_a_full_queue_times_out() {
    let (_core, q) = queue(1000);
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let big = vec![0u8; 5000];
    // One frame over the bound is accepted into an empty queue...
    q.push(&codec.prepare(&big).expect("frame"), None)
        .expect("first");
    // ...but nothing more fits until it is sent.
    let small = codec.prepare(b"x").expect("frame");
    assert!(matches!(
        q.push(&small, Some(Instant::now())),
        Err(PushError::TimedOut)
    ));
}

#[test]
fn a_producer_sends_a_full_batch_itself() {
    let (core, q) = queue(1 << 20);
    let (fd, mut b) = socket();
    q.attach(0, fd.clone());
    push_batch(&q, 1000, 7);
    let mut got = vec![0u8; 1000];
    b.read_exact(&mut got).expect("read");
    assert_eq!(&got[..4], &996u32.to_be_bytes());
    assert!(got[4..].iter().all(|&x| x == 7));
    assert_eq!(
        flushes(&core),
        0,
        "sent from this thread: the core was not told"
    );
    let mut out = Outbox::new();
    assert!(!q.take(&mut out, &fd), "nothing left for the core");
    assert!(matches!(q.wait_drained(Some(Instant::now())), Ok(true)));
}

#[test]
fn a_batch_behind_an_empty_chunk_is_still_taken() {
    let (_core, q) = queue(1 << 20);
    // Not attached: no direct send, everything waits for the core.
    let (fd, _b) = socket();
    assert!(matches!(q.push_with(10, None, |_| None), Ok(None)));
    push_batch(&q, 100, 1);
    let mut out = Outbox::new();
    assert!(
        q.take(&mut out, &fd),
        "the batch behind the refused frame's chunk"
    );
    assert_eq!(out.unsent_len(), 100);
}
