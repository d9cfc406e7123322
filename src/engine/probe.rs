//! What the kernel offers: io_uring availability, the features the engine needs, and a typed
//! explanation (with the fix) when something is missing.

use std::io;

use io_uring::{opcode, register::Probe, IoUring};

use crate::error::StartError;

/// The oldest kernel the io_uring engine runs on: multishot receive with a provided-buffer ring.
pub const MIN_KERNEL: (u32, u32) = (6, 0);

/// Parses the `major.minor` prefix of a kernel release string such as `6.18.44-fc-v669`.
pub(crate) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's `major.minor`, from `uname(2)`.
pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    parse_release(&kernel_release()?)
}

/// `kernel.io_uring_disabled` (Linux 6.6+): 0 enabled, 1 only for `io_uring_group`, 2 disabled.
fn io_uring_disabled_sysctl() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns an `io_uring_setup` failure into the reason and the fix.
pub(crate) fn classify_setup_error(err: io::Error) -> StartError {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => StartError::IoUringUnsupported,
        Some(libc::EPERM) | Some(libc::EACCES) => match io_uring_disabled_sysctl() {
            Some(value) if value > 0 => StartError::IoUringDisabled { value },
            _ => StartError::IoUringBlocked,
        },
        _ => StartError::Setup(err),
    }
}

/// Checks the kernel version and the opcodes the engine submits.
pub(crate) fn check_features(ring: &IoUring) -> Result<(), StartError> {
    if let Some(version) = kernel_version() {
        if version < MIN_KERNEL {
            return Err(StartError::MissingFeature {
                feature: "multishot recv with a provided-buffer ring",
                needs: "6.0",
            });
        }
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|_| StartError::MissingFeature {
            feature: "IORING_REGISTER_PROBE",
            needs: "5.6",
        })?;
    let needed = [
        (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Send::CODE, "IORING_OP_SEND"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(StartError::MissingFeature {
                feature: name,
                needs: "6.0",
            });
        }
    }
    Ok(())
}

/// What this kernel offers the engine: [`probe`]'s answer.
///
/// ```
/// let report = buffstreams::probe();
/// println!("{report}"); // one line per fact, and the backend `Auto` would pick, with why
/// assert!(report.io_uring.is_none() || report.auto_backend == buffstreams::Backend::Epoll);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct KernelReport {
    /// The kernel release (`uname -r`).
    pub release: String,
    /// `kernel.io_uring_disabled` (Linux 6.6+; `None` where the sysctl does not exist).
    pub io_uring_disabled_sysctl: Option<u32>,
    /// Why the io_uring engine cannot run here (`None`: it can).
    pub io_uring: Option<StartError>,
    /// The ring set-up flags the kernel accepted (`SINGLE_ISSUER | DEFER_TASKRUN | …`).
    pub setup_flags: Option<&'static str>,
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1): completions run only when the core asks.
    pub defer_taskrun: bool,
    /// Multishot accept and receive opcodes.
    pub multishot: bool,
    /// Provided-buffer rings (`IORING_REGISTER_PBUF_RING`, 5.19).
    pub buffer_rings: bool,
    /// Incremental buffer consumption (`IOU_PBUF_RING_INC`, 6.12).
    pub incremental_buffers: bool,
    /// Send/receive bundles (`IORING_FEAT_RECVSEND_BUNDLE`, 6.10).
    pub bundles: bool,
    /// Zero-copy send (`IORING_OP_SEND_ZC`, 6.0).
    pub send_zc: bool,
    /// The backend [`Backend::Auto`](crate::Backend::Auto) chooses here.
    pub auto_backend: crate::Backend,
}

/// Looks at what this kernel offers, the way a runtime starting here would (one small ring,
/// set up and torn down on the calling thread).
pub fn probe() -> KernelReport {
    let release = kernel_release().unwrap_or_else(|| "unknown".into());
    let mut report = KernelReport {
        release,
        io_uring_disabled_sysctl: io_uring_disabled_sysctl(),
        io_uring: None,
        setup_flags: None,
        defer_taskrun: false,
        multishot: false,
        buffer_rings: false,
        incremental_buffers: false,
        bundles: false,
        send_zc: false,
        auto_backend: crate::Backend::IoUring,
    };
    let setup = crate::engine::uring::build_ring(8, Default::default());
    let (ring, flags) = match setup {
        Ok(setup) => (setup.ring, setup.flags),
        Err(err) => {
            report.io_uring = Some(err);
            report.auto_backend = crate::Backend::Epoll;
            return report;
        }
    };
    report.setup_flags = Some(flags.describe());
    report.defer_taskrun = flags == crate::engine::uring::SetupFlags::SingleIssuerDeferTaskrun;
    report.bundles = ring.params().is_feature_recvsend_bundle();
    let mut probe = Probe::new();
    if ring.submitter().register_probe(&mut probe).is_ok() {
        report.multishot = probe.is_supported(opcode::AcceptMulti::CODE)
            && probe.is_supported(opcode::RecvMulti::CODE);
        report.send_zc = probe.is_supported(opcode::SendZc::CODE);
    }
    match crate::engine::uring::bufring::BufRing::new(&ring, 2, 4096, 0) {
        Ok(bufs) => {
            report.buffer_rings = true;
            report.incremental_buffers = bufs.incremental();
            // The ring goes first: the kernel lets go of the buffer ring with it.
            drop(ring);
            drop(bufs);
        }
        Err(err) => {
            report.io_uring = Some(StartError::Setup(err));
            report.auto_backend = crate::Backend::Epoll;
        }
    }
    report
}

impl std::fmt::Display for KernelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "kernel:                {}", self.release)?;
        match self.io_uring_disabled_sysctl {
            Some(v) => writeln!(f, "io_uring_disabled:     {v}")?,
            None => writeln!(f, "io_uring_disabled:     (no such sysctl)")?,
        }
        match &self.io_uring {
            None => writeln!(f, "io_uring:              available")?,
            Some(err) => writeln!(f, "io_uring:              unavailable: {err}")?,
        }
        if self.io_uring.is_none() {
            writeln!(
                f,
                "setup flags:           {}",
                self.setup_flags.unwrap_or("-")
            )?;
            writeln!(f, "defer taskrun:         {}", yes(self.defer_taskrun))?;
            writeln!(f, "multishot accept/recv: {}", yes(self.multishot))?;
            writeln!(f, "buffer rings:          {}", yes(self.buffer_rings))?;
            writeln!(
                f,
                "incremental buffers:   {}",
                yes(self.incremental_buffers)
            )?;
            writeln!(f, "bundles:               {}", yes(self.bundles))?;
            writeln!(f, "send zero-copy:        {}", yes(self.send_zc))?;
        }
        let why = match &self.io_uring {
            None => "io_uring has everything the engine needs".to_string(),
            Some(err) => format!("io_uring cannot be used ({err})"),
        };
        write!(f, "Backend::Auto chooses: {:?} ({why})", self.auto_backend)
    }
}

/// The running kernel's release string, from `uname(2)`.
fn kernel_release() -> Option<String> {
    // SAFETY: `utsname` is plain old data; zeroed is a valid value for it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a live, writable utsname for uname to fill.
    if syscall!(uname(&mut uts)).is_err() {
        return None;
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_agrees_with_what_a_runtime_gets() {
        let report = probe();
        assert!(!report.release.is_empty());
        let runtime = crate::Runtime::new(crate::RuntimeConfig {
            cores: 1,
            pin: false,
            ..crate::RuntimeConfig::default()
        })
        .unwrap();
        assert_eq!(runtime.backend(), report.auto_backend);
        if report.io_uring.is_none() {
            assert!(report.multishot && report.buffer_rings);
        }
        assert!(report.to_string().contains("Backend::Auto chooses"));
        runtime.shutdown();
    }

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn classifies_setup_errors() {
        assert!(matches!(
            classify_setup_error(io::Error::from_raw_os_error(libc::ENOSYS)),
            StartError::IoUringUnsupported
        ));
        assert!(matches!(
            classify_setup_error(io::Error::from_raw_os_error(libc::ENOMEM)),
            StartError::Setup(_)
        ));
        let eperm = classify_setup_error(io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(
            eperm,
            StartError::IoUringBlocked | StartError::IoUringDisabled { .. }
        ));
    }
}
