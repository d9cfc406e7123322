//! A memory budget for partly received frames, shared by many decoders.
//!
//! A [`Decoder`](crate::Decoder) given a budget reserves a frame's announced length from it
//! before assembling that frame (and a delimited message's bytes as they arrive), and returns
//! them once the frame is delivered or the decoder is dropped. When the budget cannot cover a
//! frame, the decoder stops in front of it and registers a [`Waker`], woken when some memory is
//! returned: the caller stops reading that stream until then. Frames already admitted can always
//! finish, so streams waiting for the budget wait only for others' frames to complete.
//!
//! This knows nothing about sockets: a listener gives one budget to all its connections' decoders,
//! and turns the wake-up into "read this connection again".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Waker;

/// What happens when an [`AssemblyBudget`] cannot cover a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BudgetPolicy {
    /// The stream that needs more waits (stops reading) until memory is returned. Frames in
    /// progress elsewhere finish, or time out, first.
    #[default]
    Wait,
    /// As `Wait`, and the stream holding the most is told to give up
    /// ([`Decoder::evicted`](crate::Decoder::evicted)): its owner closes it, which returns its
    /// memory.
    CloseLargest,
}

/// One decoder's share of a budget: what it reserved, and whether it was told to give it up.
#[derive(Debug)]
pub(crate) struct Stake {
    reserved: AtomicUsize,
    evicted: AtomicBool,
    /// In the budget's waiters list (read and written under that list's lock): a stake waits
    /// there once, however often it asks, so registering costs O(1) with any number waiting.
    queued: AtomicBool,
    /// Woken when the budget has room again (or this stake was evicted).
    pub(crate) waker: Waker,
}

impl Stake {
    pub(crate) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, bytes: usize) {
        self.reserved.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes everything reserved (to release it).
    pub(crate) fn take(&self) -> usize {
        self.reserved.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// Bytes that partly received frames may hold across every decoder sharing it.
///
/// ```
/// use std::ops::ControlFlow;
/// use std::sync::Arc;
/// use std::task::{Wake, Waker};
/// use buffstreams_frame::{AssemblyBudget, Codec, Decoder, Framing};
///
/// struct ReadAgain; // a real waker would make its connection read again
/// impl Wake for ReadAgain {
///     fn wake(self: Arc<Self>) {}
/// }
/// let waker = Waker::from(Arc::new(ReadAgain));
///
/// let budget = Arc::new(AssemblyBudget::new(100_000));
/// let codec = Codec::new(Framing::U32Be, 1 << 20)?;
/// let mut a = Decoder::with_budget(codec, budget.clone(), waker.clone());
/// let mut b = Decoder::with_budget(codec, budget.clone(), waker);
///
/// // `a` starts a 60,000-byte frame: admitted, 60,000 bytes reserved.
/// let head = |len: u32| len.to_be_bytes();
/// assert_eq!(a.decode(&[&head(60_000)[..], &[1, 2]].concat(), |_| ControlFlow::Continue(()))?, 6);
/// assert_eq!(budget.used(), 60_000);
/// // `b` starts a 50,000-byte frame: over the budget, so `b` stops in front of it.
/// assert_eq!(b.decode(&[&head(50_000)[..], &[1]].concat(), |_| ControlFlow::Continue(()))?, 0);
/// assert!(b.waiting_for_budget());
/// // Frames of up to 16 KiB need no budget.
/// assert_eq!(b.decode(&[0, 0, 0x10, 0, 1], |_| ControlFlow::Continue(()))?, 5);
/// # Ok::<(), buffstreams_frame::FrameError>(())
/// ```
#[derive(Debug)]
pub struct AssemblyBudget {
    limit: usize,
    used: AtomicUsize,
    /// Received bytes stopped streams keep (see `charge`).
    held: AtomicUsize,
    /// Decoders that found the budget short, each once, woken (all of them) when memory comes
    /// back.
    waiters: Mutex<Vec<Arc<Stake>>>,
    /// Whether `waiters` may be non-empty: a release skips the lock when nobody waits.
    waiting: AtomicBool,
    policy: BudgetPolicy,
    /// With [`BudgetPolicy::CloseLargest`], every decoder's stake (dead ones pruned now and
    /// then).
    stakes: Mutex<Vec<Weak<Stake>>>,
    /// Under pressure since the hook last ran (cleared when it ends).
    pressured: AtomicBool,
    on_pressure: PressureHook,
}

/// Called when the budget comes under pressure (see [`AssemblyBudget::on_pressure`]).
#[derive(Default)]
struct PressureHook(OnceLock<Box<dyn Fn() + Send + Sync>>);

impl std::fmt::Debug for PressureHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PressureHook(set)"
        } else {
            "PressureHook"
        })
    }
}

impl AssemblyBudget {
    /// A budget of `limit` bytes; a stream it cannot cover waits.
    ///
    /// ```
    /// use buffstreams_frame::AssemblyBudget;
    /// let budget = AssemblyBudget::new(64 << 20);
    /// assert_eq!((budget.limit(), budget.used()), (64 << 20, 0));
    /// ```
    pub fn new(limit: usize) -> AssemblyBudget {
        AssemblyBudget::with_policy(limit, BudgetPolicy::Wait)
    }

    /// A budget of `limit` bytes with the given policy for streams it cannot cover.
    ///
    /// ```
    /// use buffstreams_frame::{AssemblyBudget, BudgetPolicy};
    /// let budget = AssemblyBudget::with_policy(64 << 20, BudgetPolicy::CloseLargest);
    /// assert_eq!(budget.policy(), BudgetPolicy::CloseLargest);
    /// ```
    pub fn with_policy(limit: usize, policy: BudgetPolicy) -> AssemblyBudget {
        AssemblyBudget {
            limit,
            used: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            waiters: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            policy,
            stakes: Mutex::new(Vec::new()),
            pressured: AtomicBool::new(false),
            on_pressure: PressureHook::default(),
        }
    }

    /// What happens when the budget cannot cover a frame.
    pub fn policy(&self) -> BudgetPolicy {
        self.policy
    }

    /// A new decoder's stake, woken through `waker`.
    pub(crate) fn stake(&self, waker: Waker) -> Arc<Stake> {
        let stake = Arc::new(Stake {
            reserved: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            waker,
        });
        if self.policy == BudgetPolicy::CloseLargest {
            let mut stakes = lock(&self.stakes);
            if stakes.len() >= 64 && stakes.len().is_power_of_two() {
                stakes.retain(|s| s.strong_count() > 0);
            }
            stakes.push(Arc::downgrade(&stake));
        }
        stake
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Sets what to do when the budget comes under pressure (frames reserved and bytes held
    /// reach half the limit, see [`under_pressure`](Self::under_pressure)): called once each
    /// time it does, on the thread that pushed it there, so it must be quick and must not call
    /// back into the budget. A `buffstreams` listener asks its cores to bring every receive
    /// within its credit.
    ///
    /// Only the first hook set is kept; later calls do nothing.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use buffstreams_frame::AssemblyBudget;
    ///
    /// let budget = AssemblyBudget::new(1000);
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let counter = calls.clone();
    /// budget.on_pressure(Box::new(move || {
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// }));
    /// budget.charge(600); // past half the limit: the hook runs
    /// budget.charge(100); // still under pressure: it does not run again
    /// budget.uncharge(700);
    /// budget.charge(500); // under pressure anew
    /// assert_eq!(calls.load(Ordering::Relaxed), 2);
    /// ```
    pub fn on_pressure(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_pressure.0.set(hook);
    }

    /// Reserves `bytes` if that stays within the limit.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let reserved = self
            .used
            // SeqCst (free for read-modify-writes on x86): see `release`.
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if reserved {
            self.pressure_may_rise();
        }
        reserved
    }

    /// Runs the pressure hook if the budget has just come under pressure.
    fn pressure_may_rise(&self) {
        if self.under_pressure() && !self.pressured.swap(true, Ordering::Relaxed) {
            if let Some(hook) = self.on_pressure.0.get() {
                hook();
            }
        }
    }

    /// Notes that the pressure ended, if it did (the hook runs again when it comes back).
    fn pressure_may_fall(&self) {
        if self.pressured.load(Ordering::Relaxed) && !self.under_pressure() {
            self.pressured.store(false, Ordering::Relaxed);
        }
    }

    /// Counts `bytes` of received data that stopped streams keep (returned by
    /// [`uncharge`](Self::uncharge)): a reader that stops feeding its decoder (its consumer is
    /// slow, or the decoder is [waiting for the budget](crate::Decoder::waiting_for_budget))
    /// charges what it already received and has not decoded. They exist already, so nothing
    /// refuses them; they do not hold up frames either (a stream waiting for a frame's admission
    /// would otherwise wait for its own bytes), but they count in
    /// [`under_pressure`](Self::under_pressure).
    ///
    /// ```
    /// use buffstreams_frame::AssemblyBudget;
    /// let budget = AssemblyBudget::new(1000);
    /// budget.charge(500);
    /// assert_eq!((budget.held(), budget.used(), budget.under_pressure()), (500, 0, true));
    /// budget.uncharge(500);
    /// assert_eq!((budget.held(), budget.under_pressure()), (0, false));
    /// ```
    pub fn charge(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        self.pressure_may_rise();
    }

    /// Returns `bytes` counted by [`charge`](Self::charge), once they are decoded or dropped.
    /// Uncharge only what was charged: the count is not checked.
    pub fn uncharge(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        self.pressure_may_fall();
    }

    /// Bytes of received data that stopped streams keep now (see [`charge`](Self::charge)).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether frames reserved ([`used`](Self::used)) and bytes held ([`held`](Self::held))
    /// together reach half the limit: streams should then be handed little beyond the frame
    /// they are assembling ([`Decoder::frame_remaining`](crate::Decoder::frame_remaining)).
    pub fn under_pressure(&self) -> bool {
        self.used().saturating_add(self.held()) >= self.limit / 2
    }

    /// Returns `bytes` reserved earlier and wakes every waiting decoder.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        self.pressure_may_fall();
        // All SeqCst, with `reserve_or_wait`'s flag store and its reservation attempt (a
        // store-then-load on each side): either it sees the memory returned here, or this sees
        // its registration.
        if !self.waiting.load(Ordering::SeqCst) {
            return;
        }
        let waiters = {
            let mut waiters = lock(&self.waiters);
            self.waiting.store(false, Ordering::SeqCst);
            // Cleared under the lock: a stake that asks again after this finds itself out of
            // the list and goes back in.
            for stake in waiters.iter() {
                stake.queued.store(false, Ordering::Relaxed);
            }
            std::mem::take(&mut *waiters)
        };
        for stake in waiters {
            stake.waker.wake_by_ref();
        }
    }

    /// Registers `stake`'s waker to be woken when memory is returned, unless `bytes` fit now;
    /// returns whether they were reserved after all. Under [`BudgetPolicy::CloseLargest`], a
    /// failure also evicts the largest other stake.
    ///
    /// Checking again after registering closes the race with a `release` that ran between the
    /// caller's failed reservation and its registration.
    pub(crate) fn reserve_or_wait(&self, bytes: usize, stake: &Arc<Stake>) -> bool {
        {
            let mut waiters = lock(&self.waiters);
            if !stake.queued.swap(true, Ordering::Relaxed) {
                waiters.push(stake.clone());
            }
            self.waiting.store(true, Ordering::SeqCst);
        }
        if self.try_reserve(bytes) {
            return true;
        }
        if self.policy == BudgetPolicy::CloseLargest {
            self.evict_largest(stake);
        }
        false
    }

    /// Tells the stake holding the most (other than `except`, and not already told) to give
    /// up, and wakes it.
    fn evict_largest(&self, except: &Arc<Stake>) {
        let victim = {
            let mut stakes = lock(&self.stakes);
            stakes.retain(|s| s.strong_count() > 0);
            stakes
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|s| !Arc::ptr_eq(s, except) && !s.evicted() && s.reserved() > 0)
                .max_by_key(|s| s.reserved())
        };
        if let Some(victim) = victim {
            victim.evicted.store(true, Ordering::Relaxed);
            victim.waker.wake_by_ref();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only plain Vec pushes, retains and takes happen under these locks: a panic cannot leave
    // one inconsistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
