//! [`probe`]: what the kernel offers the engine (io_uring availability, the features the engine
//! needs, the backend `Auto` picks), as a [`KernelReport`]. The checks themselves are in
//! `kernel.rs`, shared with ring set-up.

use io_uring::{opcode, register::Probe};

use crate::engine::config::Backend;
use crate::engine::kernel::{io_uring_disabled_sysctl, kernel_release, ktls_available};
use crate::error::StartError;

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
    /// The backend [`Backend::Auto`] chooses here.
    pub auto_backend: Backend,
    /// Kernel TLS: a TCP socket here accepts the `tls` upper-layer protocol (`TCP_ULP`), so
    /// record encryption could be handed to the kernel. Reported only; the engine does not
    /// use it.
    pub ktls: bool,
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
        auto_backend: Backend::IoUring,
        ktls: ktls_available(),
    };
    let setup = crate::engine::uring::build_ring(8, Default::default());
    let (ring, flags) = match setup {
        Ok(setup) => (setup.ring, setup.flags),
        Err(err) => {
            report.io_uring = Some(err);
            report.auto_backend = Backend::Epoll;
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
            report.auto_backend = Backend::Epoll;
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
        writeln!(f, "kernel TLS (kTLS):     {}", yes(self.ktls))?;
        let why = match &self.io_uring {
            None => "io_uring has everything the engine needs".to_string(),
            Some(err) => format!("io_uring cannot be used ({err})"),
        };
        write!(f, "Backend::Auto chooses: {:?} ({why})", self.auto_backend)
    }
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
        // Once a socket took the `tls` ULP, the kernel lists it as available.
        let listed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
            .is_ok_and(|ulps| ulps.split_whitespace().any(|u| u == "tls"));
        assert_eq!(report.ktls, listed, "kTLS probed and listed agree");
        runtime.shutdown();
    }
}
