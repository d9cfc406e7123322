//! The assembly budget's admission, waiting and eviction, without a decoder.

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
fn the_pressure_hook_runs_once_each_time_half_the_limit_is_reached() {
    let budget = AssemblyBudget::new(100);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    budget.on_pressure(Box::new(move || {
        r.fetch_add(1, Ordering::Relaxed);
    }));
    assert!(budget.try_reserve(30));
    assert_eq!(runs.load(Ordering::Relaxed), 0);
    budget.charge(20); // frames and held bytes together reach half
    assert!(budget.try_reserve(10));
    assert_eq!(runs.load(Ordering::Relaxed), 1, "once while it lasts");
    budget.release(40);
    budget.uncharge(20);
    assert!(!budget.under_pressure());
    assert!(budget.try_reserve(50));
    assert_eq!(runs.load(Ordering::Relaxed), 2, "again when it comes back");
}

#[test]
fn reserve_release_and_wake_once_per_registration() {
    let budget = AssemblyBudget::new(100);
    assert!(budget.try_reserve(60));
    assert!(!budget.try_reserve(41));
    let count = Arc::new(Count(AtomicU32::new(0)));
    let stake = budget.stake(Waker::from(count.clone()));
    assert!(!budget.reserve_or_wait(41, &stake));
    assert!(!budget.reserve_or_wait(41, &stake)); // registered once
    budget.release(20);
    assert_eq!(count.0.load(Ordering::Relaxed), 1);
    budget.release(0);
    budget.release(10);
    assert_eq!(count.0.load(Ordering::Relaxed), 1); // nobody waits any more
    assert!(budget.try_reserve(70));
    assert_eq!(budget.used(), 100);
    assert!(!budget.try_reserve(usize::MAX));
}

#[test]
fn close_largest_evicts_the_biggest_other_holder_once() {
    let budget = AssemblyBudget::with_policy(100, BudgetPolicy::CloseLargest);
    let counts: Vec<Arc<Count>> = (0..3).map(|_| Arc::new(Count(AtomicU32::new(0)))).collect();
    let stakes: Vec<Arc<Stake>> = counts
        .iter()
        .map(|c| budget.stake(Waker::from(c.clone())))
        .collect();
    for (stake, bytes) in stakes.iter().zip([30, 60, 0]) {
        assert!(budget.try_reserve(bytes));
        stake.add(bytes);
    }
    // The third needs 20: the second (60 bytes) is told to go, and woken.
    assert!(!budget.reserve_or_wait(20, &stakes[2]));
    assert!(stakes[1].evicted() && !stakes[0].evicted());
    assert_eq!(counts[1].0.load(Ordering::Relaxed), 1);
    // Asking again evicts the next largest, not the same one twice.
    assert!(!budget.reserve_or_wait(20, &stakes[2]));
    assert!(stakes[0].evicted());
    // The Wait policy never evicts.
    let patient = AssemblyBudget::new(10);
    let a = patient.stake(Waker::from(counts[0].clone()));
    let b = patient.stake(Waker::from(counts[1].clone()));
    assert!(patient.try_reserve(10));
    a.add(10);
    assert!(!patient.reserve_or_wait(5, &b));
    assert!(!a.evicted());
}

#[test]
fn a_stake_waits_in_the_list_once_however_often_it_asks() {
    let budget = AssemblyBudget::new(100);
    assert!(budget.try_reserve(100));
    let count = Arc::new(Count(AtomicU32::new(0)));
    let stake = budget.stake(Waker::from(count.clone()));
    let others: Vec<_> = (0..500)
        .map(|_| budget.stake(Waker::from(Arc::new(Count(AtomicU32::new(0))))))
        .collect();
    for _ in 0..1000 {
        assert!(!budget.reserve_or_wait(1, &stake));
    }
    for other in &others {
        assert!(!budget.reserve_or_wait(1, other));
        assert!(!budget.reserve_or_wait(1, other));
    }
    assert_eq!(lock(&budget.waiters).len(), 501, "each stake once");
    budget.release(10);
    assert_eq!(count.0.load(Ordering::Relaxed), 1, "woken once");
    assert!(lock(&budget.waiters).is_empty());
    // Out of the list now: asking again puts it back, and the next release wakes it again.
    assert!(budget.try_reserve(10));
    assert!(!budget.reserve_or_wait(1, &stake));
    assert_eq!(lock(&budget.waiters).len(), 1);
    budget.release(1);
    assert_eq!(count.0.load(Ordering::Relaxed), 2);
}
