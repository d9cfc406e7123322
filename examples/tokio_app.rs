//! A tokio application on buffstreams, with no blocking call on the tokio threads.
//!
//! The listener delivers messages to a channel consumed as a `futures_core::Stream`; a task per
//! message computes the reply and writes it back with `Conn::write_async`. A client task sends
//! requests with `Writer::write_async` and counts the replies. Binding, dialing and closing
//! (which wait on the OS or on the cores) run through `spawn_blocking`.
//!
//! Run: `cargo run --release --example tokio_app -- [requests]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{Listener, ListenerConfig, Writer, WriterConfig};
use futures::StreamExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let requests: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 100_000,
    };

    let (config, mut messages) = ListenerConfig::with_channel("127.0.0.1:0", 1024);
    let listener = tokio::task::spawn_blocking(move || Listener::bind(config.cores(1))).await??;
    let addr = listener.local_addr();

    // The service: every message is a u64; the reply is its square.
    let service = tokio::spawn(async move {
        let mut served = 0u64;
        while let Some(msg) = messages.next().await {
            let n = u64::from_be_bytes(msg.payload[..8].try_into().unwrap_or_default());
            if msg
                .conn
                .write_async(&n.wrapping_mul(n).to_be_bytes())
                .await
                .is_err()
            {
                break;
            }
            served += 1;
        }
        served // the stream ends once the listener is closed and drained
    });

    // The client: replies arrive on its core, counted and checked.
    let replies = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let (r, w) = (replies.clone(), wrong.clone());
    let writer = tokio::task::spawn_blocking(move || {
        Writer::dial(
            WriterConfig::new(addr.to_string()).on_message(move |reply, _| {
                let sq = u64::from_be_bytes(reply.try_into().unwrap_or_default());
                let n = r.fetch_add(1, Ordering::Relaxed);
                if sq != n.wrapping_mul(n) {
                    w.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }),
        )
    })
    .await??;

    let start = Instant::now();
    for n in 0..requests {
        writer.write_async(&n.to_be_bytes()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while replies.load(Ordering::Relaxed) < requests && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let done = replies.load(Ordering::Relaxed);

    tokio::task::spawn_blocking(move || {
        let _ = writer.close();
        listener.close();
    })
    .await?;
    let served = service.await?;
    println!(
        "{done} of {requests} replies in {elapsed:.2?} ({:.0}/s), served {served}, {} wrong",
        done as f64 / elapsed.as_secs_f64(),
        wrong.load(Ordering::Relaxed)
    );
    if done != requests || wrong.load(Ordering::Relaxed) != 0 {
        return Err("not every request was answered correctly".into());
    }
    Ok(())
}
