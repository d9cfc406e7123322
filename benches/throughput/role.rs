//! The child side of a trial. The parent speaks to a child in lines:
//!
//! ```text
//! server -> parent   PORT <port> mtu=<n>     | UNAVAILABLE <why> | FAILED <why>
//! client -> parent   READY mtu=<n> mss=<n>   | UNAVAILABLE <why> | FAILED <why>
//! parent -> both     START   (measurement window opens)
//! parent -> both     STOP    (window closes)
//! server -> parent   REPORT msgs=<n> bytes=<n> cpu_ns=<n> elapsed_ns=<n>
//! client -> parent   CLIENT ok cpu_ns=<n> samples=<n> p50_ns=<n> p99_ns=<n> [acked=<n> elapsed_ns=<n>]
//!                    | CLIENT error <why>
//! ```
//! `acked` (an acknowledged client only, `buffstreams-acked`) is the count of messages its
//! writers saw acknowledged during the client's window, `elapsed_ns` that window: the parent
//! takes the trial's rate from them instead of from the server's count, so a message counts
//! once the writer has its acknowledgement.
//! A child exits when its stdin closes, and the kernel kills it if the parent dies.
//! `mtu` is the MTU of `lo` in the child's network namespace, which the parent checks against
//! the configuration's; `mss` is TCP's segment size over it (`netns.rs`), for the log.
//!
//! Both sides time their own process (user + system CPU, every thread) over the window.
//! The server is the contender's own, except in `stream-client` (the common std server,
//! `Workload::server_for`); the client is the contender's own, except in `stream-server`
//! (the common load generator) and `tls-handshake` (the common handshake client).

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{ChildArgs, Role};
use crate::contenders::{self, ClientArgs, ServerArgs, StartError};
use crate::plan::Workload;
use crate::{loadgen, netns, proc, stats, tls_handshake};

pub fn main(args: ChildArgs) -> ExitCode {
    proc::die_with_parent();
    // Before any thread exists, so every thread inherits the mask.
    if let Some(cpu) = args.cpu {
        proc::pin_to_cpu(cpu);
    }
    proc::raise_nofile_limit();
    match args.role {
        Role::Server => server(&args),
        Role::Client => client(&args),
    }
}

fn refused(e: StartError) -> ExitCode {
    match e {
        StartError::Unavailable(why) => println!("UNAVAILABLE {}", one_line(&why)),
        StartError::Failed(why) => println!("FAILED {}", one_line(&why)),
    }
    ExitCode::SUCCESS
}

fn server(args: &ChildArgs) -> ExitCode {
    let sargs = ServerArgs {
        echo: args.workload.echo(),
        size: args.size,
        cores: args.cores,
    };
    let handle = match contenders::server(args.workload.server_for(args.contender), &sargs) {
        Ok(h) => h,
        Err(e) => return refused(e),
    };
    println!("PORT {} mtu={}", handle.addr.port(), loopback_mtu());
    let _running = handle;

    let mut window = None;
    control(|cmd| match cmd {
        "START" => window = Some((Instant::now(), stats::totals(), proc::process_cpu_ns())),
        "STOP" => {
            let (cpu, now, (msgs, bytes)) =
                (proc::process_cpu_ns(), Instant::now(), stats::totals());
            if let Some((t0, (m0, b0), c0)) = window.take() {
                println!(
                    "REPORT msgs={} bytes={} cpu_ns={} elapsed_ns={}",
                    msgs - m0,
                    bytes - b0,
                    cpu.saturating_sub(c0),
                    now.duration_since(t0).as_nanos()
                );
            }
        }
        _ => {}
    })
}

fn client(args: &ChildArgs) -> ExitCode {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    // Before the contender's client starts: a private connection, not one to the server.
    let mss = known("TCP's MSS over lo", netns::loopback_mss());
    let started = match args.workload {
        Workload::StreamServer => loadgen::start(addr, args.size, args.conns),
        Workload::TlsHandshake => tls_handshake::start(addr, args.size, args.conns),
        workload => {
            let cargs = ClientArgs {
                workload,
                addr,
                size: args.size,
                conns: args.conns,
            };
            contenders::client(args.contender, &cargs)
        }
    };
    let handle = match started {
        Ok(h) => h,
        Err(e) => return refused(e),
    };
    println!("READY mtu={} mss={mss}", loopback_mtu());
    let _running = handle;

    let latency = args.workload == Workload::Pingpong && args.conns == 1;
    let mut cpu_at_start = 0;
    let mut acked_at_start = None;
    control(|cmd| match cmd {
        "START" => {
            cpu_at_start = proc::process_cpu_ns();
            acked_at_start = stats::acked_total().map(|n| (n, Instant::now()));
            if latency {
                stats::start_recording();
            }
        }
        "STOP" => {
            let cpu = proc::process_cpu_ns().saturating_sub(cpu_at_start);
            let acked = match (acked_at_start.take(), stats::acked_total()) {
                (Some((n0, t0)), Some(n)) => format!(
                    " acked={} elapsed_ns={}",
                    n.saturating_sub(n0),
                    t0.elapsed().as_nanos()
                ),
                _ => String::new(),
            };
            let mut rtts = stats::stop_recording();
            match stats::take_client_error() {
                Some(why) => println!("CLIENT error {}", one_line(&why)),
                None => {
                    rtts.sort_unstable();
                    println!(
                        "CLIENT ok cpu_ns={cpu} samples={} p50_ns={} p99_ns={}{acked}",
                        rtts.len(),
                        percentile(&rtts, 50.0),
                        percentile(&rtts, 99.0)
                    );
                }
            }
        }
        _ => {}
    })
}

/// Feeds the parent's commands to `on` until stdin closes, then ends the process without
/// waiting for the contender's threads.
fn control(mut on: impl FnMut(&str)) -> ! {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        on(line.trim());
    }
    std::process::exit(0);
}

/// Nearest-rank percentile of sorted samples (0 when there are none).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `lo`'s MTU in this child's namespace, or `unknown` (the parent then refuses the trial).
fn loopback_mtu() -> String {
    known("lo's MTU", netns::loopback_mtu())
}

/// The value, or `unknown` with the reason on stderr (forwarded by the parent).
fn known(what: &str, value: std::io::Result<u32>) -> String {
    value.map_or_else(
        |e| {
            eprintln!("cannot read {what}: {e}");
            "unknown".to_string()
        },
        |v| v.to_string(),
    )
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
