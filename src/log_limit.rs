//! Rate-limited lifecycle logging: at most one event per second for a recurring condition,
//! carrying how many were left out since the last one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The shortest interval between two events of one [`LogLimit`].
const INTERVAL: Duration = Duration::from_secs(1);

/// One recurring condition's limiter; cheap enough for accept paths (one relaxed load when
/// suppressing).
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    /// Milliseconds since the process epoch of the last event, plus one (0: never).
    last: AtomicU64,
    /// Occurrences left out since the last event.
    skipped: AtomicU64,
}

impl LogLimit {
    /// An occurrence: `Some(skipped)` if it should be logged now (with how many were left out
    /// before it), `None` to leave it out.
    pub(crate) fn hit(&self) -> Option<u64> {
        self.hit_at(now_ms())
    }

    fn hit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last - 1) >= INTERVAL.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_counting_the_rest() {
        let limit = LogLimit::default();
        assert_eq!(limit.hit_at(0), Some(0));
        for t in 1..1000 {
            assert_eq!(limit.hit_at(t), None);
        }
        assert_eq!(limit.hit_at(1000), Some(999));
        assert_eq!(limit.hit_at(1500), None);
        assert_eq!(limit.hit_at(2100), Some(1));
    }
}
