//! Do these io_uring features pay for buffstreams' send/receive path? Each is measured with
//! and without, in the same run, the variants alternating round after round, using the
//! `io-uring` crate directly (not the library's engine):
//!
//! 1. registered ring fd (`ringfd.rs`): NOP submit-and-wait, single- and multithreaded;
//! 2. registered files (`files.rs`): SEND of 64 B and 16 KiB on loopback TCP, `Fd` vs `Fixed`;
//! 3. SEND vs SEND_ZC vs SEND_ZC from a registered buffer (`zc.rs`), 1 KiB to 256 KiB;
//! 4. the shape of a send of many chunks (`shapes.rs`): SENDMSG over iovecs (the engine's),
//!    a send bundle over a provided-buffer ring, one SEND per chunk, a plain sendmsg(2), and
//!    one SEND of a contiguous buffer.
//!
//! `cargo bench --bench kernel_features [-- --quick]`. Output lines:
//! `RESULT feature=<f> variant=<v> ns_per_op=<median> min=<..> max=<..>` per variant and
//! `RATIO feature=<f> with_vs_without=<median ratio> ...` per "with" variant; `SKIP` when the
//! kernel lacks a feature, `ERROR` when a measurement failed. The main thread is pinned to one
//! CPU (the last one allowed); the SEND_ZC drain thread to another.

mod files;
mod harness;
mod ringfd;
mod shapes;
mod zc;

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use harness::Opts;

type Run = fn(&Opts) -> io::Result<()>;

const USAGE: &str = "usage: kernel_features [--quick]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        // `cargo test --benches` runs bench targets without arguments: nothing to measure there.
        println!("kernel_features: run with `cargo bench --bench kernel_features [-- --quick]`");
        return ExitCode::SUCCESS;
    }
    let mut quick = false;
    for arg in &args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("kernel_features: unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let cpus = harness::allowed_cpus().unwrap_or_default();
    let main_cpu = cpus.last().copied();
    let drain_cpu = cpus.iter().copied().find(|&c| Some(c) != main_cpu);
    let opts = Opts {
        rounds: if quick { 3 } else { 5 },
        round: Duration::from_millis(if quick { 15 } else { 250 }),
        drain_cpu,
    };
    if let Some(cpu) = main_cpu {
        if let Err(e) = harness::pin_to_cpu(cpu) {
            println!("INFO pinning failed: {e}");
        }
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "INFO kernel={} mode={} rounds={} round_ms={} main_cpu={main_cpu:?} drain_cpu={drain_cpu:?}",
        kernel.trim(),
        if quick { "quick" } else { "full" },
        opts.rounds,
        opts.round.as_millis()
    );
    let features: [(&str, Run); 4] = [
        ("registered_ring_fd", ringfd::run),
        ("registered_files", files::run),
        ("send_zc", zc::run),
        ("send_shapes", shapes::run),
    ];
    let mut failed = false;
    for (name, run) in features {
        if let Err(e) = run(&opts) {
            println!("ERROR feature={name} error={e}");
            failed = true;
        }
    }
    println!("INFO total_s={:.1}", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
