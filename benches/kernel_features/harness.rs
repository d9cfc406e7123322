//! Shared pieces: options, CPU pinning, ring setup, one-CQE reaping, and the alternating A/B
//! runner that prints the `RESULT` and `RATIO` lines.

use std::io;
use std::time::Duration;

use io_uring::{cqueue, squeue, CompletionQueue, IoUring, SubmissionQueue, Submitter};

pub struct Opts {
    /// Rounds per variant; the variants take turns, in a rotating order, round after round.
    pub rounds: usize,
    /// Target length of one round.
    pub round: Duration,
    /// CPU for the drain thread of the SEND_ZC feature (the main thread is pinned elsewhere).
    pub drain_cpu: Option<usize>,
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_getaffinity writes at most
    // `size_of::<cpu_set_t>()` bytes into it and CPU_ISSET only reads it, within its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        Ok((0..max).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::other(format!("cpu {cpu} out of range")));
    }
    // SAFETY: `set` is a plain bitmask owned by this frame, `cpu` was bounds-checked above, and
    // sched_setaffinity only reads `size_of::<cpu_set_t>()` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A ring set up as the engine sets up its own (`src/engine/uring/mod.rs`): SINGLE_ISSUER |
/// DEFER_TASKRUN | COOP_TASKRUN, falling back to fewer flags on EINVAL.
pub fn build_ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    let mut last = None;
    for flags in ["single_issuer+defer_taskrun", "coop_taskrun", "plain"] {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries * 8).setup_submit_all();
        match flags {
            "single_issuer+defer_taskrun" => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun();
            }
            "coop_taskrun" => {
                builder.setup_coop_taskrun();
            }
            _ => {}
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, flags)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
}

/// Pushes one entry and publishes the new tail to the kernel.
///
/// # Safety
/// Whatever memory `entry` points at must stay valid until its completion (and, for SEND_ZC,
/// its notification) has been reaped.
pub unsafe fn push(sq: &mut SubmissionQueue<'_>, entry: &squeue::Entry) -> io::Result<()> {
    // SAFETY: forwarded to the caller (see above).
    unsafe { sq.push(entry) }.map_err(|_| io::Error::other("submission queue full"))?;
    sq.sync();
    Ok(())
}

/// Takes one CQE, entering the kernel to wait for one when the queue is empty. The consumed
/// head is published before returning, so a later wait does not see this CQE again.
pub fn take_one(sub: &Submitter<'_>, cq: &mut CompletionQueue<'_>) -> io::Result<cqueue::Entry> {
    loop {
        cq.sync();
        if let Some(cqe) = cq.next() {
            cq.sync();
            return Ok(cqe);
        }
        sub.submit_and_wait(1)?;
    }
}

/// CPU time consumed so far by the whole process (all threads, user + system).
pub fn process_cpu() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the `timespec` we own and pass by pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

fn median_min_max(s: &mut [f64]) -> (f64, f64, f64) {
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// One measured feature: variant 0 is "without", the others are "with" variants.
pub struct Feature<'a> {
    pub name: &'a str,
    pub variants: &'a [&'a str],
    /// Bytes moved per operation, for an extra `ns_per_kib` field.
    pub bytes_per_op: Option<usize>,
}

/// Runs `run(variant, ops)` (which returns the time spent in its timed part) `opts.rounds`
/// times per variant, alternating the variants in a rotating order, and prints the results.
pub fn compare(
    opts: &Opts,
    f: &Feature<'_>,
    mut run: impl FnMut(usize, u64) -> io::Result<Duration>,
) -> io::Result<()> {
    let n = f.variants.len();
    // Warm-up and calibration, per variant: double the op count until a run takes a tenth of
    // a round (and at least 64 ops ran); each variant then gets as many ops per round as fill one round.
    let mut ops = vec![0u64; n];
    for (v, ops) in ops.iter_mut().enumerate() {
        let mut k = 4u64;
        let t = loop {
            let t = run(v, k)?;
            // At least 64 ops, so one stall (a 40 ms delayed-ACK wait behind a SEND_ZC
            // notification) cannot pass for the typical cost.
            if (t >= opts.round / 10 && k >= 64) || k >= 1 << 30 {
                break t;
            }
            k *= 2;
        };
        let per_op = (t.as_nanos() as f64 / k as f64).max(1.0);
        *ops = ((opts.round.as_nanos() as f64 / per_op) as u64).max(4);
    }
    let mut wall = vec![Vec::with_capacity(opts.rounds); n];
    let mut cpu = vec![Vec::with_capacity(opts.rounds); n];
    for round in 0..opts.rounds {
        for i in 0..n {
            let v = (round + i) % n;
            let cpu0 = process_cpu()?;
            let t = run(v, ops[v])?;
            let c = process_cpu()?.saturating_sub(cpu0);
            wall[v].push(t.as_nanos() as f64 / ops[v] as f64);
            cpu[v].push(c.as_nanos() as f64 / ops[v] as f64);
        }
    }
    let mut medians = Vec::with_capacity(n);
    for v in 0..n {
        let (med, min, max) = median_min_max(&mut wall[v]);
        let (cmed, cmin, cmax) = median_min_max(&mut cpu[v]);
        medians.push((med, cmed));
        let per_kib = f
            .bytes_per_op
            .map(|b| format!(" ns_per_kib={:.1}", med * 1024.0 / b as f64))
            .unwrap_or_default();
        println!(
            "RESULT feature={} variant={} ns_per_op={med:.1} min={min:.1} max={max:.1}{per_kib} \
             cpu_ns_per_op={cmed:.1} cpu_min={cmin:.1} cpu_max={cmax:.1} ops_per_round={} rounds={}",
            f.name,
            f.variants[v],
            ops[v],
            opts.rounds
        );
    }
    let (base, cbase) = medians[0];
    for (v, &(med, cmed)) in medians.iter().enumerate().skip(1) {
        println!(
            "RATIO feature={} with_vs_without={:.3} with={} without={} delta_ns={:+.1} \
             cpu_with_vs_without={:.3} cpu_delta_ns={:+.1}",
            f.name,
            med / base,
            f.variants[v],
            f.variants[0],
            med - base,
            cmed / cbase,
            cmed - cbase
        );
    }
    Ok(())
}

/// Whether the kernel knows `opcode` (IORING_REGISTER_PROBE).
pub fn opcode_supported(sub: &Submitter<'_>, opcode: u8) -> io::Result<bool> {
    let mut probe = io_uring::Probe::new();
    sub.register_probe(&mut probe)?;
    Ok(probe.is_supported(opcode))
}

/// A connected loopback TCP pair (client, server) with TCP_NODELAY on both ends.
pub fn tcp_pair() -> io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}
