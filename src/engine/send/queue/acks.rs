//! An acknowledged queue's bookkeeping (a writer in acknowledged mode): frames are numbered in
//! the order they are queued, a chunk the kernel took is kept ([`Acks::retained`]) until the
//! peer acknowledges every frame in it, and after a failed connection everything not
//! acknowledged is sent again, from the oldest frame, behind a hello that the layer above
//! writes.
//!
//! The engine knows no protocol: it numbers frames, keeps and releases chunks, and puts the
//! layer's hello first. What the numbers mean on the wire is `crate::acked`'s.
//!
//! The queue's bound counts retained bytes as well as unsent ones, so it bounds what waits for
//! acknowledgement (`max_unacked_bytes`), and a flush ([`SendQueue::wait_drained`]) returns
//! once everything was acknowledged.

use std::collections::VecDeque;

use super::ack_state::{AckCounts, AckFault, Acks, Resume, SPARE_MAX};
use super::{Ctl, QueueCore, SendQueue};
use crate::engine::send::chunk::Chunk;

/// Checks (debug builds) that the frames not acknowledged are all here, once, in order:
/// in `retained`, then `out` (a core's outbox), then the queue, from the one after the
/// last acknowledged to the last queued.
#[cfg(debug_assertions)]
pub(super) fn check(ctl: &Ctl, out: Option<&VecDeque<Chunk>>) {
    let Some(acks) = &ctl.acks else {
        return;
    };
    let mut next = acks.acked + 1;
    let chunks = acks.retained.iter().chain(out.into_iter().flatten());
    for c in chunks.chain(ctl.chunks.iter()).filter(|c| c.frames() > 0) {
        assert!(
            c.seq() <= next,
            "frames {next}..{} missing (acked {})",
            c.seq(),
            acks.acked
        );
        next = next.max(c.seq_end());
    }
    assert_eq!(next, ctl.next_seq, "frames missing at the end");
}

#[cfg(not(debug_assertions))]
#[inline]
pub(super) fn check(_: &Ctl, _: Option<&VecDeque<Chunk>>) {}

impl<C: QueueCore> SendQueue<C> {
    /// Makes this (new, empty) queue an acknowledged one: chunks sent are kept until
    /// [`SendQueue::ack`] releases them.
    pub(crate) fn make_acked(&self) {
        let mut ctl = self.lock();
        ctl.acks = Some(Acks::new());
    }

    /// The kernel took `chunk` whole: an acknowledged queue keeps it until acknowledged;
    /// otherwise (or if it holds nothing unacknowledged) it goes back to the pool. Returns the
    /// bytes that no longer count against the queue's bound.
    pub(super) fn sent_whole(&self, ctl: &mut Ctl, chunk: Chunk) -> usize {
        if let Some(acks) = &mut ctl.acks {
            if chunk.frames() > 0 && chunk.seq_end() > acks.acked + 1 {
                acks.retained.push_back(chunk);
                return 0;
            }
        }
        let bytes = chunk.unsent_len();
        self.core.pool().put(chunk);
        bytes
    }

    /// The peer acknowledged every frame up to `seq`: chunks wholly acknowledged go back to
    /// the pool and free room. Refused (nothing changes) if `seq` goes backwards or names a
    /// frame never sent.
    pub(crate) fn ack(&self, seq: u64) -> Result<(), AckFault> {
        let mut ctl = self.lock();
        let ctl = &mut *ctl;
        let Some(acks) = &mut ctl.acks else {
            return Ok(());
        };
        if seq < acks.acked {
            return Err(AckFault::Backwards { acked: acks.acked });
        }
        if seq >= acks.sent_high {
            return Err(AckFault::Beyond {
                sent: acks.sent_high - 1,
            });
        }
        if seq == acks.acked {
            return Ok(());
        }
        acks.acked = seq;
        let mut freed = 0;
        while acks
            .retained
            .front()
            .is_some_and(|c| c.seq_end() <= seq + 1)
        {
            if let Some(chunk) = acks.retained.pop_front() {
                freed += chunk.unsent_len();
                if chunk.is_standard() && acks.spare.len() < SPARE_MAX {
                    acks.spare.push(chunk.recycle());
                } else {
                    self.core.pool().put(chunk);
                }
            }
        }
        if acks.retained.is_empty() && ctl.queued == 0 {
            // Everything acknowledged: an idle writer holds no spare memory.
            for chunk in acks.spare.drain(..) {
                self.core.pool().put(chunk);
            }
        }
        ctl.unsent = ctl.unsent.saturating_sub(freed);
        if freed > 0 || ctl.unsent == 0 {
            self.notify(ctl);
        }
        Ok(())
    }

    /// Counters of an acknowledged queue (`None` for a plain one).
    pub(crate) fn ack_counts(&self) -> Option<AckCounts> {
        let ctl = self.lock();
        let acks = ctl.acks.as_ref()?;
        Some(AckCounts {
            acked: acks.acked,
            queued: ctl.next_seq - 1,
            resent: acks.resent,
        })
    }

    /// After a failed connection (`detach`): everything kept for acknowledgement goes back to
    /// the front of the queue, whole and unsent, ahead of what the connection was sending.
    pub(super) fn requeue_retained(&self, ctl: &mut Ctl) {
        let Some(acks) = &mut ctl.acks else {
            return;
        };
        while let Some(chunk) = acks.retained.pop_back() {
            ctl.chunks.push_front(chunk);
        }
        for chunk in ctl.chunks.iter_mut() {
            chunk.restart();
        }
    }

    /// Drops from the front of the queue what needs no sending: old hellos and acknowledged
    /// frames (a chunk partly acknowledged loses its acknowledged frames). Returns the bytes.
    pub(super) fn trim_acked(&self, ctl: &mut Ctl) -> usize {
        let Some(acks) = &ctl.acks else {
            return 0;
        };
        let acked = acks.acked;
        let mut dropped = 0;
        while let Some(front) = ctl.chunks.front_mut() {
            // An old hello, an empty chunk, or frames all acknowledged: nothing to send.
            if front.is_raw() || front.frames() == 0 || front.seq_end() <= acked + 1 {
                if let Some(chunk) = ctl.chunks.pop_front() {
                    dropped += chunk.unsent_len();
                    self.core.pool().put(chunk);
                }
                continue;
            }
            if front.seq() <= acked {
                let before = front.unsent_len();
                let n = u32::try_from(acked + 1 - front.seq()).unwrap_or(u32::MAX);
                front.drop_frames(n, |buf, n| self.frames.frames_len(buf, n));
                dropped += before - front.unsent_len();
            }
            break;
        }
        dropped
    }

    /// A writer's thread, before a new connection is attached: drops what was acknowledged,
    /// and puts the hello `hello` writes for the connection's [`Resume`] first in the queue
    /// (sealed with the rest on a sealed queue). `None` on a plain queue.
    pub(crate) fn resume_acked(&self, hello: impl FnOnce(Resume) -> Vec<u8>) -> Option<Resume> {
        let mut ctl = self.without_direct_send(self.lock());
        let ctl = &mut *ctl;
        ctl.acks.as_ref()?;
        // Kept from a connection that is gone (a direct send that ended after it failed).
        self.requeue_retained(ctl);
        let dropped = self.trim_acked(ctl);
        ctl.unsent = ctl.unsent.saturating_sub(dropped);
        let next_seq = ctl.next_seq;
        let first_seq = ctl
            .chunks
            .iter()
            .find(|c| c.frames() > 0)
            .map_or(next_seq, Chunk::seq);
        let acks = ctl.acks.as_mut()?;
        let resume = Resume {
            first_seq,
            first_new: acks.sent_high.max(first_seq),
        };
        // Frames handed to the kernel before and going again; each counted once however many
        // connections it takes.
        let from = first_seq.max(acks.resent_through);
        acks.resent += resume.first_new.saturating_sub(from);
        acks.resent_through = acks.resent_through.max(resume.first_new);
        let bytes = hello(resume);
        let chunk = self.core.pool().get(bytes.len()).raw(&bytes);
        ctl.unsent += chunk.unsent_len();
        ctl.chunks.push_front(chunk);
        ctl.queued = ctl.chunks.iter().map(|c| c.unsent().len()).sum();
        check(ctl, None);
        Some(resume)
    }
}
