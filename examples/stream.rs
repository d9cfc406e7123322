//! The main job: a listener and writers on loopback stream small messages; prints messages/s and
//! a checksum of what was sent and what arrived.
//!
//! ```text
//! cargo run --release --example stream -- [--messages N] [--size BYTES] [--writers W]
//!                                           [--cores C] [--backend auto|uring|epoll]
//!                                           [--write buffered|plain]
//! ```
//!
//! Each writer thread streams through a `BufferedWriter` (batches of 64 KiB sent from the
//! writing thread, the way to stream) or, with `--write plain`, `Writer::write` per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{
    Backend, Listener, ListenerConfig, Runtime, RuntimeConfig, Writer, WriterConfig,
};

struct Args {
    messages: u64,
    size: usize,
    writers: usize,
    cores: usize,
    backend: Backend,
    buffered: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        messages: 4_000_000,
        size: 110,
        writers: 4,
        cores: 1,
        backend: Backend::Auto,
        buffered: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--messages" => args.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--size" => args.size = value()?.parse().map_err(|e| format!("{e}"))?,
            "--writers" => args.writers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--cores" => args.cores = value()?.parse().map_err(|e| format!("{e}"))?,
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "auto" => Backend::Auto,
                    "uring" | "io_uring" => Backend::IoUring,
                    "epoll" => Backend::Epoll,
                    other => return Err(format!("unknown backend {other}")),
                }
            }
            "--write" => {
                args.buffered = match value()?.as_str() {
                    "buffered" => true,
                    "plain" => false,
                    other => return Err(format!("unknown write mode {other}")),
                }
            }
            "-h" | "--help" => {
                return Err("usage: stream [--messages N] [--size BYTES] [--writers W] \
                            [--cores C] [--backend auto|uring|epoll] [--write buffered|plain]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.writers == 0 || args.size < 8 {
        return Err("need at least one writer and messages of at least 8 bytes".into());
    }
    Ok(args)
}

/// A message's checksum (8 bytes at a time); the sum over all messages is order-independent.
fn checksum(msg: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ msg.len() as u64;
    let mut words = msg.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let received = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let (r, s) = (received.clone(), sum.clone());
    // Server cores start at CPU 0; the writers' core goes after them.
    let server_rt = Runtime::new(RuntimeConfig {
        cores: args.cores,
        backend: args.backend,
        ..RuntimeConfig::default()
    })
    .unwrap_or_else(|e| fail("start the server runtime", e));
    let listener = Listener::bind_on(
        &server_rt,
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            s.fetch_add(checksum(msg), Ordering::Relaxed);
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    )
    .unwrap_or_else(|e| fail("listen", e));
    let client_rt = Runtime::new(RuntimeConfig {
        cores: 1,
        backend: args.backend,
        first_cpu: args.cores,
        ..RuntimeConfig::default()
    })
    .unwrap_or_else(|e| fail("start the client runtime", e));
    let addr = listener.local_addr();
    println!(
        "buffstreams stream: {} writers -> {addr} ({} server core(s), {:?} backend), {} x {}-byte messages",
        args.writers,
        server_rt.cores(),
        server_rt.backend(),
        args.messages,
        args.size
    );

    let per_writer = args.messages / args.writers as u64;
    let total = per_writer * args.writers as u64;
    let start = Instant::now();
    let senders: Vec<_> = (0..args.writers)
        .map(|w| {
            let rt = client_rt.clone();
            let (size, buffered) = (args.size, args.buffered);
            std::thread::spawn(move || {
                let writer = Writer::dial_on(&rt, WriterConfig::new(addr.to_string()))
                    .unwrap_or_else(|e| fail("dial", e));
                let mut out = buffered.then(|| writer.buffered());
                let mut msg = vec![0u8; size];
                let mut sent_sum = 0u64;
                for i in 0..per_writer {
                    msg[..4].copy_from_slice(&(w as u32).to_le_bytes());
                    msg[4..8].copy_from_slice(&(i as u32).to_le_bytes());
                    sent_sum = sent_sum.wrapping_add(checksum(&msg));
                    match out.as_mut() {
                        Some(out) => out.write(&msg),
                        None => writer.write(&msg),
                    }
                    .unwrap_or_else(|e| fail("write", e));
                }
                if let Some(mut out) = out {
                    out.flush().unwrap_or_else(|e| fail("flush", e));
                }
                writer.close().unwrap_or_else(|e| fail("close", e));
                sent_sum
            })
        })
        .collect();
    let sent_sum = senders
        .into_iter()
        .map(|h| h.join().unwrap_or(0))
        .fold(0u64, u64::wrapping_add);
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let rate = got as f64 / elapsed;
    println!(
        "received {got} of {total} messages in {elapsed:.3} s: {:.2} M msgs/s, {:.0} MB/s of payload",
        rate / 1e6,
        rate * args.size as f64 / 1e6
    );
    let recv_sum = sum.load(Ordering::Relaxed);
    println!("checksum sent {sent_sum:016x} received {recv_sum:016x}");
    for core in listener.runtime().stats() {
        println!(
            "server core {}: {} connections accepted, {} messages, {} receive completions, {} loop turns",
            core.core, core.accepted, core.messages_received, core.recv_completions, core.turns
        );
    }
    for core in client_rt.stats() {
        println!(
            "client core {}: {} sends, {} bytes sent, {} loop turns",
            core.core, core.sends, core.bytes_sent, core.turns
        );
    }
    listener.close();
    if got != total || sent_sum != recv_sum {
        eprintln!("MISMATCH");
        std::process::exit(1);
    }
    println!("OK");
}

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("cannot {what}: {err}");
    std::process::exit(1);
}
