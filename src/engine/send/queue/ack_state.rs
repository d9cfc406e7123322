//! An acknowledged queue's state ([`Acks`], in the queue's `Ctl`) and what its methods
//! (`acks.rs`) return: a leaf of the queue, so that `queue.rs` and `acks.rs` need not import
//! each other.

use std::collections::VecDeque;

use crate::engine::send::chunk::Chunk;

/// The first sequence number of a queue's frames.
pub(crate) const FIRST_SEQ: u64 = 1;

/// Standard chunks an acknowledged queue keeps from those its acknowledgements free, for its
/// next frames (1 MiB): a streaming writer swaps chunks with itself under the lock it holds
/// anyway, instead of through the core's pool, whose bound a writer's unacknowledged window
/// exceeds (allocating and zeroing a chunk per 16 KiB otherwise). Given back to the pool when
/// everything was acknowledged.
pub(super) const SPARE_MAX: usize = 64;

/// What an acknowledged queue keeps (in its `Ctl`).
pub(crate) struct Acks {
    /// Chunks the kernel took whole, in sequence order, with frames not yet acknowledged.
    pub(super) retained: VecDeque<Chunk>,
    /// The last sequence number acknowledged (`FIRST_SEQ - 1`: none).
    pub(super) acked: u64,
    /// The sequence number after the last frame handed to the kernel on any connection.
    pub(super) sent_high: u64,
    /// Frames sent again after reconnects (each counted once).
    pub(super) resent: u64,
    /// The frames before this one were counted in `resent` already.
    pub(super) resent_through: u64,
    /// Emptied chunks for this queue's next frames (see [`SPARE_MAX`]).
    pub(super) spare: Vec<Chunk>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckFault {
    /// It names a frame before the last acknowledgement.
    Backwards { acked: u64 },
    /// It names a frame never handed to the kernel.
    Beyond { sent: u64 },
}

/// Where a new connection starts (what its hello says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The first frame sent on it.
    pub(crate) first_seq: u64,
    /// The first frame never handed to the kernel before.
    pub(crate) first_new: u64,
}

/// An acknowledged queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AckCounts {
    /// The last sequence number acknowledged.
    pub(crate) acked: u64,
    /// Frames queued so far (the last sequence number given).
    pub(crate) queued: u64,
    /// Frames sent again after reconnects.
    pub(crate) resent: u64,
}

impl Acks {
    pub(super) fn new() -> Acks {
        Acks {
            retained: VecDeque::new(),
            acked: FIRST_SEQ - 1,
            sent_high: FIRST_SEQ,
            resent: 0,
            resent_through: FIRST_SEQ,
            spare: Vec::new(),
        }
    }

    /// A standard chunk kept for the next frames, if any.
    #[inline]
    pub(super) fn spare(&mut self) -> Option<Chunk> {
        self.spare.pop()
    }

    /// Chunks handed to the kernel: frames up to their end may reach the peer.
    #[inline]
    pub(super) fn handed(&mut self, chunk: &Chunk) {
        self.sent_high = self.sent_high.max(chunk.seq_end());
    }
}
