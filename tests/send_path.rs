//! The send path's own features, on both backends: encoding in place (`write_with`), batches
//! (`write_batch`), buffered handles (`BufferedWriter`, which send from the writing thread), frames larger than a chunk mixed with small ones, and writes from a handler
//! on the owning core (which go through the core-local flush list, not the command queue).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, FrameError, Framing, Listener, ListenerConfig, WriteError, Writer, WriterConfig,
    BUFFERED_WRITERS_PER_CORE, BUFFERED_WRITER_BYTES, BUFFERED_WRITER_MIN_BYTES,
};
use common::{fill, wait_until, Digest, Rng};

use common::{runtime_on as rt, BACKENDS};

/// A listener that digests what each connection sends; returns it with its digest and count.
fn collector(
    backend: Backend,
    framing: Framing,
    max: usize,
) -> (Listener, Arc<Mutex<Digest>>, Arc<AtomicU64>) {
    let digest = Arc::new(Mutex::new(Digest::default()));
    let count = Arc::new(AtomicU64::new(0));
    let (d, c) = (digest.clone(), count.clone());
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _conn| {
            d.lock().unwrap().add(msg);
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .framing(framing)
        .max_message_size(max)
        .runtime(rt(backend, 1)),
    )
    .expect("bind");
    (listener, digest, count)
}

fn writer(backend: Backend, listener: &Listener, framing: Framing, max: usize) -> Writer {
    Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .framing(framing)
            .max_message_size(max)
            .runtime(rt(backend, 1)),
    )
    .expect("dial")
}

/// `write`, `write_with` and `write_batch` interleaved, with sizes from 0 to 200 KiB (chunks are
/// 16 KiB: many frames share a chunk, large ones get their own), arrive whole and in order.
#[test]
fn every_write_form_in_order_across_chunk_boundaries() {
    common::init_tracing();
    for backend in BACKENDS {
        for framing in [Framing::U32Be, Framing::Varint, Framing::Delimited(b'\n')] {
            let max = 256 << 10;
            let (listener, got, count) = collector(backend, framing, max);
            let writer = writer(backend, &listener, framing, max);
            let codec = buffstreams::frame::Codec::new(framing, max).expect("codec");
            let mut rng = Rng::new(7);
            let mut expected = Digest::default();
            let mut sent = 0u64;
            for round in 0..600 {
                let len = match rng.below(20) {
                    0 => 20_000 + rng.below(200_000) as usize,
                    1 => 0,
                    _ => rng.below(300) as usize,
                };
                let mut msg = vec![0u8; len];
                fill(&mut rng, &mut msg, framing);
                match round % 3 {
                    0 => {
                        writer.write(&msg).expect("write");
                        expected.add(&msg);
                        sent += 1;
                    }
                    1 => {
                        let n = writer
                            .write_with(len, |buf| buf.copy_from_slice(&msg))
                            .expect("write_with");
                        assert_eq!(Some(n), codec.frame_len(len), "framed length");
                        expected.add(&msg);
                        sent += 1;
                    }
                    _ => {
                        let batch: Vec<Vec<u8>> = (0..rng.below(50) + 1)
                            .map(|i| {
                                let mut m = vec![0u8; (i as usize * 7) % 120];
                                fill(&mut rng, &mut m, framing);
                                m
                            })
                            .collect();
                        writer.write_batch(&batch).expect("write_batch");
                        for m in &batch {
                            expected.add(m);
                        }
                        sent += batch.len() as u64;
                    }
                }
            }
            writer.flush().expect("flush");
            assert!(
                wait_until(Duration::from_secs(20), || count.load(Ordering::Relaxed)
                    == sent),
                "{backend:?} {framing:?}: {} of {sent} arrived",
                count.load(Ordering::Relaxed)
            );
            assert_eq!(*got.lock().unwrap(), expected, "{backend:?} {framing:?}");
            writer.close().expect("close");
            listener.close();
        }
    }
}

/// A `BufferedWriter` frames every framing the same as the codec (its fast path for fixed-width
/// headers included), across batch and chunk boundaries, with messages over the maximum refused
/// in between.
#[test]
fn buffered_writes_every_framing() {
    common::init_tracing();
    for framing in [
        Framing::U16Le,
        Framing::U32Be,
        Framing::U64Be,
        Framing::Varint,
        Framing::BuffStreams,
    ] {
        let max = 4000;
        let (listener, got, count) = collector(Backend::IoUring, framing, max);
        let writer = writer(Backend::IoUring, &listener, framing, max);
        let mut out = writer.buffered();
        let mut rng = Rng::new(11);
        let mut expected = Digest::default();
        let mut sent = 0u64;
        for _ in 0..3000 {
            let mut msg = vec![0u8; rng.below(max as u64 + 200) as usize];
            fill(&mut rng, &mut msg, framing);
            match out.write(&msg) {
                Ok(_) => {
                    expected.add(&msg);
                    sent += 1;
                }
                Err(WriteError::Frame(FrameError::TooLarge { .. })) => assert!(msg.len() > max),
                Err(e) => panic!("{framing:?}: {e}"),
            }
        }
        out.flush().expect("flush");
        assert!(
            wait_until(Duration::from_secs(20), || count.load(Ordering::Relaxed)
                == sent),
            "{framing:?}: {} of {sent} arrived",
            count.load(Ordering::Relaxed)
        );
        assert_eq!(*got.lock().unwrap(), expected, "{framing:?}");
        drop(out);
        writer.close().expect("close");
        listener.close();
    }
}

/// Frames too large to share a chunk are gathered up to 256 KiB before the handle sends them
/// (one send for several) even when its batches are smaller, and arrive whole.
#[test]
fn buffered_large_frames_are_gathered() {
    let (listener, got, count) = collector(Backend::IoUring, Framing::U32Be, 256 << 10);
    let writer = writer(Backend::IoUring, &listener, Framing::U32Be, 256 << 10);
    let mut out = writer.buffered_with_capacity(64 << 10);
    let mut expected = Digest::default();
    for i in 0..4u8 {
        let msg = vec![i; 60 << 10];
        out.write(&msg).expect("write");
        expected.add(&msg);
    }
    assert_eq!(
        out.buffered_bytes(),
        4 * ((60 << 10) + 4),
        "four 60 KiB frames are held together"
    );
    let msg = vec![9; 60 << 10];
    out.write(&msg).expect("write");
    expected.add(&msg);
    assert_eq!(
        out.buffered_bytes(),
        (60 << 10) + 4,
        "the fifth passed 256 KiB"
    );
    out.flush().expect("flush");
    assert!(wait_until(Duration::from_secs(10), || count
        .load(Ordering::Relaxed)
        == 5));
    assert_eq!(*got.lock().unwrap(), expected);
    drop(out);
    writer.close().expect("close");
    listener.close();
}

/// A payload that `write_with` finds invalid (it contains the delimiter) is not queued, nothing
/// of it reaches the peer, and the stream goes on; a batch with an oversized message queues
/// nothing.
#[test]
fn refused_messages_leave_no_trace() {
    for backend in BACKENDS {
        let framing = Framing::Delimited(b'\n');
        let (listener, got, count) = collector(backend, framing, 64);
        let writer = writer(backend, &listener, framing, 64);
        writer.write(b"first").expect("write");
        let err = writer.write_with(5, |buf| buf.copy_from_slice(b"a\nbcd"));
        assert!(
            matches!(
                err,
                Err(WriteError::Frame(FrameError::DelimiterInPayload { .. }))
            ),
            "{err:?}"
        );
        let err = writer.write_with(65, |_| panic!("an oversized message is refused first"));
        assert!(matches!(
            err,
            Err(WriteError::Frame(FrameError::TooLarge { .. }))
        ));
        let err = writer
            .write_batch(&[&b"ok"[..], &[b'x'; 65][..]])
            .expect_err("oversized in batch");
        assert_eq!(err.queued, 0);
        writer.write(b"second").expect("write");
        writer.flush().expect("flush");
        assert!(wait_until(Duration::from_secs(10), || count
            .load(Ordering::Relaxed)
            == 2));
        let mut expected = Digest::default();
        expected.add(b"first");
        expected.add(b"second");
        assert_eq!(*got.lock().unwrap(), expected, "{backend:?}");
        writer.close().expect("close");
        listener.close();
        assert!(matches!(writer.write_batch(&[b"late"]), Err(e) if e.queued == 0));
    }
}

/// 64 connections, each running request/response rounds answered by the handler on the core
/// with `Conn::write_with` (the core-local path): every reply arrives, in order, with the right
/// content.
#[test]
fn handler_writes_on_the_core_many_connections() {
    for backend in BACKENDS {
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", |msg, conn| {
                // Reply: the request reversed, encoded in place.
                conn.write_with(msg.len(), |buf| {
                    for (dst, src) in buf.iter_mut().zip(msg.iter().rev()) {
                        *dst = *src;
                    }
                })?;
                Ok(())
            })
            .runtime(rt(backend, 1)),
        )
        .expect("bind");
        let client_rt = buffstreams::Runtime::new(rt(backend, 1)).expect("runtime");
        let replies = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        const CONNS: usize = 64;
        const ROUNDS: u64 = 200;
        let writers: Vec<Writer> = (0..CONNS)
            .map(|i| {
                let (replies, bad) = (replies.clone(), bad.clone());
                let next = Arc::new(AtomicU64::new(1));
                Writer::dial_on(
                    &client_rt,
                    WriterConfig::new(listener.local_addr().to_string()).on_message(
                        move |reply, conn| {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            let mut want = (n * 1000 + i as u64).to_le_bytes();
                            want.reverse();
                            if reply != want {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                            replies.fetch_add(1, Ordering::Relaxed);
                            if n < ROUNDS {
                                conn.write(&((n + 1) * 1000 + i as u64).to_le_bytes())?;
                            }
                            Ok(())
                        },
                    ),
                )
                .expect("dial")
            })
            .collect();
        for (i, w) in writers.iter().enumerate() {
            w.write(&(1000 + i as u64).to_le_bytes()).expect("write");
        }
        let total = CONNS as u64 * ROUNDS;
        assert!(
            wait_until(Duration::from_secs(30), || replies.load(Ordering::Relaxed)
                == total),
            "{backend:?}: {} of {total} replies",
            replies.load(Ordering::Relaxed)
        );
        assert_eq!(bad.load(Ordering::Relaxed), 0, "{backend:?}");
        for w in &writers {
            w.close().expect("close");
        }
        listener.close();
    }
}

/// Two threads, each with its own `BufferedWriter` on one shared writer, plus plain writes from
/// a third: every message arrives exactly once, each thread's in its order, frames whole. The
/// buffered handles send straight from their threads (direct `sendmsg`) whenever no send is
/// under way, and through the core otherwise; both must keep the byte stream intact.
#[test]
fn buffered_handles_and_plain_writes_share_one_connection() {
    for backend in BACKENDS {
        let per_thread: Arc<Mutex<std::collections::HashMap<u8, Vec<u32>>>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let (seen, c) = (per_thread.clone(), count.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _conn| {
                // [thread id, seq (4 bytes LE), filler of length seq % 300 of byte thread id]
                let (id, seq) = (msg[0], u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]));
                assert_eq!(msg.len(), 5 + (seq as usize % 300), "frame length");
                assert!(msg[5..].iter().all(|&b| b == id), "frame content");
                seen.lock().unwrap().entry(id).or_default().push(seq);
                c.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .runtime(rt(backend, 1)),
        )
        .expect("bind");
        let writer = writer(backend, &listener, Framing::U32Be, 8 << 20);
        const N: u32 = 50_000;
        let msg = |id: u8, seq: u32| {
            let mut m = vec![id; 5 + (seq as usize % 300)];
            m[1..5].copy_from_slice(&seq.to_le_bytes());
            m
        };
        std::thread::scope(|s| {
            for id in 1..=2u8 {
                let writer = &writer;
                s.spawn(move || {
                    let mut out = writer.buffered();
                    for seq in 0..N {
                        out.write(&msg(id, seq)).expect("buffered write");
                        if seq % 10_000 == 0 {
                            out.flush().expect("buffered flush");
                        }
                    }
                    // Dropping `out` flushes the rest.
                });
            }
            let writer = &writer;
            s.spawn(move || {
                for seq in 0..N {
                    writer.write(&msg(3, seq)).expect("write");
                }
            });
        });
        writer.flush().expect("flush");
        let total = 3 * u64::from(N);
        assert!(
            wait_until(Duration::from_secs(30), || count.load(Ordering::Relaxed)
                == total),
            "{backend:?}: {} of {total}",
            count.load(Ordering::Relaxed)
        );
        let seen = per_thread.lock().unwrap();
        for id in 1..=3u8 {
            let seqs = &seen[&id];
            assert!(
                seqs.iter().copied().eq(0..N),
                "{backend:?}: thread {id} out of order or incomplete"
            );
        }
        drop(seen);
        writer.close().expect("close");
        listener.close();
    }
}

/// A buffered handle holds its messages until its batch fills or it is flushed.
#[test]
fn buffered_handle_holds_until_flushed() {
    for backend in BACKENDS {
        let (listener, _got, count) = collector(backend, Framing::U32Be, 1024);
        let writer = writer(backend, &listener, Framing::U32Be, 1024);
        let mut out = writer.buffered();
        out.write(b"held").expect("write");
        assert_eq!(out.buffered_bytes(), 8);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(count.load(Ordering::Relaxed), 0, "nothing before flush");
        out.flush().expect("flush");
        assert_eq!(out.buffered_bytes(), 0);
        // Over the maximum: refused before any memory is set aside (setting aside this much
        // would abort the test).
        let err = out.write_with(usize::MAX / 4, |_| panic!("fill must not run"));
        assert!(matches!(
            err,
            Err(WriteError::Frame(FrameError::TooLarge { .. }))
        ));
        assert!(wait_until(Duration::from_secs(10), || count
            .load(Ordering::Relaxed)
            == 1));
        // A batch is handed on by the write that would take it past the batch size, before
        // that write frames its message.
        assert_eq!(
            out.batch_bytes(),
            BUFFERED_WRITER_BYTES,
            "alone on its core"
        );
        let payload = [7u8; 1000];
        let mut n = 0;
        while out.buffered_bytes() + 1004 <= out.batch_bytes() {
            out.write(&payload).expect("write");
            n += 1;
        }
        out.write(&payload).expect("write");
        assert_eq!(
            out.buffered_bytes(),
            1004,
            "the full batch was handed on first"
        );
        assert!(wait_until(Duration::from_secs(10), || count
            .load(Ordering::Relaxed)
            == 1 + n));
        drop(out);
        writer.close().expect("close");
        listener.close();
    }
}

/// Messages in a buffered handle whose writer was closed are not lost silently: dropping the
/// handle hands them to `on_failed`.
#[test]
fn buffered_leftovers_go_to_on_failed() {
    let (listener, _got, _count) = collector(Backend::IoUring, Framing::U32Be, 1024);
    let failed = Arc::new(Mutex::new(Vec::new()));
    let f = failed.clone();
    let writer = Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .runtime(rt(Backend::IoUring, 1))
            .on_failed(move |failure| f.lock().unwrap().extend(failure.messages)),
    )
    .expect("dial");
    let mut out = writer.buffered();
    out.write(b"one").expect("write");
    out.write(b"two").expect("write");
    writer.close().expect("close");
    assert!(matches!(out.flush(), Err(WriteError::Closed)));
    assert_eq!(out.buffered_bytes(), 14, "kept after a failed flush");
    drop(out);
    let failed = failed.lock().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(&failed[0][..], b"one");
    assert_eq!(&failed[1][..], b"two");
    listener.close();
}

/// A buffered handle on a thread that is not the core's sends its batches itself when no send
/// is under way: the owning core sends almost nothing, and what it counts as sent is only what
/// the handle's thread left to it.
#[test]
fn buffered_batches_are_sent_from_the_writing_thread() {
    for backend in BACKENDS {
        let (listener, _got, count) = collector(backend, Framing::U32Be, 1024);
        let writer = writer(backend, &listener, Framing::U32Be, 1024);
        let before = writer.runtime().stats()[0].bytes_sent;
        let mut out = writer.buffered();
        const BATCHES: u64 = 32;
        for _ in 0..BATCHES {
            for _ in 0..64 {
                out.write(&[1u8; 100]).expect("write");
            }
            out.flush().expect("flush");
            // Let the kernel move it along, so the next flush finds the socket writable.
            std::thread::sleep(Duration::from_millis(2));
        }
        writer.flush().expect("flush");
        assert!(wait_until(Duration::from_secs(10), || count
            .load(Ordering::Relaxed)
            == BATCHES * 64));
        let by_core = writer.runtime().stats()[0].bytes_sent - before;
        let total = BATCHES * 64 * 104;
        assert!(
            by_core < total / 4,
            "{backend:?}: the core sent {by_core} of {total} bytes; the writing thread should have"
        );
        drop(out);
        writer.close().expect("close");
        listener.close();
    }
}

/// A batch larger than the socket takes at once is finished by the writing thread as the socket
/// drains (it waits for room, as a blocking write would), not handed to the core: 8 MiB in one
/// batch, twice what a loopback socket's send buffer grows to here, to a peer that starts
/// reading 10 ms late. Three tries: a stall of the
/// machine longer than the writing thread waits (100 ms) hands the rest to the core, which is
/// correct but not what this checks.
#[test]
fn a_batch_the_socket_cannot_take_at_once_is_finished_by_the_writing_thread() {
    const FRAME: usize = (512 << 10) + 4;
    const BATCH: usize = 16 * FRAME;
    for backend in BACKENDS {
        let mut by_core = Vec::new();
        for _ in 0..3 {
            let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = server.local_addr().expect("addr");
            let reader = std::thread::spawn(move || {
                let (mut conn, _) = server.accept().expect("accept");
                // Not reading at first: the writer's first send fills the socket and returns.
                std::thread::sleep(Duration::from_millis(10));
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0;
                while total < BATCH {
                    match std::io::Read::read(&mut conn, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                total
            });
            let writer = Writer::dial(
                WriterConfig::new(addr.to_string())
                    .max_message_size(512 << 10)
                    .runtime(rt(backend, 1)),
            )
            .expect("dial");
            let before = writer.runtime().stats()[0].bytes_sent;
            let mut out = writer.buffered_with_capacity(BATCH);
            for _ in 0..16 {
                out.write(&vec![7u8; 512 << 10]).expect("write");
            }
            out.flush().expect("flush");
            writer.flush().expect("flush");
            assert_eq!(reader.join().expect("reader"), BATCH);
            // The core publishes its counters once per loop turn: let it take one.
            std::thread::sleep(Duration::from_millis(20));
            by_core.push(writer.runtime().stats()[0].bytes_sent - before);
            drop(out);
            let _ = writer.close();
            if by_core.last().is_some_and(|&b| (b as usize) < BATCH / 8) {
                break;
            }
        }
        assert!(
            by_core.iter().any(|&b| (b as usize) < BATCH / 8),
            "{backend:?}: the core sent {by_core:?} of {BATCH} bytes in each try"
        );
    }
}

/// An error from `BufferedWriter::write` means the message was not taken: the hand-off of a
/// full batch happens before the message is framed (found by the soak: a message reported as
/// failed also came back through `on_failed`).
#[test]
fn a_buffered_write_that_fails_did_not_take_the_message() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let back: Arc<Mutex<Vec<bytes::Bytes>>> = Arc::default();
    let b = back.clone();
    let writer = Writer::dial(
        WriterConfig::new(server.local_addr().unwrap().to_string())
            .on_failed(move |f| b.lock().unwrap().extend(f.messages)),
    )
    .unwrap();
    let mut out = writer.buffered_with_capacity(64 << 10);
    for _ in 0..6 {
        out.write(&vec![7; 10 * 1024]).unwrap();
    }
    out.write(&vec![8; 10 * 1024]).unwrap(); // hands the six on; the batch holds this one
    writer.close().unwrap();
    for _ in 0..5 {
        out.write(&vec![8; 10 * 1024]).unwrap(); // held: 60 KiB in all
    }
    // Would take the batch past 64 KiB: the hand-off comes first, and fails.
    let mut refused = vec![9; 10 * 1024];
    refused[0] = 42;
    assert!(matches!(out.write(&refused), Err(WriteError::Closed)));
    drop(out);
    let back = back.lock().unwrap();
    assert!(
        back.iter().any(|m| m[0] == 8),
        "the batch left in the handle is handed back"
    );
    assert!(
        back.iter().all(|m| m[0] != 42),
        "the refused message was handed back too"
    );
}

/// The handles of one core share out its batch memory: alone a handle gathers 1 MiB, among many
/// never less than 64 KiB, and the size follows handles coming and going at the next hand-off.
/// A fixed capacity stays as given.
#[test]
fn buffered_batches_are_shared_out_per_core() {
    let (listener, _got, count) = collector(Backend::IoUring, Framing::U32Be, 1024);
    let runtime = buffstreams::Runtime::new(rt(Backend::IoUring, 1)).expect("runtime");
    let writers: Vec<Writer> = (0..64)
        .map(|_| {
            Writer::dial_on(
                &runtime,
                WriterConfig::new(listener.local_addr().to_string()).max_message_size(1024),
            )
            .expect("dial")
        })
        .collect();
    let mut first = writers[0].buffered();
    assert_eq!(first.batch_bytes(), BUFFERED_WRITER_BYTES);
    let mut others: Vec<_> = writers[1..16].iter().map(Writer::buffered).collect();
    assert_eq!(
        others[14].batch_bytes(),
        BUFFERED_WRITERS_PER_CORE / 16,
        "sixteen handles share the core's 4 MiB"
    );
    assert_eq!(
        first.batch_bytes(),
        BUFFERED_WRITER_BYTES,
        "until its next hand-off"
    );
    first.write(b"x").expect("write");
    first.flush().expect("flush");
    assert_eq!(first.batch_bytes(), BUFFERED_WRITERS_PER_CORE / 16);
    let many: Vec<_> = writers[16..].iter().map(Writer::buffered).collect();
    assert_eq!(
        many.last().map(|h| h.batch_bytes()),
        Some(BUFFERED_WRITER_MIN_BYTES),
        "never under 64 KiB"
    );
    let fixed = writers[1].buffered_with_capacity(3000);
    assert_eq!(fixed.batch_bytes(), 3000);
    drop(many);
    drop(fixed);
    others.truncate(3);
    let mut second = writers[1].buffered();
    assert_eq!(
        second.batch_bytes(),
        BUFFERED_WRITERS_PER_CORE / 5,
        "dropped handles no longer count"
    );
    second.write(b"y").expect("write");
    drop(second);
    drop(others);
    drop(first);
    assert!(wait_until(Duration::from_secs(10), || count
        .load(Ordering::Relaxed)
        == 2));
    for writer in writers {
        writer.close().expect("close");
    }
    listener.close();
}
