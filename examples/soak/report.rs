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
    let bound = r.unclean_ends * per_end;
    let f = &soak.faults;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("written          {}", r.written);
    println!("received         {}", r.received);
    println!("handed back      {}", r.handed_back);
    println!(
        "lost             {} ({} MiB framed)",
        r.lost,
        r.lost_bytes >> 20
    );
    println!(
        "  in kernel buffers at connection ends (unreportable): {}, allowed {} unclean ends x \
         {} MiB = {} MiB; longest run lost on one stream {} KiB",
        r.lost - r.lost_inside_a_connection,
        r.unclean_ends,
        per_end >> 20,
        bound >> 20,
        r.largest_gap_bytes >> 10
    );
    println!(
        "  inside a connection (must be 0): {} lost, {} handed back",
        r.lost_inside_a_connection, r.handed_back_inside_a_connection
    );
    println!(
        "  from the {} of {} writers that kept one connection and closed it cleanly (must be \
         0): {}",
        r.clean_writers, r.writers, r.lost_from_clean_writers
    );
    println!("duplicated       {}", r.duplicated);
    println!("reordered        {} (within a connection)", r.reordered);
    println!("received+back    {}", r.received_and_handed_back);
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
         idle, {} ends seen, {} refused; open at the end: {open_at_end}",
        r.clean_ends,
        r.unclean_ends,
        n(&stats.partial),
        n(&stats.idle),
        r.attacker_ends,
        n(&stats.refused)
    );
    let fds_now = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    println!(
        "peak RSS         {} MiB",
        status_field("VmHWM:").unwrap_or(0) >> 10
    );
    println!("peak fds         {peak_fds} (at start {fds_at_start}, at the end {fds_now})");
    println!("peak threads     {peak_threads}");
    let ok = r.duplicated == 0
        && r.reordered == 0
        && r.lost_inside_a_connection == 0
        && r.handed_back_inside_a_connection == 0
        && r.lost_from_clean_writers == 0
        && r.received_and_handed_back == 0
        && r.corrupt == 0
        && r.lost_bytes <= bound
        && r.received > 0
        && open_at_end == 0;
    println!("RESULT {}", if ok { "ok" } else { "FAILED" });
    ok
}
