//! Command line: the user's options and the internal arguments of child processes.

use std::time::Duration;

use crate::plan::{Contender, Workload};

pub const USAGE: &str = "\
usage: cargo bench --bench throughput -- [--quick] [--filter <substring>]... [--reps N]
                                         [--warmup SECS] [--window SECS] [--mtu N[,N]...]
  --quick           CI smoke test: 8 configurations, short windows (about a minute)
  --filter S        keep trials whose contender or workload name contains S
                    (repeat to narrow: every filter must match one of the two)
  --reps N          repetitions of every trial (default: quick 2 and 1 for the TLS
                    workloads, full 5)
  --warmup SECS     traffic before the measurement window (default: quick 0.2, full 0.3)
  --window SECS     measurement window (default: quick 0.4, full 1.0)
  --client-cpu N    CPU the client is pinned to (default 1; 0 puts both ends on one core)
  --only-conns N[,N]...  keep only configurations with these connection counts
  --only-workload W[,W]...  keep only these workloads (exact names)
  --only-contender C[,C]...  keep only these contenders (exact names)
  --only-size N[,N]...  keep only configurations with these message sizes
  --mtu N[,N]...    loopback MTUs (68 to 65536; a comma list, or repeat the option): every
                    selected configuration runs at each one instead of at the plan's MTUs
                    (full: stream, stream-server and stream-client at 65536, 9000 and 1500,
                    pingpong and churn at the host's; quick: everything at the host's, plus
                    stream 110 B x 4 conns at 1500). The host loopback's own MTU (read from lo,
                    normally 65536) runs on the host loopback; every other MTU in an anonymous
                    network namespace of its own whose lo has that MTU, made when first needed
                    and freed by the kernel when the bench exits, however it exits (needs root:
                    else SKIP reason=netns). Both children check lo's MTU (else reason=wrong-mtu)
environment: BUFFSTREAMS_BENCH_WRITE=buffered|batch|plain  how the buffstreams streaming client
              writes (default buffered: a BufferedWriter per connection, as the std client
              uses a BufWriter; batch: write_batch of 64; plain: Writer::write per message)
             BUFFSTREAMS_BENCH_BATCH=<bytes>  the BufferedWriter's batch size (buffered_with_capacity;
              default: Writer::buffered's, shared out per core, 64 KiB to 1 MiB)
             BUFFSTREAMS_BENCH_LOWAT=<bytes>|none  the buffstreams writers' TCP_NOTSENT_LOWAT
              (default: WriterConfig's, DEFAULT_NOTSENT_LOWAT)
             BUFFSTREAMS_BENCH_QUEUE=<bytes>  the buffstreams writers' send_queue_bytes (default:
              the library's, DEFAULT_SEND_QUEUE_BYTES)
             BUFFSTREAMS_BENCH_STD_BUF=<bytes>  the std stream client's BufWriter size (default
              64 KiB); these two are for diagnostic comparisons, the published run sets neither
             BUFFSTREAMS_BENCH_UNACKED=<bytes>  buffstreams-acked's writers' max_unacked_bytes
              (default: the library's, 4 MiB; diagnostic, unset in published runs)
             BUFFSTREAMS_BENCH_BUSY_POLL_US=<micros>  RuntimeConfig::busy_poll of both buffstreams
              ends' runtimes (spin that long before sleeping; diagnostic, unset in published runs)
             BUFFSTREAMS_BENCH_SQPOLL=1  RuntimeConfig::sqpoll (2 ms idle) for both ends (io_uring;
              diagnostic, unset in published runs)
contenders: buffstreams-uring buffstreams-epoll tokio-ct tokio-mt std raw
            buffstreams-acked (buffstreams-uring with acknowledged delivery on both ends; end
            to end only: stream and pingpong, and only stream in --quick unless
            --only-contender names it; its rates count messages acknowledged at the writer)
            tokio-uring-adapter (this crate's tokio-uring feature; build with
            --features tokio-uring, else a SKIP)
            monoio-adapter (this crate's monoio feature; build with --features monoio,
            else a SKIP)
            buffstreams-tls tokio-rustls std-rustls aes128gcm-seal (the TLS workloads only;
            build with --features tls, else a SKIP)
workloads:  stream         each contender's client into its own server (end to end)
            stream-server  the common load generator into each contender's server
            stream-client  each contender's stream client into the common std server
            pingpong       one outstanding message per connection, echoed
            churn          connect, send one message, close
            tls            stream over TLS 1.3 (AES-128-GCM): msgs/s and payload bytes/s
            tls-handshake  full handshakes (no resumption) per second into each TLS server
                           from the common handshake client
            tls-ceiling    16 KiB records sealed by rustls's AES-128-GCM on one core, the
                           tls workload's ceiling (bytes/s)
            (--filter tls, or --only-workload tls,tls-ceiling,tls-handshake, runs all three)
RESULT lines carry the median value, the server's and client's CPU ns per message and, last,
the loopback MTU (mtu=N), which the server and client children check in their namespace.";

/// Options of a benchmark run.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub reps: usize,
    /// Repetitions of the TLS workloads' trials: `reps`, but 1 in a quick run without
    /// `--reps` (a tiny TLS run, to keep the smoke test short).
    pub tls_reps: usize,
    pub filters: Vec<String>,
    pub warmup: Duration,
    pub window: Duration,
    /// CPU the client process is pinned to (the server, with one core, is on CPU 0).
    pub client_cpu: usize,
    /// `--mtu`: the loopback MTUs every configuration runs at; empty for the plan's own.
    pub mtus: Vec<u32>,
    /// `--only-conns`: the connection counts kept; empty keeps all.
    pub conns: Vec<usize>,
    /// `--only-workload`: the workloads kept; empty keeps all.
    pub workloads: Vec<Workload>,
    /// `--only-contender`: the contenders kept; empty keeps all.
    pub contenders: Vec<Contender>,
    /// `--only-size`: the message sizes kept; empty keeps all.
    pub sizes: Vec<usize>,
}

impl Options {
    /// Every filter must be a substring of the workload or of the contender name.
    pub fn selects(&self, workload: &str, contender: &str) -> bool {
        self.filters
            .iter()
            .all(|f| workload.contains(f.as_str()) || contender.contains(f.as_str()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Arguments of a re-executed child (`--role server|client ...`).
#[derive(Clone, Debug)]
pub struct ChildArgs {
    pub role: Role,
    pub contender: Contender,
    pub workload: Workload,
    pub size: usize,
    pub conns: usize,
    pub cores: usize,
    /// CPU to pin every thread of the process to; `None` leaves it unpinned.
    pub cpu: Option<usize>,
    /// The server's port (client only).
    pub port: u16,
}

impl ChildArgs {
    /// The command line that `parse` turns back into these arguments.
    pub fn to_args(&self) -> Vec<String> {
        let role = match self.role {
            Role::Server => "server",
            Role::Client => "client",
        };
        let cpu = self
            .cpu
            .map_or_else(|| "any".to_string(), |c| c.to_string());
        [
            "--role",
            role,
            "--contender",
            self.contender.name(),
            "--workload",
            self.workload.name(),
            "--size",
            &self.size.to_string(),
            "--conns",
            &self.conns.to_string(),
            "--cores",
            &self.cores.to_string(),
            "--cpu",
            &cpu,
            "--port",
            &self.port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

pub enum Command {
    Run(Options),
    Child(ChildArgs),
    Help,
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut quick = false;
    let mut reps = None;
    let mut filters = Vec::new();
    let mut warmup = None;
    let mut window = None;
    let mut client_cpu = 1;
    let mut mtus = Vec::new();
    let mut conns_kept = Vec::new();
    let mut workloads = Vec::new();
    let mut contenders_kept = Vec::new();
    let mut sizes = Vec::new();
    let mut role = None;
    let mut contender = None;
    let mut workload = None;
    let (mut size, mut conns, mut cores, mut cpu, mut port) = (0, 1, 1, None, 0u16);

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            // Passed by `cargo bench` to every bench binary.
            "--bench" => {}
            "--quick" => quick = true,
            "-h" | "--help" => return Ok(Command::Help),
            "--filter" => filters.push(value()?),
            "--reps" => reps = Some(number(arg, &value()?)?.max(1)),
            "--warmup" => warmup = Some(seconds(arg, &value()?)?),
            "--window" => window = Some(seconds(arg, &value()?)?),
            "--client-cpu" => client_cpu = number(arg, &value()?)?,
            "--mtu" => list(&value()?, &mut mtus, |v| match number(arg, v)? {
                // IPv4's minimum (below it lo loses 127.0.0.1) to loopback's default.
                mtu @ 68..=65536 => Ok(mtu as u32),
                _ => Err(format!("{arg}: {v:?} is not an MTU in 68..=65536")),
            })?,
            "--only-workload" => list(&value()?, &mut workloads, |v| {
                Workload::from_name(v).ok_or_else(|| format!("{arg}: no workload {v:?}"))
            })?,
            "--only-contender" => list(&value()?, &mut contenders_kept, |v| {
                Contender::from_name(v).ok_or_else(|| format!("{arg}: no contender {v:?}"))
            })?,
            "--only-size" => list(&value()?, &mut sizes, |v| number(arg, v))?,
            "--only-conns" => list(&value()?, &mut conns_kept, |v| number(arg, v))?,
            "--role" => {
                role = Some(match value()?.as_str() {
                    "server" => Role::Server,
                    "client" => Role::Client,
                    other => return Err(format!("unknown role {other:?}")),
                })
            }
            "--contender" => {
                let v = value()?;
                contender =
                    Some(Contender::from_name(&v).ok_or(format!("unknown contender {v:?}"))?);
            }
            "--workload" => {
                let v = value()?;
                workload = Some(Workload::from_name(&v).ok_or(format!("unknown workload {v:?}"))?);
            }
            "--size" => size = number(arg, &value()?)?,
            "--conns" => conns = number(arg, &value()?)?.max(1),
            "--cores" => cores = number(arg, &value()?)?.max(1),
            "--cpu" => {
                let v = value()?;
                cpu = if v == "any" {
                    None
                } else {
                    Some(number(arg, &v)?)
                };
            }
            "--port" => {
                port = number(arg, &value()?)?
                    .try_into()
                    .map_err(|_| "--port out of range".to_string())?
            }
            // Harness flags other tools may pass (`--nocapture`, `--test-threads` ...): ignore.
            other if other.starts_with("--") => eprintln!("throughput: ignoring {other}"),
            other => filters.push(other.to_string()),
        }
    }

    if let Some(role) = role {
        return Ok(Command::Child(ChildArgs {
            role,
            contender: contender.ok_or("--role needs --contender")?,
            workload: workload.ok_or("--role needs --workload")?,
            size,
            conns,
            cores,
            cpu,
            port,
        }));
    }
    Ok(Command::Run(Options {
        quick,
        reps: reps.unwrap_or(if quick { 2 } else { 5 }),
        tls_reps: reps.unwrap_or(if quick { 1 } else { 5 }),
        filters,
        warmup: warmup.unwrap_or(Duration::from_millis(if quick { 200 } else { 300 })),
        window: window.unwrap_or(Duration::from_millis(if quick { 400 } else { 1000 })),
        client_cpu,
        mtus,
        conns: conns_kept,
        workloads,
        contenders: contenders_kept,
        sizes,
    }))
}

/// Parses a comma list (`a,b,c`; the option may also be repeated) onto `into`.
fn list<T>(
    value: &str,
    into: &mut Vec<T>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), String> {
    for v in value.split(',') {
        into.push(parse(v.trim())?);
    }
    Ok(())
}

fn number(flag: &str, v: &str) -> Result<usize, String> {
    v.parse()
        .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{flag}: expected seconds, got {v:?}")),
    }
}
