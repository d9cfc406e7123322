//! Numbering an acknowledged connection's frames on the listener: which to drop (delivered
//! already), which to flag (possibly delivered by an earlier process), and how far delivery got.
//! Called per message on the owning core: plain integer work, no lock.

/// Where a delivered message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Its sequence number in its writer's session.
    pub(crate) seq: u64,
    /// An earlier listener process may have delivered it.
    pub(crate) dup: bool,
}

/// One connection's numbering (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The next frame's number.
    next: u64,
    /// Frames up to this one were accepted already: dropped.
    skip_through: u64,
    /// Frames before this one are flagged.
    flag_before: u64,
    /// The last frame accepted (delivered, or queued on a channel).
    pub(crate) accepted: u64,
    /// The last frame delivered (a handler returned).
    pub(crate) delivered: u64,
    /// Frames dropped as delivered already.
    pub(crate) dropped: u64,
    /// Frames delivered flagged.
    pub(crate) flagged: u64,
}

impl Sequencer {
    /// Frames from `first_seq` on; those up to `skip_through` are dropped, those before
    /// `flag_before` flagged.
    pub(crate) fn new(first_seq: u64, skip_through: u64, flag_before: u64) -> Sequencer {
        Sequencer {
            next: first_seq,
            skip_through,
            flag_before,
            accepted: first_seq.saturating_sub(1).max(skip_through),
            delivered: first_seq.saturating_sub(1).max(skip_through),
            ..Sequencer::default()
        }
    }

    /// The next frame: `None` if it was delivered already (drop it).
    #[inline]
    pub(crate) fn next(&mut self) -> Option<Mark> {
        let seq = self.next;
        self.next += 1;
        if seq <= self.skip_through {
            self.dropped += 1;
            return None;
        }
        let dup = seq < self.flag_before;
        self.flagged += u64::from(dup);
        self.accepted = seq;
        Some(Mark { seq, dup })
    }

    /// The application has the message `seq` (its handler returned).
    #[inline]
    pub(crate) fn delivered(&mut self, seq: u64) {
        self.delivered = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_what_was_accepted_and_flags_what_an_earlier_process_may_have_had() {
        // Known session: 1..=5 accepted, the writer resumes at 3.
        let mut s = Sequencer::new(3, 5, 0);
        assert_eq!(s.next(), None);
        assert_eq!(s.next(), None);
        assert_eq!(s.next(), None);
        assert_eq!(s.next(), Some(Mark { seq: 6, dup: false }));
        assert_eq!(s.dropped, 3);
        // Unknown session: 3..8 were sent to an earlier process.
        let mut s = Sequencer::new(3, 0, 8);
        for seq in 3..8 {
            assert_eq!(s.next(), Some(Mark { seq, dup: true }));
        }
        assert_eq!(s.next(), Some(Mark { seq: 8, dup: false }));
        assert_eq!((s.flagged, s.accepted), (5, 8));
    }
}
