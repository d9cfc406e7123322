//! Child processes (spawned, driven by lines, always killed and reaped), CPU pinning,
//! file-descriptor limits and CPU time.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Pins the calling thread (and so every thread it creates afterwards) to one CPU.
/// Failure (fewer CPUs, a restricted cpuset) is ignored: the figures are then just noisier.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a plain bitmask owned by this frame; CPU_SET bounds-checks `cpu`
    // against the mask size, and sched_setaffinity only reads `size_of::<cpu_set_t>()` bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return;
        }
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (256 connections need 512+ descriptors
/// in one process pair). Failure is ignored.
pub fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit only read or write the `rlimit` struct passed to them.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Makes the kernel kill this process when its parent dies, so nothing outlives the bench.
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // The parent may already have gone between fork and prctl.
        if libc::getppid() == 1 {
            std::process::exit(1);
        }
    }
}

/// User + system CPU time of the whole process (all threads, living and exited), in ns.
pub fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass and nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Why no awaited line came.
#[derive(Debug)]
pub enum Wait {
    Timeout,
    /// The child closed its stdout: it exited or crashed. Holds its last stderr line.
    Exited(String),
}

/// A child process spoken to by lines on stdin/stdout. Dropping it kills and reaps it.
pub struct ChildProc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr_tail: Arc<Mutex<Option<String>>>,
}

impl ChildProc {
    /// Starts this same executable with `args`, inside the network namespace `netns` if one
    /// is given (`netns.rs`). Its stderr is forwarded, prefixed by `label`.
    pub fn spawn(
        label: &str,
        args: &[String],
        netns: Option<BorrowedFd<'_>>,
    ) -> std::io::Result<ChildProc> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::netns::spawn(&mut cmd, netns)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name("child-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        let stderr_tail = Arc::new(Mutex::new(None));
        let tail = Arc::clone(&stderr_tail);
        let prefix = label.to_string();
        thread::Builder::new()
            .name("child-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("#   [{prefix}] {line}");
                    *tail.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
                }
            })?;
        Ok(ChildProc {
            label: label.to_string(),
            child,
            stdin,
            lines,
            stderr_tail,
        })
    }

    /// Sends one line to the child's stdin. A dead child is noticed by the next `line`.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            if writeln!(stdin, "{line}")
                .and_then(|_| stdin.flush())
                .is_err()
            {
                self.stdin = None;
            }
        }
    }

    /// The next line of the child's stdout, waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> Result<String, Wait> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(Wait::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(Wait::Exited(self.last_words())),
        }
    }

    /// The first line starting with `prefix` (other lines are skipped), within `timeout`.
    pub fn expect(&mut self, prefixes: &[&str], timeout: Duration) -> Result<String, Wait> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line(left)?;
            if prefixes.iter().any(|p| line.starts_with(p)) {
                return Ok(line);
            }
            eprintln!("#   [{}] unexpected: {line}", self.label);
        }
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The child's last line on stderr (or its exit status) after it died.
    pub fn last_words(&mut self) -> String {
        // Give the stderr forwarder a moment to catch the dying words.
        let deadline = Instant::now() + Duration::from_millis(200);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => break None,
            }
        };
        thread::sleep(Duration::from_millis(20));
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (tail, status) {
            (Some(line), _) => line,
            (None, Some(status)) => status.to_string(),
            (None, None) => "closed its stdout".to_string(),
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time the machine spent on processes (user, nice, system) or lost to the hypervisor
/// (steal) since boot, in ns, and the number of CPUs, from `/proc/stat`. Interrupt time is
/// left out: on loopback most of it is this trial's own packet processing. `None` where
/// unavailable.
pub fn system_busy_ns() -> Option<(u64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let total = lines.next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = total
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    let cpus = lines.filter(|l| l.starts_with("cpu")).count().max(1);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some((busy * (1_000_000_000 / hz), cpus))
}
