//! The send path's own features, on both backends: encoding in place (`write_with`), batches
//! (`write_batch`), frames larger than a chunk mixed with small ones, and writes from a handler
//! on the owning core (which go through the core-local flush list, not the command queue).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    Backend, FrameError, Framing, Listener, ListenerConfig, RuntimeConfig, WriteError, Writer,
    WriterConfig,
};
use common::{fill, wait_until, Digest, Rng};

const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

fn rt(backend: Backend, cores: usize) -> RuntimeConfig {
    RuntimeConfig {
        cores,
        backend,
        pin: false,
        ..RuntimeConfig::default()
    }
}

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
            let codec = buffstreams::Codec::new(framing, max).expect("codec");
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
