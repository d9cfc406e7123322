//! `buffstreams probe`: what the kernel offers the engine, from `buffstreams::probe()`, and
//! whether this process runs under a seccomp filter (the usual reason io_uring is blocked).

use crate::Failure;

/// Prints the kernel report.
pub fn run() -> Result<(), Failure> {
    let report = buffstreams::probe();
    println!("{report}");
    println!("seccomp:               {}", seccomp());
    Ok(())
}

/// This process's seccomp mode, from `/proc/self/status`.
fn seccomp() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    describe_seccomp(&status)
}

/// The `Seccomp:` line of a `/proc/PID/status` text, in words.
fn describe_seccomp(status: &str) -> String {
    let mode = status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(str::trim);
    match mode {
        Some("0") => "none".into(),
        Some("1") => "strict mode".into(),
        Some("2") => "a filter is installed (it may block io_uring)".into(),
        Some(other) => format!("mode {other}"),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_modes() {
        assert_eq!(describe_seccomp("Name:\tx\nSeccomp:\t0\n"), "none");
        assert!(describe_seccomp("Seccomp:\t2\nSeccomp_filters:\t1\n").contains("filter"));
        assert_eq!(describe_seccomp("Name:\tx\n"), "unknown");
        assert_eq!(describe_seccomp("Seccomp:\t7"), "mode 7");
    }
}
