//! The queue a channel's receivers, links and senders share, under one lock.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;

use crate::channel::message::Message;
use crate::stream::conn::Conn;

/// The queue shared by a channel's receivers, its configuration and the sessions feeding it.
pub(crate) struct Channel {
    pub(super) capacity: usize,
    /// Paused connections resume once queued plus reserved messages drop to this.
    pub(super) low: usize,
    pub(super) state: Mutex<State>,
    pub(super) ready: Condvar,
}

pub(super) struct State {
    pub(super) queue: VecDeque<Message>,
    /// Room sessions reserved for the batch they are decoding.
    pub(super) reserved: usize,
    /// Connections that stopped reading because the queue was full.
    pub(super) paused: Vec<Conn>,
    /// Configurations (and their clones) that may still bind a listener.
    pub(super) links: usize,
    /// Listeners' acceptors and connection sessions that may still send.
    pub(super) live: usize,
    /// Some listener was bound with this channel.
    pub(super) bound: bool,
    pub(super) receivers: usize,
    /// Threads blocked in `recv`/`recv_timeout`.
    pub(super) blocked: usize,
    /// Async receivers waiting, keyed by their future's id.
    pub(super) wakers: Vec<(u64, Waker)>,
    pub(super) next_key: u64,
}

impl State {
    pub(super) fn closed(&self) -> bool {
        self.live == 0 && (self.bound || self.links == 0)
    }

    pub(super) fn level(&self) -> usize {
        self.queue.len() + self.reserved
    }
}

impl Channel {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a few plain operations that cannot panic half-way
        // (user code never runs under it), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next message; with it, the paused connections to resume if the queue dropped
    /// to the low watermark (resume them after unlocking, with [`Popped::done`]).
    pub(super) fn pop(&self, st: &mut State) -> Option<(Message, Popped)> {
        let msg = st.queue.pop_front()?;
        let resume = if !st.paused.is_empty() && st.level() <= self.low {
            std::mem::take(&mut st.paused)
        } else {
            Vec::new()
        };
        let drained = st.queue.is_empty();
        Some((msg, Popped { resume, drained }))
    }

    /// Wakes everyone waiting (the channel closed).
    pub(super) fn wake_all(&self, mut st: MutexGuard<'_, State>) {
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.ready.notify_all();
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Called after a count that keeps the channel open went down.
    pub(super) fn released(&self, st: MutexGuard<'_, State>) {
        if st.closed() {
            self.wake_all(st);
        }
    }
}

pub(super) fn resume_all(conns: Vec<Conn>) {
    for conn in conns {
        conn.resume();
    }
}

/// What follows a pop, once the channel's lock is let go.
pub(super) struct Popped {
    resume: Vec<Conn>,
    /// The queue is empty now.
    drained: bool,
}

impl Popped {
    /// Acknowledges `msg` (on an acknowledged listener) and resumes the paused connections.
    pub(super) fn done(self, msg: &Message) {
        msg.taken(self.drained);
        resume_all(self.resume);
    }
}
