//! The CPUs this process may run on (`sched_getaffinity`), for the default core count and
//! pinning: under `taskset -c 2,3` or a cgroup cpuset, core 0 goes to CPU 2, not CPU 0.

use std::sync::OnceLock;

/// The CPUs the process may run on, ascending (never empty: `[0]` if the set cannot be read).
///
/// Read once, from the process's main thread (`sched_getaffinity(getpid())`), so a caller on a
/// thread already pinned to one CPU (say, a core thread starting another runtime) still sees
/// the whole set.
pub(crate) fn allowed_cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        let cpus = read_affinity();
        if cpus.is_empty() {
            vec![0]
        } else {
            cpus
        }
    })
}

fn read_affinity() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: getpid has no arguments; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into `set`, a live local of that size.
    let pid = syscall!(getpid()).unwrap_or(0);
    if syscall!(sched_getaffinity(
        pid,
        std::mem::size_of::<libc::cpu_set_t>(),
        &mut set
    ))
    .is_err()
    {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads within `set` for every index below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes within `set` (cpu < CPU_SETSIZE, checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity reads size_of::<cpu_set_t>() bytes from `set`, a live local;
    // pid 0 applies to this thread only.
    syscall!(sched_setaffinity(
        0,
        std::mem::size_of::<libc::cpu_set_t>(),
        &set
    ))
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowed_set_is_sorted_and_includes_where_we_run() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
        // SAFETY: sched_getcpu has no arguments.
        if let Ok(here) = syscall!(sched_getcpu()) {
            assert!(cpus.contains(&(here as usize)), "{here} not in {cpus:?}");
        }
    }
}
