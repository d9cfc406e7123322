//! Per-connection timeouts, checked on the core's periodic tick: no clock is read per message.

use std::time::{Duration, Instant};

use crate::error::CloseReason;

/// The timeouts a listener puts on its connections (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Close a connection that received no byte for this long.
    pub(crate) idle: Option<Duration>,
    /// Close a connection whose frame in progress was started this long ago.
    pub(crate) frame: Option<Duration>,
}

impl Timeouts {
    /// Whether any timeout is set (the core then ticks the connection's session).
    pub(crate) fn any(&self) -> bool {
        self.idle.is_some() || self.frame.is_some()
    }
}

/// Watches one connection. Activity is recorded as a flag per received chunk; each tick turns
/// flags into times, so a timeout fires between its duration and one tick period after it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    timeouts: Timeouts,
    /// Bytes arrived since the last tick.
    active: bool,
    /// When the connection was last seen active (or started, or resumed reading).
    quiet_since: Instant,
    /// When the frame in progress was first seen in progress, and how many messages had been
    /// delivered then (a change means that frame finished and another began).
    frame_since: Option<(Instant, u64)>,
}

impl Watchdog {
    pub(crate) fn new(timeouts: Timeouts, now: Instant) -> Watchdog {
        Watchdog {
            timeouts,
            active: false,
            quiet_since: now,
            frame_since: None,
        }
    }

    /// Bytes arrived.
    #[inline]
    pub(crate) fn saw_data(&mut self) {
        self.active = true;
    }

    /// The periodic check. `in_frame`: part of a frame is held; `delivered`: messages delivered
    /// so far; `paused`: this side stopped reading (the peer cannot be blamed for silence, and
    /// the clocks restart when reading does).
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        in_frame: bool,
        delivered: u64,
        paused: bool,
    ) -> Option<CloseReason> {
        if paused || std::mem::take(&mut self.active) {
            self.quiet_since = now;
        }
        if paused || !in_frame {
            self.frame_since = None;
        } else {
            match self.frame_since {
                Some((_, seen)) if seen == delivered => {}
                _ => self.frame_since = Some((now, delivered)),
            }
        }
        if let (Some(limit), Some((since, _))) = (self.timeouts.frame, self.frame_since) {
            if now.saturating_duration_since(since) >= limit {
                return Some(CloseReason::FrameTimeout(limit));
            }
        }
        if let Some(limit) = self.timeouts.idle {
            if now.saturating_duration_since(self.quiet_since) >= limit {
                return Some(CloseReason::IdleTimeout(limit));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn dog(idle: Option<u32>, frame: Option<u32>, t0: Instant) -> Watchdog {
        Watchdog::new(
            Timeouts {
                idle: idle.map(|ms| MS * ms),
                frame: frame.map(|ms| MS * ms),
            },
            t0,
        )
    }

    #[test]
    fn idle_fires_only_after_a_quiet_period_and_not_while_paused() {
        let t0 = Instant::now();
        let mut d = dog(Some(100), None, t0);
        assert!(d.tick(t0 + 50 * MS, false, 0, false).is_none());
        d.saw_data();
        assert!(d.tick(t0 + 90 * MS, false, 0, false).is_none());
        assert!(d.tick(t0 + 180 * MS, false, 0, false).is_none());
        assert!(matches!(
            d.tick(t0 + 190 * MS, false, 0, false),
            Some(CloseReason::IdleTimeout(t)) if t == 100 * MS
        ));
        // Paused: our silence, not the peer's.
        let mut d = dog(Some(100), None, t0);
        assert!(d.tick(t0 + 500 * MS, false, 0, true).is_none());
        assert!(d.tick(t0 + 550 * MS, false, 0, false).is_none());
        assert!(d.tick(t0 + 600 * MS, false, 0, false).is_some());
    }

    #[test]
    fn frame_timeout_follows_one_frame_not_a_busy_stream() {
        let t0 = Instant::now();
        let mut d = dog(None, Some(100), t0);
        // A busy stream: a frame is always in progress, but a different one each tick.
        for i in 1..20u32 {
            d.saw_data();
            assert!(d
                .tick(t0 + MS * (i * 50), true, u64::from(i), false)
                .is_none());
        }
        // One frame stuck (bytes trickle in: still active, same delivered count).
        let t1 = t0 + 1000 * MS;
        d.saw_data();
        assert!(d.tick(t1, true, 7, false).is_none());
        d.saw_data();
        assert!(d.tick(t1 + 60 * MS, true, 7, false).is_none());
        d.saw_data();
        assert!(matches!(
            d.tick(t1 + 100 * MS, true, 7, false),
            Some(CloseReason::FrameTimeout(t)) if t == 100 * MS
        ));
        // No frame in progress: nothing to time out.
        let mut d = dog(None, Some(100), t0);
        assert!(d.tick(t0 + 1000 * MS, false, 0, false).is_none());
    }
}
