//! How other threads tell a core that work is waiting, without a lost wake-up and without a
//! system call while the core is awake.
//!
//! A sender publishes its work (under the core's command lock), then [`Doorbell::ring`]s:
//! `pending` goes up, and only if the core said it is about to sleep does the sender pay for
//! the wake-up (one eventfd write, by exactly one sender). The core, before it blocks, calls
//! [`Doorbell::about_to_sleep`], which raises `sleeping` and then looks at `pending`. The two
//! flags form a Dekker pair: each side writes one flag, then reads the other. Every access is a
//! read-modify-write, which reads the latest value and synchronises with the one before it, so
//! whichever side comes second on `sleeping` sees the other's write: either the sender sees
//! `sleeping` and wakes the core, or the core sees `pending` and does not block. (A plain
//! `SeqCst` store then load is enough on the hardware, but not in `loom`'s model, which treats
//! `SeqCst` as acquire/release; the first model of this file, written that way, lost a wake-up
//! there.) `loom` checks it, in CI:
//! `RUSTFLAGS="--cfg loom" cargo test --manifest-path ci/loom/Cargo.toml`.
//!
//! A core that busy polls (`RuntimeConfig::busy_poll`) first spins on [`Doorbell::peek`], a
//! plain load, with `sleeping` still down: senders meanwhile only raise `pending` and write no
//! eventfd, and the spin sees `pending` and takes the work at the top of its next turn. Only
//! when the spin gives up does the core go through `about_to_sleep` and block, as above; the
//! spin writes nothing, so it adds no interleaving the hand-off has to survive (the model
//! below spins too).

#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicBool, Ordering};

/// The two flags of the hand-off: see the module docs.
#[derive(Debug)]
pub(crate) struct Doorbell {
    /// Work was published since the core last took it.
    pending: AtomicBool,
    /// The core may block: the next sender must wake it.
    sleeping: AtomicBool,
}

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell {
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
        }
    }

    /// Sender, after publishing its work: returns `true` if this sender must wake the core
    /// (it is or is about to be blocked, and no other sender has woken it yet).
    #[inline]
    pub(crate) fn ring(&self) -> bool {
        self.pending.swap(true, Ordering::SeqCst);
        self.sleeping.swap(false, Ordering::SeqCst)
    }

    /// Core: takes the pending flag; `true` means work was published since the last take.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Core, busy polling before it announces sleep: whether work was published since the last
    /// [`take`](Doorbell::take). Only reads: it neither takes the work nor wakes anyone.
    #[inline]
    pub(crate) fn peek(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Core, before blocking: `false` if work arrived meanwhile (then it must not block, and
    /// calls [`Doorbell::awake`]). While `sleeping` is up, a sender's [`ring`](Doorbell::ring)
    /// returns `true`.
    #[inline]
    pub(crate) fn about_to_sleep(&self) -> bool {
        self.sleeping.swap(true, Ordering::SeqCst);
        !self.pending.fetch_or(false, Ordering::SeqCst)
    }

    /// Core: running again (a wake-up sent meanwhile is only a spare one).
    #[inline]
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! The hand-off between two senders and a core, with the eventfd as a counter. Loom runs
    //! every interleaving (and every outcome the memory model allows); a lost wake-up shows as a
    //! core that waits forever for a count that never comes, which loom reports.

    use super::Doorbell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    struct Core {
        bell: Doorbell,
        commands: Mutex<Vec<u32>>,
        /// The eventfd's counter.
        eventfd: AtomicUsize,
        /// Eventfd writes in all, and the core's announcements of sleep.
        writes: AtomicUsize,
        announced: AtomicUsize,
    }

    fn new_core() -> Arc<Core> {
        Arc::new(Core {
            bell: Doorbell::new(),
            commands: Mutex::new(Vec::new()),
            eventfd: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            announced: AtomicUsize::new(0),
        })
    }

    fn send(core: &Core, cmd: u32) {
        core.commands.lock().unwrap().push(cmd);
        if core.bell.ring() {
            core.eventfd.fetch_add(1, Ordering::SeqCst);
            core.writes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The core's loop: take what is published; when there is nothing, announce sleep and
    /// block on the eventfd (a spin that yields to loom) unless work arrived meanwhile.
    fn run_core(core: &Core, expected: usize) -> Vec<u32> {
        run_spinning_core(core, expected, 0)
    }

    /// The loop of a core that busy polls: before it announces sleep, it peeks at the pending
    /// flag `spins` times (a read, and a yield standing for the spin's other checks), taking
    /// the work if it shows; then it announces sleep and blocks on the eventfd (a spin that
    /// yields to loom) unless work arrived meanwhile. With no spins, a core that does not poll.
    fn run_spinning_core(core: &Core, expected: usize, spins: usize) -> Vec<u32> {
        let mut got = Vec::new();
        while got.len() < expected {
            if core.bell.take() {
                got.append(&mut core.commands.lock().unwrap());
                continue;
            }
            if (0..spins).any(|_| {
                let seen = core.bell.peek();
                thread::yield_now();
                seen
            }) {
                continue;
            }
            core.announced.fetch_add(1, Ordering::SeqCst);
            if core.bell.about_to_sleep() {
                // Blocked in the kernel until a sender writes the eventfd.
                while core.eventfd.load(Ordering::SeqCst) == 0 {
                    thread::yield_now();
                }
                core.eventfd.store(0, Ordering::SeqCst);
            }
            core.bell.awake();
        }
        got
    }

    /// Every interleaving with up to 3 preemptions (the usual bound: bugs of this kind need
    /// one or two, and the full space of three threads does not finish in minutes).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    /// Two senders and a core that polls `spins` times before it sleeps: both messages arrive.
    fn two_senders_reach_the_core(spins: usize) {
        model(move || {
            let core = new_core();
            let senders: Vec<_> = (0..2u32)
                .map(|i| {
                    let core = core.clone();
                    thread::spawn(move || send(&core, i))
                })
                .collect();
            let mut got = run_spinning_core(&core, 2, spins);
            for s in senders {
                s.join().unwrap();
            }
            got.sort_unstable();
            assert_eq!(got, [0, 1]);
        });
    }

    #[test]
    fn no_lost_wake_up_with_two_senders() {
        two_senders_reach_the_core(0);
    }

    #[test]
    fn no_lost_wake_up_when_the_core_spins_before_sleeping() {
        two_senders_reach_the_core(2);
    }

    #[test]
    fn a_sender_after_the_core_slept_wakes_it_once() {
        model(|| {
            let core = new_core();
            let c = core.clone();
            let sender = thread::spawn(move || {
                send(&c, 7);
                send(&c, 8);
            });
            let got = run_core(&core, 2);
            sender.join().unwrap();
            assert_eq!(got, [7, 8], "one sender's commands in order");
            assert!(
                core.writes.load(Ordering::SeqCst) <= core.announced.load(Ordering::SeqCst),
                "at most one sender pays for a wake-up per announced sleep"
            );
        });
    }
}
