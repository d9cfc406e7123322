//! The feeding side of a channel: the configuration's link (which keeps an unbound channel
//! open), the listener's source, and each connection's sender, which reserves room, queues a
//! decoded batch, and parks its connection when the queue is full.

use std::sync::Arc;

use super::{resume_all, Channel, Message};
use crate::conn::Conn;

/// The configuration's hold on a channel: while any exists and no listener was bound, the
/// channel stays open. Binding a listener turns it into a [`ChannelSender`].
pub(crate) struct ChannelLink {
    pub(super) chan: Arc<Channel>,
}

impl ChannelLink {
    /// A sender for a listener being bound: the listener holds it until it has closed every
    /// connection, so the channel ends as soon as the close completes.
    pub(crate) fn sender(&self) -> ChannelSender {
        let mut st = self.chan.lock();
        st.live += 1;
        st.bound = true;
        ChannelSender {
            chan: self.chan.clone(),
        }
    }
}

/// What a listener's acceptor holds to give each new connection a [`ChannelSender`]; it does
/// not keep the channel open by itself (the listener's own sender does, until it closes).
pub(crate) struct ChannelSource {
    chan: Arc<Channel>,
}

impl ChannelSource {
    /// A sender for a new connection.
    pub(crate) fn sender(&self) -> ChannelSender {
        self.chan.lock().live += 1;
        ChannelSender {
            chan: self.chan.clone(),
        }
    }
}

impl Clone for ChannelLink {
    fn clone(&self) -> Self {
        self.chan.lock().links += 1;
        ChannelLink {
            chan: self.chan.clone(),
        }
    }
}

impl Drop for ChannelLink {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.links = st.links.saturating_sub(1);
        self.chan.released(st);
    }
}

/// The sending side, held by a listener's acceptor and by each of its connections' sessions.
/// The channel closes when the last one is dropped (the listener closed).
pub(crate) struct ChannelSender {
    chan: Arc<Channel>,
}

impl Clone for ChannelSender {
    fn clone(&self) -> Self {
        self.chan.lock().live += 1;
        ChannelSender {
            chan: self.chan.clone(),
        }
    }
}

impl Drop for ChannelSender {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.live = st.live.saturating_sub(1);
        self.chan.released(st);
    }
}

impl ChannelSender {
    /// A handle to make more senders from, which does not keep the channel open.
    pub(crate) fn source(&self) -> ChannelSource {
        ChannelSource {
            chan: self.chan.clone(),
        }
    }

    /// Reserves room for a batch: the free room, but at least 1 (the soft bound: a connection
    /// may always add one message, then it pauses). `None`: no receiver is left.
    pub(crate) fn reserve(&self) -> Option<usize> {
        let mut st = self.chan.lock();
        if st.receivers == 0 {
            return None;
        }
        let room = self.chan.capacity.saturating_sub(st.level()).max(1);
        st.reserved += room;
        Some(room)
    }

    /// Queues `batch` (at most `reserved` messages, reserved by [`ChannelSender::reserve`]) and
    /// releases the reservation. Returns `true` if the queue is now full: then `conn` is in the
    /// paused list and must stop reading until resumed.
    pub(crate) fn commit(&self, batch: &mut Vec<Message>, reserved: usize, conn: &Conn) -> bool {
        let chan = &*self.chan;
        let mut st = chan.lock();
        st.reserved = st.reserved.saturating_sub(reserved);
        if st.receivers == 0 {
            // Nobody will take them: drop them (outside the lock).
            drop(st);
            batch.clear();
            return false;
        }
        let added = batch.len();
        st.queue.extend(batch.drain(..));
        let level = st.level();
        let full = level >= chan.capacity;
        let mut resume = Vec::new();
        if full {
            if !st.paused.iter().any(|c| c.id() == conn.id()) {
                st.paused.push(conn.clone());
            }
        } else if level <= chan.low && !st.paused.is_empty() {
            // Reservations released unused can bring the queue down too.
            resume = std::mem::take(&mut st.paused);
        }
        let mut wakers = Vec::new();
        if added > 0 {
            match st.blocked {
                0 => {}
                1 => chan.ready.notify_one(),
                _ => chan.ready.notify_all(),
            }
            if !st.wakers.is_empty() {
                wakers = std::mem::take(&mut st.wakers);
            }
        }
        drop(st);
        for (_, waker) in wakers {
            waker.wake();
        }
        resume_all(resume);
        full
    }

    /// The connection closed: it no longer waits for room.
    pub(crate) fn forget(&self, conn_id: u64) {
        let mut st = self.chan.lock();
        if let Some(i) = st.paused.iter().position(|c| c.id() == conn_id) {
            let conn = st.paused.swap_remove(i);
            drop(st);
            drop(conn);
        }
    }
}
