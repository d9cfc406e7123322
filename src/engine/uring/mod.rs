//! io_uring specifics: ring set-up with the recommended flags (here), the provided-buffer ring
//! (`bufring`), entering through a registered ring descriptor (`enter`), the core's loop
//! (`driver`), what it submits (`ops`, owning each operation in flight through `inflight`, with
//! what connections and listeners have armed in `armed`) and how it reads completions
//! (`complete`).

mod armed;
pub(crate) mod bufring;
mod complete;
pub(crate) mod driver;
pub(crate) mod enter;
mod inflight;
mod ops;

use io_uring::IoUring;

use crate::engine::kernel;
use crate::error::StartError;

/// Which set-up flags the ring ended up with (the first combination the kernel accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetupFlags {
    /// `SQPOLL | SINGLE_ISSUER` (6.0+): a kernel thread submits (asked for with
    /// `RuntimeConfig::sqpoll`).
    SqpollSingleIssuer,
    /// `SQPOLL` alone.
    Sqpoll,
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
            SetupFlags::SqpollSingleIssuer => "SQPOLL | SINGLE_ISSUER",
            SetupFlags::Sqpoll => "SQPOLL",
            SetupFlags::SingleIssuerDeferTaskrun => "SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN",
            SetupFlags::CoopTaskrun => "COOP_TASKRUN",
            SetupFlags::Plain => "(none)",
        }
    }

    /// A kernel thread polls the submission queue.
    pub(crate) fn sqpoll(self) -> bool {
        matches!(self, SetupFlags::SqpollSingleIssuer | SetupFlags::Sqpoll)
    }

    /// Whether `IORING_SETUP_TASKRUN_FLAG` can go with these flags (it needs a cooperative
    /// task-work mode; with `SQPOLL` the kernel thread runs the task work).
    fn takes_taskrun_flag(self) -> bool {
        matches!(
            self,
            SetupFlags::SingleIssuerDeferTaskrun | SetupFlags::CoopTaskrun
        )
    }
}

/// What a core asks of its ring besides the default flags.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RingOptions {
    /// `IORING_SETUP_SQPOLL`, its thread idling this many milliseconds (at least 1).
    pub(crate) sqpoll_idle_ms: Option<u32>,
    /// `IORING_SETUP_TASKRUN_FLAG`: the kernel raises `IORING_SQ_TASKRUN` in the submission
    /// ring's flags when task work waits, so busy polling enters only when there is some.
    pub(crate) taskrun_flag: bool,
}

/// A ring and how it was set up.
pub(crate) struct RingSetup {
    pub(crate) ring: IoUring,
    pub(crate) flags: SetupFlags,
    /// The ring has `IORING_SETUP_TASKRUN_FLAG`.
    pub(crate) taskrun_flag: bool,
    /// Why `SQPOLL`, asked for, was not set up (the kernel's answer to the last attempt).
    pub(crate) sqpoll_refused: Option<std::io::Error>,
}

/// Creates a ring on the calling thread (it must be the only thread that submits to it).
///
/// With `opts.sqpoll_idle_ms`, tries `SQPOLL | SINGLE_ISSUER` then `SQPOLL`; if the kernel
/// refuses both (any error: `EINVAL` for the flags, `EPERM` before 5.13 without
/// `CAP_SYS_NICE`), goes on as without it. Then tries `SINGLE_ISSUER | DEFER_TASKRUN |
/// COOP_TASKRUN` and falls back to fewer flags when the kernel rejects them with `EINVAL`; any
/// other failure is classified into a [`StartError`].
pub(crate) fn build_ring(sq_entries: u32, opts: RingOptions) -> Result<RingSetup, StartError> {
    let cq_entries = sq_entries.saturating_mul(8);
    let sqpoll = [SetupFlags::SqpollSingleIssuer, SetupFlags::Sqpoll];
    let usual = [
        SetupFlags::SingleIssuerDeferTaskrun,
        SetupFlags::CoopTaskrun,
        SetupFlags::Plain,
    ];
    let attempts = match opts.sqpoll_idle_ms {
        Some(_) => &sqpoll[..],
        None => &[],
    };
    let mut sqpoll_refused = None;
    let mut last = None;
    for &flags in attempts.iter().chain(&usual) {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_submit_all();
        match flags {
            SetupFlags::SqpollSingleIssuer | SetupFlags::Sqpoll => {
                builder.setup_sqpoll(opts.sqpoll_idle_ms.unwrap_or(1).max(1));
                if flags == SetupFlags::SqpollSingleIssuer {
                    builder.setup_single_issuer();
                }
            }
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
        let taskrun_flag = opts.taskrun_flag && flags.takes_taskrun_flag();
        if taskrun_flag {
            builder.setup_taskrun_flag();
        }
        match builder.build(sq_entries) {
            Ok(ring) => {
                kernel::check_features(&ring)?;
                return Ok(RingSetup {
                    ring,
                    flags,
                    taskrun_flag,
                    sqpoll_refused,
                });
            }
            Err(err) if flags.sqpoll() => sqpoll_refused = Some(err),
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last = Some(err),
            Err(err) => return Err(kernel::classify_setup_error(err)),
        }
    }
    Err(match last {
        Some(err) => kernel::classify_setup_error(err),
        None => StartError::IoUringUnsupported,
    })
}
