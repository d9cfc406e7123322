//! A memory budget for partly received frames, shared by many decoders.
//!
//! A [`Decoder`](super::Decoder) given a budget reserves a frame's announced length from it
//! before assembling that frame (and a delimited message's bytes as they arrive), and returns
//! them once the frame is delivered or the decoder is dropped. When the budget cannot cover a
//! frame, the decoder stops in front of it and registers a [`Waker`], woken when some memory is
//! returned: the caller stops reading that stream until then. Frames already admitted can always
//! finish, so streams waiting for the budget wait only for others' frames to complete.
//!
//! This knows nothing about sockets: a listener gives one budget to all its connections' decoders,
//! and turns the wake-up into "read this connection again".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

/// Bytes that partly received frames may hold across every decoder sharing it.
///
/// ```
/// use std::ops::ControlFlow;
/// use std::sync::Arc;
/// use std::task::{Wake, Waker};
/// use buffstreams::frame::{AssemblyBudget, Codec, Decoder, Framing};
///
/// struct ReadAgain; // a real waker would make its connection read again
/// impl Wake for ReadAgain {
///     fn wake(self: Arc<Self>) {}
/// }
/// let waker = Waker::from(Arc::new(ReadAgain));
///
/// let budget = Arc::new(AssemblyBudget::new(1000));
/// let codec = Codec::new(Framing::U32Be, 4096)?;
/// let mut a = Decoder::with_budget(codec, budget.clone(), waker.clone());
/// let mut b = Decoder::with_budget(codec, budget.clone(), waker);
///
/// // `a` starts a 600-byte frame: admitted, 600 bytes reserved.
/// assert_eq!(a.decode(&[0, 0, 2, 0x58, 1, 2], |_| ControlFlow::Continue(()))?, 6);
/// assert_eq!(budget.used(), 600);
/// // `b` starts a 500-byte frame: over the budget, so `b` stops in front of it.
/// assert_eq!(b.decode(&[0, 0, 1, 0xf4, 1], |_| ControlFlow::Continue(()))?, 0);
/// assert!(b.waiting_for_budget());
/// # Ok::<(), buffstreams::frame::FrameError>(())
/// ```
#[derive(Debug)]
pub struct AssemblyBudget {
    limit: usize,
    used: AtomicUsize,
    /// Decoders that found the budget short, woken (all of them) when memory comes back.
    waiters: Mutex<Vec<Waker>>,
}

impl AssemblyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> AssemblyBudget {
        AssemblyBudget {
            limit,
            used: AtomicUsize::new(0),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` if that stays within the limit.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Returns `bytes` reserved earlier and wakes every waiting decoder.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        let waiters = std::mem::take(&mut *self.lock());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Registers `waker` to be woken when memory is returned, unless `bytes` fit now; returns
    /// whether they were reserved after all.
    ///
    /// Checking again after registering closes the race with a `release` that ran between the
    /// caller's failed reservation and its registration.
    pub(crate) fn reserve_or_wait(&self, bytes: usize, waker: &Waker) -> bool {
        {
            let mut waiters = self.lock();
            if !waiters.iter().any(|w| w.will_wake(waker)) {
                waiters.push(waker.clone());
            }
        }
        self.try_reserve(bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A waker that panicked cannot leave the list inconsistent: it is a plain Vec.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicU32);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn reserve_release_and_wake_once_per_registration() {
        let budget = AssemblyBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(41));
        let count = Arc::new(Count(AtomicU32::new(0)));
        let waker = Waker::from(count.clone());
        assert!(!budget.reserve_or_wait(41, &waker));
        assert!(!budget.reserve_or_wait(41, &waker)); // registered once
        budget.release(20);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        budget.release(0);
        budget.release(10);
        assert_eq!(count.0.load(Ordering::Relaxed), 1); // nobody waits any more
        assert!(budget.try_reserve(70));
        assert_eq!(budget.used(), 100);
        assert!(!budget.try_reserve(usize::MAX));
    }
}
