//! Pinning follows the process's CPU set: a runtime started under `taskset -c N` (here: an
//! affinity mask set before exec) gets one core per allowed CPU, pinned inside the set.

use std::os::unix::process::CommandExt;
use std::process::Command;

use buffstreams::{Runtime, RuntimeConfig};

const CHILD: &str = "BUFFSTREAMS_CPU_SET_CHILD";

/// The CPUs this process may run on.
fn allowed() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes within it; CPU_ISSET reads
    // within it for indexes below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Runs in the child: starts a default runtime and prints its core count and where each core
/// thread may run.
#[test]
#[ignore = "run by runtime_pins_inside_the_allowed_cpu_set in a restricted child process"]
fn cpu_set_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut pinned = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("buffstreams-cor") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            pinned.push(
                line.trim_start_matches("Cpus_allowed_list:")
                    .trim()
                    .to_string(),
            );
        }
    }
    println!("CORES={} PINNED={}", runtime.cores(), pinned.join(","));
    runtime.shutdown();
}

#[test]
fn runtime_pins_inside_the_allowed_cpu_set() {
    let cpus = allowed();
    let Some(&last) = cpus.last().filter(|_| cpus.len() >= 2) else {
        // CI's machine (BUFFSTREAMS_REQUIRE_IO_URING=1: the full environment, io_uring and at
        // least 2 CPUs) must run it.
        if std::env::var("BUFFSTREAMS_REQUIRE_IO_URING").is_ok_and(|v| v == "1") {
            panic!("needs at least 2 allowed CPUs, have {cpus:?}; BUFFSTREAMS_REQUIRE_IO_URING=1 requires it to run");
        }
        eprintln!("skipped: needs at least 2 allowed CPUs, have {cpus:?}");
        return;
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "cpu_set_child", "--ignored", "--nocapture"])
        .env(CHILD, "1");
    // SAFETY: runs in the forked child before exec and only calls sched_setaffinity, which is
    // async-signal-safe, on a set built on this stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(last, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("CORES=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
    assert_eq!(
        line,
        format!("CORES=1 PINNED={last}"),
        "run under CPU {last} only"
    );
}
