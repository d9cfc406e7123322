//! Unix domain sockets: the `stream` workload end to end (each contender's client into its own
//! server; 110-byte messages on 4 connections unless told otherwise), server threads on CPU 0
//! and client threads on CPU 1, for
//! - `buffstreams-uds`: our writer into our listener over a Unix socket (io_uring);
//! - `std-uds`: blocking `std::os::unix::net::UnixStream`, a thread per connection, 64 KiB
//!   `BufWriter` / `BufReader`;
//! - `tokio-uds`: tokio's `UnixStream` with tokio-util's `LengthDelimitedCodec`, the client
//!   feeding 64 KiB of frames per flush, the server reading through `FramedRead` (64 KiB),
//!   current-thread runtimes;
//! - `buffstreams-tcp`: our writer into our listener over TCP loopback, the reference.
//!
//! Rounds alternate the contenders; each prints its median rate with the min–max, and the
//! ratios of buffstreams over Unix sockets to std over Unix sockets and to buffstreams over TCP.
//!
//! `cargo bench --bench unix -- [--quick] [--size BYTES] [--conns N] [--rounds N] [--secs S]
//! [--only NAME]`

mod contenders;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every contender's server counts and every client watches.
#[derive(Default)]
pub struct Shared {
    /// Messages the server received.
    pub received: AtomicU64,
    /// Set when the measurement is over: clients stop writing and close.
    pub stop: AtomicBool,
}

/// One run's settings.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub size: usize,
    pub conns: usize,
}

/// A contender: starts its server and client, both in the background, and returns what stops
/// them (it joins their threads).
pub type Start = fn(Plan, Arc<Shared>) -> Result<Box<dyn FnOnce()>, String>;

/// Pins the calling thread to `cpu` (if this machine has it).
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let plan = Plan {
        size: arg(&args, "--size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(110),
        conns: arg(&args, "--conns")
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
    };
    let rounds: usize = arg(&args, "--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 7 });
    let secs: f64 = arg(&args, "--secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 0.5 } else { 2.0 });
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("SKIP: needs 2 CPUs (server on CPU 0, client on CPU 1)");
        return;
    }
    let all: [(&str, Start); 4] = [
        ("buffstreams-uds", contenders::buffstreams_uds),
        ("std-uds", contenders::std_uds),
        ("tokio-uds", contenders::tokio_uds),
        ("buffstreams-tcp", contenders::buffstreams_tcp),
    ];
    // `--only NAME`: one contender (for profiling); the ratios then print nothing.
    let only = arg(&args, "--only");
    let contenders: Vec<(&str, Start)> = all
        .into_iter()
        .filter(|(name, _)| only.as_deref().map_or(true, |o| o == *name))
        .collect();
    println!(
        "unix: stream end to end, {} B x {} conns, {rounds} rounds of {secs} s, contenders alternating",
        plan.size, plan.conns
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..rounds {
        // Alternate the order each round, so no contender always follows the same one.
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, start) = contenders[i];
            match measure(start, plan, Duration::from_secs_f64(secs)) {
                Ok(rate) => rates[i].push(rate),
                Err(e) => println!("  {name}: FAILED: {e}"),
            }
        }
    }
    let median = |v: &[f64]| -> Option<(f64, f64, f64)> {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        // An even count takes the mean of the middle two.
        let mid = match n % 2 {
            0 => (*v.get((n / 2).checked_sub(1)?)? + *v.get(n / 2)?) / 2.0,
            _ => *v.get(n / 2)?,
        };
        Some((mid, *v.first()?, *v.last()?))
    };
    let mut medians = Vec::new();
    for ((name, _), r) in contenders.iter().zip(&rates) {
        match median(r) {
            Some((m, lo, hi)) => {
                println!(
                    "  {name:<16} {:>7.2} M msg/s  [{:.2}-{:.2}]  ({} rounds)",
                    m / 1e6,
                    lo / 1e6,
                    hi / 1e6,
                    r.len()
                );
                medians.push(Some(m));
            }
            None => medians.push(None),
        }
    }
    let ratio = |a: usize, b: usize, what: &str| {
        if let (Some(Some(x)), Some(Some(y))) = (medians.get(a), medians.get(b)) {
            println!("  ratio {what}: {:.2}x", x / y);
        }
    };
    ratio(0, 1, "buffstreams-uds / std-uds (target >= 1.2)");
    ratio(0, 2, "buffstreams-uds / tokio-uds");
    ratio(0, 3, "buffstreams-uds / buffstreams-tcp (target > 1)");
}

/// Runs one contender: a warm-up, then messages received over `window`, per second.
fn measure(start: Start, plan: Plan, window: Duration) -> Result<f64, String> {
    let shared = Arc::new(Shared::default());
    let stop = start(plan, shared.clone())?;
    std::thread::sleep(Duration::from_millis(300));
    let (t0, n0) = (Instant::now(), shared.received.load(Ordering::Relaxed));
    std::thread::sleep(window);
    let (t1, n1) = (Instant::now(), shared.received.load(Ordering::Relaxed));
    shared.stop.store(true, Ordering::Relaxed);
    stop();
    if n1 == n0 {
        return Err("no messages arrived".into());
    }
    Ok((n1 - n0) as f64 / (t1 - t0).as_secs_f64())
}
