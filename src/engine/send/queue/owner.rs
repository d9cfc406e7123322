//! Who may send on a queue's connection now, and whether the core must be told of new bytes
//! ([`Owner`]): the hand-off between a producer's direct send and the core's sends, read and
//! changed only under the queue's lock. One sender at a time keeps the byte order; a core that
//! went idle on the queue is told exactly once of what comes next.
//!
//! Kept free of any other part of the crate so that its `loom` model (below) compiles alone:
//! `RUSTFLAGS="--cfg loom" cargo test --manifest-path ci/loom/Cargo.toml`.

/// The queue's sending state (quinn's `SendState` shape: each state carries what is valid in
/// it; the transitions are the methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Nobody is sending.
    Idle {
        /// The core was told to take (a flush is on its way, or it is about to take): pushes
        /// need not tell it again. Otherwise the next push must.
        told: bool,
        /// A direct send found the socket's buffer full and left bytes for the core: producers
        /// leave sending to it until one of its sends completes (the ring waits for room
        /// without spinning).
        blocked: bool,
    },
    /// The core holds taken chunks and sends them; it takes again after each of its sends
    /// until it finds the queue empty, so pushes meanwhile need not tell it.
    Core,
    /// A producer thread sends chunks it took out, with the lock let go.
    Producer {
        /// As in `Idle`. A core that looks meanwhile finds nothing to take and clears it: it
        /// waits to be told.
        told: bool,
    },
}

/// What a core's look at the queue may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Take what is waiting.
    Take,
    /// A producer is sending: take nothing; the producer tells the core of what it leaves.
    Wait,
}

impl Owner {
    /// A new queue: nobody sends, and the first push tells the core.
    pub(crate) const fn new() -> Owner {
        Owner::Idle {
            told: false,
            blocked: false,
        }
    }

    /// Whether nobody is sending.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, Owner::Idle { .. })
    }

    /// Whether a producer's direct send is out (its leftovers are not back in the queue yet).
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self, Owner::Producer { .. })
    }

    /// Whether a push must tell the core (it went idle on the queue and was not told since).
    pub(crate) fn needs_telling(&self) -> bool {
        matches!(
            self,
            Owner::Idle { told: false, .. } | Owner::Producer { told: false }
        )
    }

    /// A push is about to tell the core: returns whether it must (then it is told, once).
    pub(crate) fn tell(&mut self) -> bool {
        match self {
            Owner::Idle { told, .. } | Owner::Producer { told } if !*told => {
                *told = true;
                true
            }
            _ => false,
        }
    }

    /// Whether a producer may start a direct send: nobody is sending and no direct send was
    /// left blocked.
    pub(crate) fn may_send_direct(&self) -> bool {
        matches!(self, Owner::Idle { blocked: false, .. })
    }

    /// A producer starts a direct send; `false` (and no change) if it may not.
    pub(crate) fn start_direct(&mut self) -> bool {
        match *self {
            Owner::Idle {
                told,
                blocked: false,
            } => {
                *self = Owner::Producer { told };
                true
            }
            _ => false,
        }
    }

    /// The producer's direct send is over. If it left bytes (`leftovers`, back at the front of
    /// the queue), they are the core's: producers stay off the socket until one of its sends
    /// completes, and the core must be told (the next push or the caller's announce does).
    pub(crate) fn end_direct(&mut self, leftovers: bool) {
        if let Owner::Producer { told } = *self {
            *self = if leftovers {
                Owner::Idle {
                    told: false,
                    blocked: true,
                }
            } else {
                Owner::Idle {
                    told,
                    blocked: false,
                }
            };
        }
    }

    /// A core looks at the queue to take from it. While a producer sends, it takes nothing and
    /// waits to be told.
    pub(crate) fn core_looks(&mut self) -> Take {
        match self {
            Owner::Producer { told } => {
                *told = false;
                Take::Wait
            }
            _ => Take::Take,
        }
    }

    /// The core took chunks (`took`), or found nothing and goes idle until told.
    pub(crate) fn core_took(&mut self, took: bool) {
        *self = match *self {
            _ if took => Owner::Core,
            Owner::Idle { blocked, .. } => Owner::Idle {
                told: false,
                blocked,
            },
            _ => Owner::Idle {
                told: false,
                blocked: false,
            },
        };
    }

    /// One of the core's sends completed; `idle`: it holds nothing more (it takes again next,
    /// as it was told to). Producers may send directly again.
    pub(crate) fn core_sent(&mut self, idle: bool) {
        match *self {
            Owner::Core if !idle => {}
            Owner::Core => {
                *self = Owner::Idle {
                    told: true,
                    blocked: false,
                }
            }
            Owner::Idle { told, .. } => {
                *self = Owner::Idle {
                    told,
                    blocked: false,
                }
            }
            Owner::Producer { .. } => {}
        }
    }

    /// A connection was attached: a flush announced while detached went nowhere, so the next
    /// push tells the core again.
    pub(crate) fn attached(&mut self) {
        match self {
            Owner::Idle { told, .. } | Owner::Producer { told } => *told = false,
            Owner::Core => {}
        }
    }

    /// The connection is gone: the core holds nothing now, and no direct send stays blocked.
    pub(crate) fn detached(&mut self) {
        *self = match *self {
            Owner::Core => Owner::Idle {
                told: true,
                blocked: false,
            },
            Owner::Idle { told, .. } => Owner::Idle {
                told,
                blocked: false,
            },
            producer @ Owner::Producer { .. } => producer,
        };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Owner, Take};

    #[test]
    fn a_core_that_looked_during_a_direct_send_is_told_of_what_follows() {
        let mut owner = Owner::new();
        assert!(owner.tell(), "the first push tells the idle core");
        assert!(!owner.tell(), "once");
        assert!(owner.start_direct());
        assert!(
            !owner.start_direct() && !owner.may_send_direct(),
            "one sender"
        );
        assert_eq!(owner.core_looks(), Take::Wait);
        assert!(owner.tell(), "the core waits to be told again");
        owner.end_direct(false);
        assert_eq!(
            owner,
            Owner::Idle {
                told: true,
                blocked: false
            }
        );
    }

    #[test]
    fn leftovers_of_a_direct_send_are_the_cores_until_one_of_its_sends_completes() {
        let mut owner = Owner::new();
        assert!(owner.start_direct());
        owner.end_direct(true);
        assert!(!owner.may_send_direct() && owner.needs_telling());
        assert!(owner.tell());
        assert_eq!(owner.core_looks(), Take::Take);
        owner.core_took(true);
        assert!(!owner.tell(), "a sending core takes again by itself");
        owner.core_sent(false);
        assert!(!owner.may_send_direct(), "the core still sends");
        owner.core_sent(true);
        assert!(owner.may_send_direct() && !owner.needs_telling());
        owner.core_took(false);
        assert!(owner.needs_telling(), "idle: the next push tells it");
        owner.detached();
        owner.attached();
        assert!(owner.needs_telling());
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! A producer's direct send racing the core's sends and their completions, under one lock
    //! as in `SendQueue`. The "socket" records bytes in the order the kernel took them; the
    //! core acts only when told (a count of flush commands), so a lost wake-up leaves bytes in
    //! the queue at the end, which the model asserts against, with the byte order.

    use super::{Owner, Take};
    use loom::sync::{Arc, Mutex};
    use loom::thread;
    use std::collections::VecDeque;

    #[derive(Default)]
    struct Q {
        owner: Option<Owner>,
        /// Bytes waiting, in send order.
        queue: VecDeque<u8>,
        /// Every byte pushed, in the order the pushes took the lock: the order to keep.
        pushed: Vec<u8>,
        /// What the kernel took, in order.
        socket: Vec<u8>,
        /// Flush commands sent to the core and not yet handled.
        flushes: usize,
        /// The producer is done (after its last announce).
        done: bool,
    }

    impl Q {
        fn owner(&mut self) -> &mut Owner {
            self.owner.get_or_insert(Owner::new())
        }
    }

    /// A push and its announce (`SendQueue::push_with`).
    fn push(q: &Mutex<Q>, byte: u8) {
        let mut q = q.lock().unwrap();
        q.queue.push_back(byte);
        q.pushed.push(byte);
        if q.owner().tell() {
            q.flushes += 1;
        }
    }

    /// A producer's direct send (`SendQueue::send_direct`), the kernel taking only the first
    /// byte, then the announce of what it left.
    fn send_direct(q: &Mutex<Q>) {
        let taken: Vec<u8> = {
            let mut q = q.lock().unwrap();
            if q.queue.is_empty() || !q.owner().start_direct() {
                return;
            }
            q.queue.drain(..).collect()
        };
        // The lock is let go during the send.
        let mut q = q.lock().unwrap();
        q.socket.push(taken[0]);
        for &byte in taken[1..].iter().rev() {
            q.queue.push_front(byte);
        }
        q.owner().end_direct(taken.len() > 1);
        if !q.queue.is_empty() && q.owner().tell() {
            q.flushes += 1;
        }
    }

    /// The core's flush: take, send (the lock let go), complete, and again until it finds
    /// nothing (`Conns::flush` and `Conns::sent`).
    fn core_flush(q: &Mutex<Q>) {
        loop {
            let taken: Vec<u8> = {
                let mut q = q.lock().unwrap();
                if q.owner().core_looks() == Take::Wait {
                    return;
                }
                let taken: Vec<u8> = q.queue.drain(..).collect();
                q.owner().core_took(!taken.is_empty());
                taken
            };
            if taken.is_empty() {
                return;
            }
            thread::yield_now(); // the send is in flight
            let mut q = q.lock().unwrap();
            q.socket.extend(taken);
            q.owner().core_sent(true);
        }
    }

    /// The core's loop: handles each flush command until the producer is done and none is left.
    fn run_core(q: &Mutex<Q>) {
        loop {
            let flush = {
                let mut q = q.lock().unwrap();
                if q.flushes > 0 {
                    q.flushes -= 1;
                    true
                } else if q.done {
                    return;
                } else {
                    false
                }
            };
            if flush {
                core_flush(q);
            } else {
                thread::yield_now();
            }
        }
    }

    #[test]
    fn a_direct_send_and_the_cores_sends_keep_the_order_and_lose_no_wake_up() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let q = Arc::new(Mutex::new(Q::default()));
            let core = {
                let q = q.clone();
                thread::spawn(move || run_core(&q))
            };
            // Another producer pushes while this one sends directly.
            let pusher = {
                let q = q.clone();
                thread::spawn(move || {
                    push(&q, 10);
                    push(&q, 11);
                })
            };
            push(&q, 1);
            push(&q, 2);
            send_direct(&q);
            pusher.join().unwrap();
            q.lock().unwrap().done = true;
            core.join().unwrap();
            let q = q.lock().unwrap();
            assert!(q.queue.is_empty(), "bytes left, nobody told: {:?}", q.queue);
            assert_eq!(
                q.socket, q.pushed,
                "the socket got the bytes in queue order"
            );
            let mine: Vec<u8> = q.pushed.iter().copied().filter(|b| *b < 10).collect();
            assert_eq!(mine, [1, 2], "each producer's order");
        });
    }
}
