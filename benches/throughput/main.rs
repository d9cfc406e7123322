//! Side-by-side throughput and latency benchmark: buffstreams against the usual Rust choices.
//!
//! `cargo bench --bench throughput [-- --quick] [--filter <substring>]... [--reps N] [--mtu N]`
//!
//! The parent process (this `main`) never touches a socket. Every trial re-executes this
//! binary twice, once as the server (`--role server`, pinned to CPU 0) and once as the client
//! (`--role client`, pinned to CPU 1), drives them through a tiny line protocol on their
//! stdin/stdout (see `role.rs`), and kills and reaps both whatever happens (see `proc.rs`).
//! The server counts what arrived and reports it with its own CPU time for the measurement
//! window; the client reports its own CPU time for the same window. Results (rate, server and
//! client CPU per message), medians and ratios are printed by `report.rs`.
//!
//! Workloads (`plan.rs`): `stream` is end to end (each contender's client and server);
//! `stream-server` isolates the receive path (one common load generator into each contender's
//! server) and `stream-client` the send path (each contender's client into one common server,
//! std's); `pingpong` echoes one outstanding message per connection; `churn` connects, sends
//! one message and closes. The streaming workloads also run at loopback MTUs 9000 and 1500
//! (`--mtu` picks others), each in an anonymous network namespace of its own (`netns.rs`).
//! With the `tls` feature: `tls` streams over TLS 1.3 (AES-128-GCM) end to end,
//! `tls-handshake` counts full handshakes per second into each TLS server, and `tls-ceiling`
//! measures the cipher's seal rate on one core, which the `tls` rates are read against.
//! `buffstreams-acked` (acknowledged delivery on both ends) runs end to end only, in `stream`
//! and `pingpong`, its rates counting what its writers saw acknowledged; `report.rs` prints its
//! ratios against plain buffstreams-uring and std.
//!
//! Files: `cli.rs` options; `plan.rs` contenders, workloads and the trial matrix; `run.rs` one
//! trial from the parent's side; `role.rs` the child side; `proc.rs` child processes, pinning,
//! rlimits, CPU time; `stats.rs` the counters children keep; `wire.rs` the common frame format;
//! `loadgen.rs` the common load generator; `netns.rs` the namespaces of the MTU views;
//! `contenders/` tokio, std and raw, their TLS versions and buffstreams' acknowledged mode
//! (`acked.rs`); `buffstreams.rs` the library under test; `tls_pki.rs` the TLS certificate and configurations; `tls_handshake.rs` the common
//! handshake client; `tls_ceiling.rs` the seal ceiling.

mod buffstreams;
mod cli;
mod contenders;
mod loadgen;
mod netns;
mod plan;
mod proc;
mod report;
mod role;
mod run;
mod stats;
mod tls_ceiling;
mod tls_handshake;
#[cfg(feature = "tls")]
mod tls_pki;
mod wire;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        // `cargo test --benches` runs bench targets without arguments: nothing to measure there.
        println!("throughput: run with `cargo bench --bench throughput [-- --quick]`");
        return ExitCode::SUCCESS;
    }
    let cmd = match cli::parse(&args) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("throughput: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match cmd {
        cli::Command::Child(child) => role::main(child),
        cli::Command::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        cli::Command::Run(opts) => orchestrate(&opts),
    }
}

/// The parent: runs every selected configuration, alternating contenders within each rep.
fn orchestrate(opts: &cli::Options) -> ExitCode {
    proc::raise_nofile_limit();
    let started = Instant::now();
    let host_mtu = netns::loopback_mtu().unwrap_or_else(|e| {
        eprintln!("# cannot read the host loopback's MTU ({e}): taking 65536");
        65536
    });
    let configs = plan::configs(opts, host_mtu);
    let trials: usize = configs.iter().map(|c| c.contenders.len() * c.reps).sum();
    let tls_reps = match configs.iter().any(|c| c.workload.tls()) {
        true if opts.tls_reps != opts.reps => format!(", TLS {}", opts.tls_reps),
        _ => String::new(),
    };
    eprintln!(
        "# throughput: {} mode, {} configurations, {} trials ({} reps{tls_reps}), warm-up {:.2} s, window {:.2} s, server on CPU 0 (1 core) or unpinned, client on CPU {}, host loopback MTU {}",
        if opts.quick { "quick" } else { "full" },
        configs.len(),
        trials,
        opts.reps,
        opts.warmup.as_secs_f64(),
        opts.window.as_secs_f64(),
        opts.client_cpu,
        host_mtu,
    );
    if trials == 0 {
        eprintln!("# nothing selected by the filter");
    }
    // One anonymous namespace per MTU other than the host loopback's, made when first needed
    // and held (by its fd) to the end of the run; the kernel frees it when the process ends.
    let mut namespaces = BTreeMap::new();
    let mut results = Vec::new();
    let mut hung = Vec::new();
    for config in &configs {
        let netns = (config.mtu != host_mtu).then(|| {
            &*namespaces.entry(config.mtu).or_insert_with(|| {
                let made = netns::with_loopback_mtu(config.mtu).map_err(|e| e.to_string());
                match &made {
                    Ok(_) => eprintln!(
                        "# mtu={}: a new network namespace, lo at MTU {0}",
                        config.mtu
                    ),
                    Err(e) => eprintln!(
                        "# mtu={}: no network namespace ({e}); its trials are skipped",
                        config.mtu
                    ),
                }
                made
            })
        });
        let summary = run::config(opts, config, netns, &mut hung);
        report::print_config(&summary);
        results.push(summary);
    }
    report::print_table(&results);
    report::print_ratios(&results);
    report::print_acked(&results);
    tls_ceiling::print(&results);
    report::print_load_note(&results);
    println!("# total runtime {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
