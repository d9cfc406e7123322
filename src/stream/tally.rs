//! [`Tally`]: a count many cores add to, one cache line per core, so that counting costs each
//! core an uncontended relaxed add.

use std::sync::atomic::{AtomicU64, Ordering};

/// One core's slot, alone on its cache line.
#[derive(Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A count kept per core and summed when read.
pub(crate) struct Tally {
    slots: Box<[Slot]>,
}

impl Tally {
    /// A tally for cores `0..cores` (a larger index shares the last slot).
    pub(crate) fn new(cores: usize) -> Tally {
        Tally {
            slots: (0..cores.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds `n` on behalf of core `core`.
    #[inline]
    pub(crate) fn add(&self, core: usize, n: u64) {
        if let Some(slot) = self.slots.get(core).or(self.slots.last()) {
            slot.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The sum over every core.
    pub(crate) fn sum(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn adds_per_core_and_sums_them() {
        let t = Tally::new(2);
        t.add(0, 3);
        t.add(1, 4);
        t.add(9, 1);
        assert_eq!(t.sum(), 8);
    }
}
