//! Fan-out: a listener broadcasts a stream of messages to many subscribers; each subscriber
//! counts what it receives and checks the order. Prints per-subscriber counts and whether each
//! got every message, in order.
//!
//! ```text
//! cargo run --release --example fanout -- [--subscribers N] [--messages M] [--size BYTES]
//! ```
//!
//! `Listener::broadcast` never waits: a subscriber whose send queue is full is reported with
//! `WriteError::Full`. This example wants every subscriber to get everything, so it sends the
//! message again to just those, after a short pause; a real server might instead drop slow
//! subscribers, or skip messages for them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{
    Listener, ListenerConfig, Runtime, RuntimeConfig, WriteError, Writer, WriterConfig,
};

struct Args {
    subscribers: usize,
    messages: u64,
    size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        subscribers: 16,
        messages: 200_000,
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--subscribers" => args.subscribers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--messages" => args.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--size" => args.size = value()?.parse().map_err(|e| format!("{e}"))?,
            "-h" | "--help" => {
                return Err("usage: fanout [--subscribers N] [--messages M] [--size BYTES]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.subscribers == 0 || args.size < 8 {
        return Err("need at least one subscriber and messages of at least 8 bytes".into());
    }
    Ok(args)
}

/// One subscriber: what it received, and whether every message came in order.
struct Subscriber {
    writer: Writer,
    received: Arc<AtomicU64>,
    in_order: Arc<AtomicBool>,
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Err(err) = run(&args) {
        eprintln!("fanout failed: {err}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // The server: it only broadcasts, so its handler ignores anything subscribers send.
    let listener = Listener::bind(ListenerConfig::new("127.0.0.1:0", |_, _| Ok(())).cores(1))?;
    let address = listener.local_addr().to_string();

    // The subscribers share one client runtime (one core thread).
    let clients = Runtime::new(RuntimeConfig {
        cores: 1,
        pin: false,
        ..RuntimeConfig::default()
    })?;
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let received = Arc::new(AtomicU64::new(0));
        let in_order = Arc::new(AtomicBool::new(true));
        let (count, order) = (received.clone(), in_order.clone());
        let config = WriterConfig::new(address.clone()).on_message(move |msg, _conn| {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(msg.get(..8).unwrap_or(&[0; 8]));
            if u64::from_be_bytes(seq) != count.fetch_add(1, Ordering::Relaxed) {
                order.store(false, Ordering::Relaxed);
            }
            Ok(())
        });
        subscribers.push(Subscriber {
            writer: Writer::dial_on(&clients, config)?,
            received,
            in_order,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while listener.connections().len() < args.subscribers {
        if Instant::now() > deadline {
            return Err("subscribers did not all connect".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let started = Instant::now();
    let mut msg = vec![0x5a; args.size];
    let mut retries = 0u64;
    let mut lost = 0u64;
    for seq in 0..args.messages {
        msg[..8].copy_from_slice(&seq.to_be_bytes());
        let report = listener.broadcast(&msg)?;
        let mut pending: HashSet<u64> = HashSet::new();
        for (conn, err) in report.failed {
            match err {
                WriteError::Full => {
                    pending.insert(conn.id);
                }
                err => {
                    eprintln!("subscriber {} lost message {seq}: {err}", conn.id);
                    lost += 1;
                }
            }
        }
        // Full queues: wait a little for the core to send, then try those again.
        while !pending.is_empty() {
            retries += 1;
            std::thread::sleep(Duration::from_micros(50));
            let report = listener.broadcast_to(&msg, |conn| pending.contains(&conn.id))?;
            let mut still = HashSet::new();
            for (conn, err) in report.failed {
                if matches!(err, WriteError::Full) {
                    still.insert(conn.id);
                } else {
                    eprintln!("subscriber {} lost message {seq}: {err}", conn.id);
                    lost += 1;
                }
            }
            pending = still;
        }
    }
    let broadcast_done = started.elapsed();

    let total = args.messages;
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscribers
        .iter()
        .any(|s| s.received.load(Ordering::Relaxed) < total)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();

    let delivered: u64 = subscribers
        .iter()
        .map(|s| s.received.load(Ordering::Relaxed))
        .sum();
    println!(
        "{} messages of {} bytes to {} subscribers: broadcast in {:.3} s, all delivered in \
         {:.3} s ({:.2} M deliveries/s); {retries} retries after a full queue",
        total,
        args.size,
        args.subscribers,
        broadcast_done.as_secs_f64(),
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64() / 1e6,
    );
    let mut ok = lost == 0;
    for (i, s) in subscribers.iter().enumerate() {
        let got = s.received.load(Ordering::Relaxed);
        let in_order = s.in_order.load(Ordering::Relaxed);
        let verdict = if got == total && in_order {
            "ok"
        } else {
            ok = false;
            "MISSING OR OUT OF ORDER"
        };
        println!(
            "subscriber {i:>3}: {got:>9} messages, in order: {in_order:<5} {verdict}",
            in_order = in_order
        );
    }
    for s in &subscribers {
        let _ = s.writer.close();
    }
    listener.close();
    if ok {
        println!("check: every subscriber got all {total} messages, in order");
        Ok(())
    } else {
        Err("some subscribers missed messages".into())
    }
}
