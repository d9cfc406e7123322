//! The soak's end: peaks sampled while it runs, and the report with its verdict.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::attackers::AttackStats;
use crate::Soak;

/// Peaks of this process's open file descriptors and threads, sampled every 20 ms.
pub fn sample_peaks(stop: &AtomicBool) -> (usize, usize) {
    let (mut fds, mut threads) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        fds = fds.max(open);
        threads = threads.max(status_field("Threads:").unwrap_or(0) as usize);
        std::thread::sleep(Duration::from_millis(20));
    }
    (fds, threads)
}

/// A number from /proc/self/status (e.g. `VmHWM:`, in kB).
pub fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The autotuning maximum of a `tcp_wmem`/`tcp_rmem` sysctl.
fn sysctl_max(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20)
}

/// What the run left: per stream, how many messages were written and from which sequence on
/// each writer generation took them; connections still open; samples.
pub struct End {
    pub written: Vec<u64>,
    pub generations: Vec<Vec<(u64, u64)>>,
    pub open_at_end: usize,
    pub fds_at_start: usize,
    pub peak_fds: usize,
    pub peak_threads: usize,
}

/// Prints the accounts; returns whether the soak passed.
pub fn report(soak: &Soak, stats: &AttackStats, end: &End) -> bool {
    let End {
        open_at_end,
        fds_at_start,
        peak_fds,
        peak_threads,
        ..
    } = *end;
    let r = soak.ledger.report(&end.written, &end.generations);
    let per_end =
        sysctl_max("/proc/sys/net/ipv4/tcp_wmem") + sysctl_max("/proc/sys/net/ipv4/tcp_rmem");
    // Ends without a peer address may be writers' too.
    let bound = (r.unclean_ends + r.unknown_ends) * per_end;
    let f = &soak.faults;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("written          {}", r.written);
    println!("received         {}", r.received);
    println!("handed back      {}", r.handed_back);
    let at_ends = r.lost - r.lost_inside_a_connection;
    if soak.acked {
        // Acknowledged: nothing may be lost, at connection ends included.
        println!(
            "lost             {} ({} at unclean connection ends; must be 0)",
            r.lost, at_ends
        );
    } else {
        println!(
            "lost             {} ({} MiB framed)",
            r.lost,
            r.lost_bytes >> 20
        );
        println!(
            "  in kernel buffers at connection ends (unreportable): {}, allowed {} unclean ends \
             x {} MiB = {} MiB; longest run lost on one stream {} KiB",
            at_ends,
            r.unclean_ends + r.unknown_ends,
            per_end >> 20,
            bound >> 20,
            r.largest_gap_bytes >> 10
        );
    }
    println!(
        "  inside a connection (must be 0): {} lost, {} handed back",
        r.lost_inside_a_connection, r.handed_back_inside_a_connection
    );
    println!(
        "  from the {} of {} writers that kept one connection and closed it cleanly (must be \
         0): {}",
        r.clean_writers, r.writers, r.lost_from_clean_writers
    );
    let a = &soak.ack_totals;
    if soak.acked {
        println!(
            "flagged          {} deliveries flagged possible_duplicate (listeners counted {}); \
             {} flagged duplicates",
            r.flagged,
            n(&a.flagged),
            r.flagged_duplicates
        );
        println!(
            "duplicated       {} flagged (allowed), {} unflagged (must be 0), {} by one listener \
             (must be 0), {} handed back twice (must be 0)",
            r.flagged_duplicates,
            r.unflagged_duplicates,
            r.duplicated_in_one_lifetime,
            r.handed_back_twice
        );
        println!(
            "reordered        {} within a connection, {} within a listener lifetime (must be 0); \
             {} holes inside a connection",
            r.reordered, r.out_of_order_in_one_lifetime, r.holes_in_runs
        );
        println!(
            "received+back    {} (allowed: not acknowledged, delivered all the same; {} handed \
             back by close, {} through on_failed)",
            r.received_and_handed_back,
            r.received_and_handed_back_by_close,
            r.received_and_handed_back - r.received_and_handed_back_by_close
        );
        println!(
            "acknowledgements writers numbered {} messages, re-sent {}; listeners dropped {} \
             re-sent messages delivered already; {} of {} writer closes handed messages back",
            n(&a.written),
            n(&a.resent),
            n(&a.dropped),
            n(&a.closes_unsent),
            n(&a.closes)
        );
    } else {
        println!("duplicated       {}", r.duplicated);
        println!("reordered        {} (within a connection)", r.reordered);
        println!("received+back    {}", r.received_and_handed_back);
    }
    println!("corrupt          {}", r.corrupt);
    println!(
        "faults           {} connections killed, {} listener restarts ({} bind retries), {} \
         writer re-dials",
        n(&f.kills),
        n(&f.restarts),
        n(&f.bind_retries),
        n(&f.redials)
    );
    println!(
        "connections      writers: {} clean ends, {} unclean; attackers: {} partial-frame, {} \
         idle, {} ends seen, {} refused; {} ends without a peer address; open at the end: \
         {open_at_end}",
        r.clean_ends,
        r.unclean_ends,
        n(&stats.partial),
        n(&stats.idle),
        r.attacker_ends,
        n(&stats.refused),
        r.unknown_ends
    );
    if soak.acked {
        println!(
            "                 {} attackers' connections refused as plain peers (no hello; with those \
             without a peer address)",
            r.attackers_refused_as_plain
        );
    }
    let reasons: Vec<String> = soak
        .ledger
        .unclean_reasons()
        .iter()
        .take(6)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if !reasons.is_empty() {
        println!("unclean ends     {}", reasons.join(", "));
    }
    let fds_now = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    println!(
        "peak RSS         {} MiB",
        status_field("VmHWM:").unwrap_or(0) >> 10
    );
    println!("peak fds         {peak_fds} (at start {fds_at_start}, at the end {fds_now})");
    println!("peak threads     {peak_threads}");
    let common = r.reordered == 0
        && r.lost_inside_a_connection == 0
        && r.handed_back_inside_a_connection == 0
        && r.lost_from_clean_writers == 0
        && r.corrupt == 0
        && r.received > 0
        && open_at_end == 0;
    let ok = common
        && if soak.acked {
            r.lost == 0
                && r.unflagged_duplicates == 0
                && r.duplicated_in_one_lifetime == 0
                && r.handed_back_twice == 0
                && r.out_of_order_in_one_lifetime == 0
                && r.holes_in_runs == 0
        } else {
            r.duplicated == 0 && r.received_and_handed_back == 0 && r.lost_bytes <= bound
        };
    println!("RESULT {}", if ok { "ok" } else { "FAILED" });
    ok
}
