//! The io_uring core's operations in flight, each owned by a slot of one table (monoio's
//! shape): a slot is taken when its SQE is queued and given back only by the operation's final
//! completion (a CQE without `IORING_CQE_F_MORE`), whatever became of the connection or
//! listener it was for. How many are in flight is the number of slots taken, so it cannot
//! drift from the completions; and what the kernel may still write (the wake-up read's buffer,
//! the timer's timespec) is owned by the slot, so it lives at least as long as the operation.
//!
//! An operation's `user_data` is its slot's index and that slot's generation, so a cancel
//! aimed at an operation that has ended meanwhile can never hit the next one in its slot.

use io_uring::types::Timespec;

use crate::engine::conns::slab::ConnKey;

/// What an operation is, read back from its completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpKind {
    /// The multishot accept of listener slot `.0`.
    Accept(u32),
    /// The multishot receive of a connection.
    Recv(ConnKey),
    /// A send of a connection (from its outbox, which the table keeps while the send is armed).
    Send(ConnKey),
    /// The standing read of the core's wake-up eventfd.
    Wake,
    /// The timer.
    Timer,
    /// A cancel or a timeout removal (points at nothing).
    Cancel,
}

/// Memory the kernel may use until an operation's final completion, owned by its slot.
#[derive(Debug)]
pub(super) enum Keep {
    /// Nothing (or memory whose owner keeps it while the operation is armed: a send's outbox).
    Nothing,
    /// The 8 bytes the wake-up read writes.
    WakeBuf(Box<u64>),
    /// The timer's timespec.
    Timespec(Box<Timespec>),
}

/// An operation in flight, as seen by whoever armed it: the `user_data` to cancel it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpId(u64);

impl OpId {
    /// The `user_data` its SQE carries.
    pub(super) fn user_data(self) -> u64 {
        self.0
    }
}

/// A completed operation: what it was and, after its final completion, what it kept.
#[derive(Debug)]
pub(super) struct Completed {
    pub(super) kind: OpKind,
    /// `Some` once the operation has ended (its slot is free again).
    pub(super) released: Option<Keep>,
}

struct Slot {
    generation: u32,
    op: Option<(OpKind, Keep)>,
}

/// The table of operations in flight.
#[derive(Default)]
pub(super) struct InFlight {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl InFlight {
    /// Takes a slot for an operation about to be queued; its SQE must carry the id's
    /// `user_data`. Allocates only while the table grows to its high-water mark.
    pub(super) fn start(&mut self, kind: OpKind, keep: Keep) -> OpId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                // More than 2^32 operations in flight cannot be queued on a ring.
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.op = Some((kind, keep));
        self.live += 1;
        OpId(u64::from(slot.generation) << 32 | u64::from(index))
    }

    /// A completion for `user_data` arrived; `more` is its `IORING_CQE_F_MORE`. Returns the
    /// operation, freeing its slot (and handing back what it kept) unless more completions
    /// follow; `None` for a `user_data` of no operation in flight (none is expected).
    pub(super) fn complete(&mut self, user_data: u64, more: bool) -> Option<Completed> {
        let index = user_data as u32 as usize;
        let generation = (user_data >> 32) as u32;
        let slot = self
            .slots
            .get_mut(index)
            .filter(|s| s.generation == generation)?;
        let kind = slot.op.as_ref()?.0;
        if more {
            return Some(Completed {
                kind,
                released: None,
            });
        }
        let (_, keep) = slot.op.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
        self.live -= 1;
        Some(Completed {
            kind,
            released: Some(keep),
        })
    }

    /// What operation `user_data` is, if it is in flight.
    pub(super) fn kind(&self, user_data: u64) -> Option<OpKind> {
        let slot = self.slots.get(user_data as u32 as usize)?;
        if slot.generation != (user_data >> 32) as u32 {
            return None;
        }
        slot.op.as_ref().map(|(kind, _)| *kind)
    }

    /// Operations queued whose final completion has not arrived.
    pub(super) fn live(&self) -> usize {
        self.live
    }
}

impl Drop for InFlight {
    /// What live operations keep is leaked, never freed: the kernel may still write it (the
    /// ring is torn down first, but may finish with our memory only later).
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some((_, keep)) = slot.op.take() {
                std::mem::forget(keep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn key() -> ConnKey {
        ConnKey::from_u64(7)
    }

    #[test]
    fn a_multishot_receive_holds_its_slot_until_its_final_completion() {
        let mut ops = InFlight::default();
        let recv = ops.start(OpKind::Recv(key()), Keep::Nothing);
        let send = ops.start(OpKind::Send(key()), Keep::Nothing);
        assert_eq!(ops.live(), 2);
        for _ in 0..3 {
            let c = ops.complete(recv.user_data(), true).expect("in flight");
            assert_eq!((c.kind, c.released.is_none()), (OpKind::Recv(key()), true));
            assert_eq!(ops.live(), 2, "a completion with MORE does not end it");
        }
        let last = ops.complete(recv.user_data(), false).expect("in flight");
        assert!(matches!(last.released, Some(Keep::Nothing)));
        assert_eq!(ops.live(), 1);
        assert!(
            ops.complete(recv.user_data(), false).is_none(),
            "ended once"
        );
        assert_eq!(ops.kind(send.user_data()), Some(OpKind::Send(key())));
        ops.complete(send.user_data(), false).expect("in flight");
        assert_eq!(ops.live(), 0);
    }

    #[test]
    fn a_reused_slot_answers_only_to_its_new_operation() {
        let mut ops = InFlight::default();
        let old = ops.start(OpKind::Wake, Keep::WakeBuf(Box::new(5)));
        let kept = ops
            .complete(old.user_data(), false)
            .and_then(|c| c.released);
        assert!(
            matches!(kept, Some(Keep::WakeBuf(b)) if *b == 5),
            "the buffer comes back"
        );
        let new = ops.start(OpKind::Timer, Keep::Nothing);
        assert_ne!(old, new);
        assert_eq!(ops.kind(old.user_data()), None);
        assert!(ops.complete(old.user_data(), false).is_none());
        assert_eq!(ops.live(), 1);
        assert_eq!(ops.kind(new.user_data()), Some(OpKind::Timer));
    }
}

#[cfg(test)]
mod ring_tests {
    use io_uring::{opcode, IoUring};

    use super::tests::key;
    use super::*;
    use crate::engine::uring::ops::Ring;

    /// Submits what is queued and hands every completion to `ring`, as the core's reap does.
    fn reap(ring: &mut Ring, want: usize) -> Vec<OpKind> {
        ring.ring.submit_and_wait(want).expect("submit");
        let cqes: Vec<_> = ring.ring.completion().collect();
        cqes.iter()
            .filter_map(|c| ring.complete(c.user_data(), c.flags()))
            .collect()
    }

    #[test]
    fn a_completion_for_a_connection_that_is_gone_still_ends_its_operation() {
        let mut ring = Ring::new(IoUring::new(8).expect("ring"), 0, 4096);
        // No connection table at all: the key names nobody.
        ring.push(
            OpKind::Recv(key()),
            Keep::Nothing,
            opcode::Nop::new().build(),
        );
        ring.push(
            OpKind::Send(key()),
            Keep::Nothing,
            opcode::Nop::new().build(),
        );
        assert_eq!(ring.in_flight(), 2);
        let kinds = reap(&mut ring, 2);
        assert_eq!(kinds, [OpKind::Recv(key()), OpKind::Send(key())]);
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn the_wake_up_buffer_comes_back_with_the_reads_final_completion() {
        let mut ring = Ring::new(IoUring::new(8).expect("ring"), 0, 4096);
        // SAFETY: eventfd takes no pointer and no descriptor.
        let fd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)).expect("eventfd");
        for _ in 0..2 {
            let one = 1u64;
            // SAFETY: 8 bytes from a live u64 to the eventfd just made.
            syscall!(write(fd, std::ptr::addr_of!(one).cast(), 8)).expect("write");
            ring.arm_wake(fd);
            ring.arm_wake(fd); // armed already: no second read
            assert_eq!(ring.in_flight(), 1);
            assert_eq!(reap(&mut ring, 1), [OpKind::Wake]);
            assert_eq!(ring.in_flight(), 0);
        }
        // SAFETY: closes the eventfd this test made; no read is armed on it any more.
        syscall!(close(fd)).expect("close");
    }

    #[test]
    fn the_cores_reap_ends_operations_whose_connection_or_listener_is_gone() {
        use crate::engine::config::RuntimeConfig;
        use crate::engine::core::{CoreShared, Driver};
        use crate::engine::uring::driver::Core;
        use std::sync::Arc;

        let shared = Arc::new(CoreShared::new(0).expect("eventfd"));
        let mut core = Core::new(shared, &RuntimeConfig::default()).expect("io_uring core");
        // Nothing in the core's table: every key and listener slot names nobody.
        for kind in [OpKind::Recv(key()), OpKind::Send(key()), OpKind::Accept(3)] {
            core.io
                .push(kind, Keep::Nothing, opcode::Nop::new().build());
        }
        core.io.ring.submit_and_wait(3).expect("submit");
        core.reap();
        assert_eq!(
            core.io.in_flight(),
            0,
            "every final completion ended its operation"
        );
    }
}
