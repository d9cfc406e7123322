//! Output: machine-readable RESULT / RATIO lines, then a table for people.
//!
//! `RESULT workload=<w> size=<b> conns=<n> cores=<n> contender=<c> value=<x> unit=<u>
//! cpu_ns_per_msg=<x> client_cpu_ns_per_msg=<x> mtu=<n>` carries the medians over reps: the
//! value, then the server's and the client's CPU time (user + system, whole process) per
//! message counted by the server (per round trip in ping-pong, per connection in churn), then
//! the loopback MTU the trials ran at. New fields only ever go at the end; `ci/plot.py` reads
//! these lines as `key=value` pairs. RATIO and SKIP lines carry `Config::label`, which ends
//! with `mtu=<n>`. Ratios are taken against each workload's reference contender
//! (`Workload::reference`): `uring_vs_contender=` for buffstreams-uring, `tls_vs_contender=`
//! for buffstreams-tls in the TLS workloads. `buffstreams-acked` also gets its own ratios
//! against every other contender of its configurations (`acked_vs_contender=`, `print_acked`).

use crate::plan::{Contender, Unit};
use crate::run::{Outcome, Summary};

/// Median (mean of the middle two for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The i-th value of every sample of `o`.
pub fn values(o: &Outcome, i: usize) -> Vec<f64> {
    o.samples.iter().map(|s| s.values[i]).collect()
}

fn cpu(o: &Outcome) -> f64 {
    median(
        &o.samples
            .iter()
            .map(|s| s.cpu_ns_per_msg)
            .collect::<Vec<_>>(),
    )
}

fn other_load(o: &Outcome) -> f64 {
    median(&o.samples.iter().map(|s| s.other_load).collect::<Vec<_>>())
}

fn client_cpu(o: &Outcome) -> f64 {
    median(
        &o.samples
            .iter()
            .map(|s| s.client_cpu_ns_per_msg)
            .collect::<Vec<_>>(),
    )
}

fn machine_number(unit: Unit, v: f64) -> String {
    if unit.higher_is_better() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub fn human_number(unit: Unit, v: f64) -> String {
    if !unit.higher_is_better() {
        return format!("{v:.1}");
    }
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// > 1 means the reference contender (`ours`) did better than `other`, whatever the unit.
fn ratio(unit: Unit, ours: f64, other: f64) -> f64 {
    if unit.higher_is_better() {
        ours / other
    } else {
        other / ours
    }
}

/// The configuration's reference contender (`Workload::reference`), if it was selected.
fn reference(summary: &Summary) -> Option<&Outcome> {
    let wanted = summary.config.workload.reference()?;
    summary.outcomes.iter().find(|o| o.contender == wanted)
}

fn reference_median(summary: &Summary, i: usize) -> Option<f64> {
    reference(summary)
        .filter(|o| !o.samples.is_empty())
        .map(|o| median(&values(o, i)))
}

/// The key of a RATIO line's value.
fn ratio_key(reference: Contender) -> &'static str {
    match reference {
        Contender::BuffstreamsTls => "tls_vs_contender",
        _ => "uring_vs_contender",
    }
}

/// The RESULT lines of one configuration (printed as soon as it is done).
pub fn print_config(summary: &Summary) {
    let c = &summary.config;
    for o in summary.outcomes.iter().filter(|o| !o.samples.is_empty()) {
        for (i, &unit) in c.units().iter().enumerate() {
            println!(
                "RESULT workload={} size={} conns={} cores={} contender={} value={} unit={} cpu_ns_per_msg={:.1} client_cpu_ns_per_msg={:.1} mtu={}",
                c.workload.name(),
                c.size,
                c.conns,
                c.cores,
                o.contender.name(),
                machine_number(unit, median(&values(o, i))),
                unit.name(),
                cpu(o),
                client_cpu(o),
                c.mtu,
            );
        }
    }
}

pub fn print_table(results: &[Summary]) {
    println!();
    println!(
        "{:<14} {:>6} {:>5} {:>5} {:>5}  {:<18} {:<16} {:>9}  {:>19}  {:>8}  {:>8}  {:>6}  {:>5}  {:>7}",
        "workload",
        "size",
        "conns",
        "cores",
        "mtu",
        "contender",
        "unit",
        "median",
        "min-max",
        "srv ns/m",
        "cli ns/m",
        "other%",
        "reps",
        "ours/x"
    );
    for summary in results {
        let c = &summary.config;
        let ours = c.workload.reference();
        for (i, &unit) in c.units().iter().enumerate() {
            let reference = reference_median(summary, i);
            for o in &summary.outcomes {
                let head = format!(
                    "{:<14} {:>6} {:>5} {:>5} {:>5}  {:<18} {:<16}",
                    c.workload.name(),
                    c.size,
                    c.conns,
                    c.cores,
                    c.mtu,
                    o.contender.name(),
                    unit.name()
                );
                let reps = format!("{}/{}", o.samples.len(), o.samples.len() + o.skips.len());
                if o.samples.is_empty() {
                    let why = o.skips.first().map_or("", |s| s.reason);
                    println!(
                        "{head} {:>9}  {:>19}  {:>8}  {:>8}  {:>6}  {reps:>5}",
                        why, "-", "-", "-", "-"
                    );
                    continue;
                }
                let vals = values(o, i);
                let (lo, hi) = min_max(&vals);
                let med = median(&vals);
                let r = match reference {
                    Some(u) if Some(o.contender) != ours => format!("{:.2}", ratio(unit, u, med)),
                    _ => "-".to_string(),
                };
                println!(
                    "{head} {:>9}  {:>19}  {:>8.1}  {:>8.1}  {:>6.0}  {reps:>5}  {r:>7}",
                    human_number(unit, med),
                    format!("{} - {}", human_number(unit, lo), human_number(unit, hi)),
                    cpu(o),
                    client_cpu(o),
                    100.0 * other_load(o),
                );
            }
        }
    }
}

pub fn print_ratios(results: &[Summary]) {
    println!();
    println!(
        "# ratios: buffstreams-uring (buffstreams-tls in the TLS workloads) vs each contender (rates: ours / x; latencies: x / ours; > 1 means buffstreams is better)"
    );
    let mut missing = Vec::new();
    let mut considered = 0;
    for summary in results {
        let c = &summary.config;
        let Some(ours) = reference(summary) else {
            continue;
        };
        considered += 1;
        let name = ours.contender.name();
        if ours.samples.is_empty() {
            let why = ours
                .unavailable
                .clone()
                .or_else(|| ours.skips.first().map(|s| s.reason.to_string()))
                .unwrap_or_default();
            missing.push((c.label(), name, why));
            continue;
        }
        for (i, &unit) in c.units().iter().enumerate() {
            let u = median(&values(ours, i));
            for o in summary
                .outcomes
                .iter()
                .filter(|o| o.contender != ours.contender && !o.samples.is_empty())
            {
                println!(
                    "RATIO {} contender={} unit={} {}={:.3}",
                    c.label(),
                    o.contender.name(),
                    unit.name(),
                    ratio_key(ours.contender),
                    ratio(unit, u, median(&values(o, i)))
                );
            }
        }
    }
    if considered == 0 {
        println!("# ratios: no reference contender was selected in this run");
    } else if missing.len() == considered && missing.iter().all(|m| m.2 == missing[0].2) {
        println!(
            "# ratios: none, the reference unavailable in every configuration ({})",
            missing[0].2
        );
    } else {
        for (label, name, why) in missing {
            println!("# ratios {label}: {name} unavailable ({why})");
        }
    }
}

/// A closing note when other tenants of the machine took a noticeable share of it.
pub fn print_load_note(results: &[Summary]) {
    let loads: Vec<f64> = results
        .iter()
        .flat_map(|s| &s.outcomes)
        .flat_map(|o| o.samples.iter().map(|s| s.other_load))
        .collect();
    let (m, (_, hi)) = (median(&loads), min_max(&loads));
    if m.is_finite() {
        println!(
            "# other processes (and hypervisor steal) took {:.0}% of the machine's CPU time during the windows (median; max {:.0}%){}",
            100.0 * m,
            100.0 * hi,
            if m > 0.1 { ": figures are depressed and noisy" } else { "" }
        );
    }
}

/// The targets set for `buffstreams-acked` when it was added: at 110 B x 4 end to end, at least 0.9x
/// plain buffstreams-uring and 1.1x blocking std; in ping-pong at most 10% more per round trip
/// than plain buffstreams-uring.
const ACKED_VS_PLAIN: f64 = 0.9;
const ACKED_VS_STD: f64 = 1.1;
const ACKED_PINGPONG_COST: f64 = 0.10;

/// `buffstreams-acked` against every other contender of the same configuration
/// (`RATIO ... acked_vs_contender=`, > 1: acked is better), then one line per configuration
/// against plain buffstreams-uring and std, with the targets where they apply.
pub fn print_acked(results: &[Summary]) {
    let with_acked: Vec<(&Summary, &Outcome)> = results
        .iter()
        .filter_map(|s| {
            let acked = s
                .outcomes
                .iter()
                .find(|o| o.contender == Contender::BuffstreamsAcked)?;
            Some((s, acked))
        })
        .collect();
    if with_acked.is_empty() {
        return;
    }
    println!();
    println!(
        "# acknowledged delivery: buffstreams-acked (buffstreams-uring with WriterConfig::acked and ListenerConfig::acked; its rates count the messages its writers saw acknowledged) vs each contender (rates: acked / x; latencies: x / acked; > 1 means acked is better). End to end only (stream, pingpong): the common load generator (stream-server) and the common std server (stream-client) do not speak the protocol"
    );
    let mut targets = Vec::new();
    for (summary, acked) in &with_acked {
        let c = &summary.config;
        if acked.samples.is_empty() {
            let why = acked
                .unavailable
                .clone()
                .or_else(|| acked.skips.first().map(|s| s.reason.to_string()))
                .unwrap_or_default();
            println!(
                "# acked {}: buffstreams-acked unavailable ({why})",
                c.label()
            );
            continue;
        }
        for (i, &unit) in c.units().iter().enumerate() {
            let a = median(&values(acked, i));
            for o in summary
                .outcomes
                .iter()
                .filter(|o| o.contender != acked.contender && !o.samples.is_empty())
            {
                println!(
                    "RATIO {} contender={} unit={} acked_vs_contender={:.3}",
                    c.label(),
                    o.contender.name(),
                    unit.name(),
                    ratio(unit, a, median(&values(o, i)))
                );
            }
        }
        targets.push(acked_target(summary, acked));
    }
    for line in targets {
        println!("{line}");
    }
}

/// One configuration's summary line: acked against plain buffstreams-uring and std (rates), or
/// the extra cost per round trip (ping-pong), with the target where the issue set one.
fn acked_target(summary: &Summary, acked: &Outcome) -> String {
    let c = &summary.config;
    let find = |who: Contender| {
        summary
            .outcomes
            .iter()
            .find(|o| o.contender == who && !o.samples.is_empty())
    };
    let unit = c.units()[0];
    let a = median(&values(acked, 0));
    let vs = |who: Contender| find(who).map(|o| ratio(unit, a, median(&values(o, 0))));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let mut parts = Vec::new();
    if c.workload == crate::plan::Workload::Pingpong {
        match find(Contender::BuffstreamsUring) {
            Some(plain) => {
                // A round trip's cost: its latency, or the inverse of the round trips' rate.
                let extra = 1.0 / ratio(unit, a, median(&values(plain, 0))) - 1.0;
                parts.push(format!(
                    "{:+.1}% per round trip ({}) against buffstreams-uring (target <= +{:.0}%: {})",
                    100.0 * extra,
                    unit.name(),
                    100.0 * ACKED_PINGPONG_COST,
                    verdict(extra <= ACKED_PINGPONG_COST)
                ));
                let cpu_of = |o: &Outcome| cpu(o) + client_cpu(o);
                parts.push(format!(
                    "server + client CPU per round trip {:.0} against {:.0} ns ({:+.1}%)",
                    cpu_of(acked),
                    cpu_of(plain),
                    100.0 * (cpu_of(acked) / cpu_of(plain) - 1.0)
                ));
            }
            None => parts.push("no buffstreams-uring figure to compare with".to_string()),
        }
    } else {
        let targeted = c.size == crate::plan::SMALL && c.conns == 4;
        for (who, target) in [
            (Contender::BuffstreamsUring, ACKED_VS_PLAIN),
            (Contender::Std, ACKED_VS_STD),
        ] {
            parts.push(match vs(who) {
                Some(r) if targeted => format!(
                    "{:.2}x {} (target >= {target:.2}x: {})",
                    r,
                    who.name(),
                    verdict(r >= target)
                ),
                Some(r) => format!("{:.2}x {}", r, who.name()),
                None => format!("no {} figure", who.name()),
            });
        }
    }
    format!("# acked {}: {}", c.label(), parts.join("; "))
}
