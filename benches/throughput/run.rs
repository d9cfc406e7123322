//! The parent's side of the trials: one configuration, every rep, contenders alternating.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread;
use std::time::Duration;

use crate::cli::{ChildArgs, Options, Role};
use crate::plan::{Config, Contender, Unit};
use crate::proc::{self, ChildProc, Wait};

/// Time a server gets to report its port (includes runtime / ring set-up).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to open its connections: this plus `READY_PER_CONN` each.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const READY_PER_CONN: Duration = Duration::from_millis(40);
/// Time either side gets to answer STOP.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One successful trial.
#[derive(Clone, Debug)]
pub struct Sample {
    /// One value per `Config::units()`.
    pub values: Vec<f64>,
    /// Server CPU time / messages counted in the window.
    pub cpu_ns_per_msg: f64,
    /// Client CPU time (user + system, whole process) over the window / messages (round
    /// trips, connections) counted by the server: shows when the client is the limit.
    pub client_cpu_ns_per_msg: f64,
    /// Messages (round trips for ping-pong) per second counted by the server, or for an
    /// acknowledged client (`buffstreams-acked`) acknowledged at the writer.
    pub rate: f64,
    /// For an acknowledged client: the rate the server counted (delivered to its handler),
    /// for the log; `rate` is the acknowledged one.
    pub delivered_rate: Option<f64>,
    /// Share of the machine's CPU time used by anything but this trial's server and client
    /// during the window (other tenants of a shared machine), 0..1; NaN if unknown.
    pub other_load: f64,
    /// TCP's maximum segment size over the client's loopback (`netns::loopback_mss`).
    pub mss: u32,
}

/// Why a trial produced nothing.
#[derive(Clone, Debug)]
pub struct Skip {
    /// One token: `unavailable`, `timeout`, `exited`, `failed`, `client-error`, `no-messages`,
    /// `netns` (no namespace for this MTU), `wrong-mtu` (a child saw another loopback MTU).
    pub reason: &'static str,
    pub detail: String,
}

/// Everything one contender produced in one configuration.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub contender: Contender,
    pub samples: Vec<Sample>,
    pub skips: Vec<Skip>,
    /// Set when the contender said it cannot run here; it is not tried again in this config.
    pub unavailable: Option<String>,
}

/// The results of one configuration.
#[derive(Clone, Debug)]
pub struct Summary {
    pub config: Config,
    pub outcomes: Vec<Outcome>,
}

/// Runs every rep of `config`, on the host loopback (`netns` None) or in the network
/// namespace of `config.mtu` (`netns.rs`; an error skips every trial). `hung` lists
/// contenders that timed out earlier in this run: they are not started again (a hung
/// contender would otherwise cost a timeout per trial).
pub fn config(
    opts: &Options,
    config: &Config,
    netns: Option<&Result<OwnedFd, String>>,
    hung: &mut Vec<Contender>,
) -> Summary {
    let netns = match netns {
        None => Ok(None),
        Some(Ok(fd)) => Ok(Some(fd.as_fd())),
        Some(Err(why)) => Err(skip("netns", format!("mtu {}: {why}", config.mtu))),
    };
    let mut outcomes: Vec<Outcome> = config
        .contenders
        .iter()
        .map(|&contender| Outcome {
            contender,
            samples: Vec::new(),
            skips: Vec::new(),
            unavailable: None,
        })
        .collect();
    for rep in 1..=config.reps {
        for outcome in outcomes.iter_mut() {
            if outcome.unavailable.is_some() {
                continue;
            }
            let contender = outcome.contender;
            let name = contender.name();
            let result = match &netns {
                Err(no_ns) => Err(no_ns.clone()),
                Ok(_) if hung.contains(&contender) => Err(skip(
                    "timeout",
                    "timed out earlier in this run; not started again",
                )),
                Ok(ns) => trial(opts, config, contender, *ns),
            };
            match result {
                Ok(sample) => {
                    eprintln!(
                        "# rep {rep}/{} {} contender={name}: {}",
                        config.reps,
                        config.label(),
                        describe(config.units(), &sample)
                    );
                    outcome.samples.push(sample);
                }
                Err(skip) => {
                    println!(
                        "SKIP contender={name} reason={} {} rep={rep} detail={:?}",
                        skip.reason,
                        config.label(),
                        skip.detail
                    );
                    match skip.reason {
                        "unavailable" | "netns" => outcome.unavailable = Some(skip.detail.clone()),
                        "timeout" if !hung.contains(&contender) => hung.push(contender),
                        _ => {}
                    }
                    outcome.skips.push(skip);
                }
            }
        }
    }
    Summary {
        config: config.clone(),
        outcomes,
    }
}

fn describe(units: &[Unit], s: &Sample) -> String {
    let mut out: Vec<String> = units
        .iter()
        .zip(&s.values)
        .map(|(u, v)| format!("{} {v:.1}", u.name()))
        .collect();
    if units[0].higher_is_better() {
        out.push(format!("cpu_ns_per_msg {:.1}", s.cpu_ns_per_msg));
    } else {
        out.push(format!("rtts_per_s {:.0}", s.rate));
        out.push(format!("cpu_ns_per_rtt {:.1}", s.cpu_ns_per_msg));
    }
    out.push(format!(
        "client_cpu_ns_per_msg {:.1}",
        s.client_cpu_ns_per_msg
    ));
    out.push(format!("tcp mss {}", s.mss));
    if let Some(delivered) = s.delivered_rate {
        out.push(format!(
            "counted as acknowledged at the writer (server delivered {delivered:.0}/s)"
        ));
    }
    out.join(", ")
}

fn skip(reason: &'static str, detail: impl Into<String>) -> Skip {
    Skip {
        reason,
        detail: detail.into(),
    }
}

fn waited(who: &str, what: &str, w: Wait) -> Skip {
    match w {
        Wait::Timeout => skip("timeout", format!("{who} gave no {what}")),
        Wait::Exited(last) => skip("exited", format!("{who} exited before {what}: {last}")),
    }
}

/// Reads a `<KIND> <detail>` refusal or returns the line.
fn refusal(who: &str, line: &str) -> Result<(), Skip> {
    if let Some(why) = line.strip_prefix("UNAVAILABLE") {
        return Err(skip("unavailable", why.trim()));
    }
    if let Some(why) = line.strip_prefix("FAILED") {
        return Err(skip("failed", format!("{who}: {}", why.trim())));
    }
    Ok(())
}

/// `key=value` fields of a line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The loopback MTU a child reported (`mtu=<n>` on its first line) must be the config's:
/// the namespace is the one asked for, or the trial is not reported.
fn check_mtu(who: &str, line: &str, config: &Config) -> Result<(), Skip> {
    match field(line, "mtu") {
        Some(m) if m == f64::from(config.mtu) => Ok(()),
        Some(m) => Err(skip(
            "wrong-mtu",
            format!("{who}'s loopback has MTU {m}, not {}", config.mtu),
        )),
        None => Err(skip("wrong-mtu", format!("{who} gave no MTU: {line:?}"))),
    }
}

/// One measurement: spawn server and client (in `netns`, if given), warm up, open and close
/// the window, collect. Both children are killed and reaped when they go out of scope, on
/// every path.
fn trial(
    opts: &Options,
    config: &Config,
    contender: Contender,
    netns: Option<BorrowedFd<'_>>,
) -> Result<Sample, Skip> {
    let mut args = ChildArgs {
        role: Role::Server,
        contender,
        workload: config.workload,
        size: config.size,
        conns: config.conns,
        cores: config.cores,
        // One server core: pinned to CPU 0. All cores: unpinned.
        cpu: (config.cores == 1).then_some(0),
        port: 0,
    };
    // The child picks the server itself (`Workload::server_for`); this only names it.
    let server_name = config.workload.server_for(contender).name();
    let mut server = ChildProc::spawn(&format!("server {server_name}"), &args.to_args(), netns)
        .map_err(|e| skip("failed", format!("spawn server: {e}")))?;
    let line = server
        .expect(&["PORT", "UNAVAILABLE", "FAILED"], START_TIMEOUT)
        .map_err(|w| waited("server", "port", w))?;
    refusal("server", &line)?;
    let port: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| skip("failed", format!("bad server line {line:?}")))?;
    check_mtu("server", &line, config)?;

    args.role = Role::Client;
    args.port = port;
    args.cpu = Some(opts.client_cpu);
    let client_name = config
        .workload
        .common_client()
        .unwrap_or(contender.name())
        .to_string();
    let mut client = ChildProc::spawn(&format!("client {client_name}"), &args.to_args(), netns)
        .map_err(|e| skip("failed", format!("spawn client: {e}")))?;
    let line = client
        .expect(
            &["READY", "UNAVAILABLE", "FAILED"],
            READY_TIMEOUT + READY_PER_CONN * config.conns as u32,
        )
        .map_err(|w| waited("client", "ready", w))?;
    refusal("client", &line)?;
    check_mtu("client", &line, config)?;
    let mss = field(&line, "mss").unwrap_or(0.0) as u32;

    thread::sleep(opts.warmup);
    for (who, child) in [("server", &mut server), ("client", &mut client)] {
        if !child.alive() {
            return Err(skip(
                "exited",
                format!("{who} died in warm-up: {}", child.last_words()),
            ));
        }
    }
    let busy_before = proc::system_busy_ns();
    server.send("START");
    client.send("START");
    thread::sleep(opts.window);
    server.send("STOP");
    client.send("STOP");
    let busy_after = proc::system_busy_ns();
    let report = server
        .expect(&["REPORT"], STOP_TIMEOUT)
        .map_err(|w| waited("server", "report", w))?;
    let client_report = client
        .expect(&["CLIENT"], STOP_TIMEOUT)
        .map_err(|w| waited("client", "report", w))?;
    // Client first, so the server never sees its peers vanish while it could still report.
    drop(client);
    drop(server);

    if let Some(why) = client_report.strip_prefix("CLIENT error") {
        return Err(skip("client-error", why.trim()));
    }
    let get = |line: &str, key: &str| {
        field(line, key).ok_or_else(|| skip("failed", format!("no {key} in {line:?}")))
    };
    let delivered = get(&report, "msgs")?;
    let cpu_ns = get(&report, "cpu_ns")?;
    let server_secs = get(&report, "elapsed_ns")? / 1e9;
    // An acknowledged client reports what its writers saw acknowledged in its window: that is
    // the count (a message counts once its acknowledgement is back), the server's is logged.
    let (msgs, secs, delivered_rate) = match field(&client_report, "acked") {
        Some(acked) => {
            let secs = get(&client_report, "elapsed_ns")? / 1e9;
            let delivered_rate = (server_secs > 0.0).then(|| delivered / server_secs);
            (acked, secs, delivered_rate)
        }
        None => (delivered, server_secs, None),
    };
    if msgs < 1.0 || secs <= 0.0 {
        return Err(skip(
            "no-messages",
            match delivered_rate {
                Some(_) => "the writers saw nothing acknowledged in the window",
                None => "the server counted nothing in the window",
            },
        ));
    }
    let mut values = Vec::new();
    for unit in config.units() {
        values.push(match unit {
            Unit::MsgsPerS | Unit::RttsPerS | Unit::HandshakesPerS => msgs / secs,
            Unit::BytesPerS => get(&report, "bytes")? / server_secs,
            Unit::RttP50Us | Unit::RttP99Us => {
                if get(&client_report, "samples")? < 1.0 {
                    return Err(skip("no-messages", "no round trip completed in the window"));
                }
                let key = if *unit == Unit::RttP50Us {
                    "p50_ns"
                } else {
                    "p99_ns"
                };
                get(&client_report, key)? / 1e3
            }
        });
    }
    let client_cpu_ns = get(&client_report, "cpu_ns")?;
    let other_load = match (busy_before, busy_after) {
        (Some((b0, cpus)), Some((b1, _))) => {
            let other = b1.saturating_sub(b0) as f64 - cpu_ns - client_cpu_ns;
            (other / (server_secs * 1e9 * cpus as f64)).clamp(0.0, 1.0)
        }
        _ => f64::NAN,
    };
    Ok(Sample {
        values,
        cpu_ns_per_msg: cpu_ns / msgs,
        client_cpu_ns_per_msg: client_cpu_ns / msgs,
        rate: msgs / secs,
        delivered_rate,
        other_load,
        mss,
    })
}
