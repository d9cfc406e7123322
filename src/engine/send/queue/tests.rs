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

pub(super) fn queue(limit: usize) -> (Arc<CoreShared>, Arc<SendQueue>) {
    queue_with(limit, false)
}

fn queue_with(limit: usize, sealed: bool) -> (Arc<CoreShared>, Arc<SendQueue>) {
    let core = Arc::new(CoreShared::new(0).expect("eventfd"));
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let q = SendQueue::new(core.clone(), limit, Box::new(codec), false, sealed);
    (core, q)
}

/// One end of a socket pair, as the engine holds a connection's socket, and the other end.
pub(super) fn socket() -> (Arc<OwnedFd>, UnixStream) {
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

pub(super) fn frame(q: &Arc<SendQueue>, byte: u8, len: usize) {
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let payload = vec![byte; len];
    let f = codec.prepare(&payload).expect("frame");
    q.push(&f, None).expect("push");
}

/// Queues one `len`-byte frame of `byte`s the way a `BufferedWriter` hands on a batch.
pub(super) fn push_batch(q: &Arc<SendQueue>, len: usize, byte: u8) {
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

/// A toy sealer: each chunk goes out as `[len u32 BE][bytes reversed]`, and a counter says how
/// many it sealed (a TLS session's record numbers).
struct Reverse(Arc<std::sync::atomic::AtomicUsize>);

impl crate::engine::send::traits::Seal for Reverse {
    fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), crate::error::ConnError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        wire.extend_from_slice(&(plain.len() as u32).to_be_bytes());
        wire.extend(plain.iter().rev());
        Ok(())
    }
}

fn sealed_queue() -> (Arc<SendQueue>, Arc<std::sync::atomic::AtomicUsize>) {
    let (_core, q) = queue_with(1 << 20, true);
    (q, Arc::default())
}

#[test]
fn a_sealed_queue_sends_only_sealed_bytes_from_a_producer() {
    let (q, sealed) = sealed_queue();
    let (fd, mut b) = socket();
    q.set_sealer(fd.clone(), Box::new(Reverse(sealed.clone())));
    q.attach(0, fd.clone());
    push_batch(&q, 100, 9);
    let mut got = vec![0u8; 104];
    b.read_exact(&mut got).expect("read");
    assert_eq!(&got[..4], &100u32.to_be_bytes(), "the sealed form's header");
    assert!(got[4..100].iter().all(|&x| x == 9));
    assert_eq!(
        &got[100..],
        &96u32.to_be_bytes()[..]
            .iter()
            .rev()
            .copied()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(sealed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_sealed_chunk_cut_mid_record_is_sent_again_whole_and_sealed_anew() {
    let (q, sealed) = sealed_queue();
    let (fd, _b) = socket();
    q.set_sealer(fd.clone(), Box::new(Reverse(sealed.clone())));
    q.attach(0, fd.clone());
    for (byte, len) in [(1u8, 100), (2, 200)] {
        frame(&q, byte, len);
    }
    let mut out = Outbox::new();
    assert!(q.take(&mut out, &fd));
    assert_eq!(sealed.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        out.unsent_len(),
        4 + 104 + 204,
        "the core sends the sealed form"
    );
    let mut done = Vec::new();
    // The kernel took the whole first frame's worth, but not the whole record.
    out.advance(150, &mut done);
    q.complete(&mut done, false);
    q.detach(&mut out, None, false, Some(&fd));
    // The next connection seals the whole chunk again, with its own sealer.
    let (fd2, _b2) = socket();
    q.set_sealer(fd2.clone(), Box::new(Reverse(sealed.clone())));
    q.attach(1, fd2.clone());
    let mut out = Outbox::new();
    assert!(q.take(&mut out, &fd2));
    assert_eq!(sealed.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(out.unsent_len(), 4 + 104 + 204, "the whole record again");
    q.detach(&mut out, None, false, Some(&fd2));
    let rest = q.close();
    let codec = Codec::new(Framing::U32Be, 1 << 20).expect("codec");
    let messages = crate::stream::frames::split_frames(&codec, rest);
    assert_eq!(messages.len(), 2, "both frames of the record come back");
    assert_eq!(messages[0].as_ref(), &[1u8; 100][..]);
}

#[test]
fn without_its_sealer_a_sealed_queue_sends_nothing_and_shuts_the_socket() {
    let (q, sealed) = sealed_queue();
    let (fd, mut b) = socket();
    let (other, _o) = socket();
    // A sealer for another socket (a connection that was replaced) seals nothing here.
    q.set_sealer(other, Box::new(Reverse(sealed.clone())));
    q.attach(0, fd.clone());
    frame(&q, 5, 10);
    let mut out = Outbox::new();
    assert!(q.take(&mut out, &fd));
    assert_eq!(sealed.load(std::sync::atomic::Ordering::Relaxed), 0);
    let mut buf = [0u8; 16];
    assert_eq!(
        b.read(&mut buf).expect("read"),
        0,
        "shut down, nothing sent"
    );
    let sent = crate::engine::send::direct::send_outbox(&fd, &mut out);
    assert!(
        sent.is_err(),
        "a send on it fails: nothing unsealed reaches the peer"
    );
}
