//! io_uring specifics: ring set-up with the recommended flags (here), the provided-buffer ring
//! (`bufring`), entering through a registered ring descriptor (`enter`), the core's loop
//! (`driver`), what it submits (`ops`) and how it reads completions (`complete`).

pub(crate) mod bufring;
mod complete;
pub(crate) mod driver;
pub(crate) mod enter;
mod ops;

use io_uring::IoUring;

use crate::engine::probe;
use crate::error::StartError;

/// Which set-up flags the ring ended up with (the first combination the kernel accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetupFlags {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (6.1+).
    SingleIssuerDeferTaskrun,
    /// `COOP_TASKRUN` (5.19+).
    CoopTaskrun,
    /// No optional flags.
    Plain,
}

impl SetupFlags {
    /// The flags, as the kernel names them.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            SetupFlags::SingleIssuerDeferTaskrun => "SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN",
            SetupFlags::CoopTaskrun => "COOP_TASKRUN",
            SetupFlags::Plain => "(none)",
        }
    }
}

/// Creates a ring on the calling thread (it must be the only thread that submits to it).
///
/// Tries `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` first and falls back to fewer flags when
/// the kernel rejects them with `EINVAL`; any other failure is classified into a [`StartError`].
pub(crate) fn build_ring(sq_entries: u32) -> Result<(IoUring, SetupFlags), StartError> {
    let cq_entries = sq_entries.saturating_mul(8);
    let attempts = [
        SetupFlags::SingleIssuerDeferTaskrun,
        SetupFlags::CoopTaskrun,
        SetupFlags::Plain,
    ];
    let mut last = None;
    for flags in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_submit_all();
        match flags {
            SetupFlags::SingleIssuerDeferTaskrun => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun();
            }
            SetupFlags::CoopTaskrun => {
                builder.setup_coop_taskrun();
            }
            SetupFlags::Plain => {}
        }
        match builder.build(sq_entries) {
            Ok(ring) => {
                probe::check_features(&ring)?;
                return Ok((ring, flags));
            }
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last = Some(err),
            Err(err) => return Err(probe::classify_setup_error(err)),
        }
    }
    Err(match last {
        Some(err) => probe::classify_setup_error(err),
        None => StartError::IoUringUnsupported,
    })
}
