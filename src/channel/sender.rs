//! The feeding side of a channel: the link held by a configuration and a listener's acceptor
//! (which makes senders), and the senders held by a listener and each of its connections, which
//! reserve room, queue a decoded batch, and park their connection when the queue is full.

use std::sync::Arc;

use crate::channel::message::Message;
use crate::channel::state::{resume_all, Channel};
use crate::stream::conn::Conn;

/// A hold on a channel that makes [`ChannelSender`]s. Until a listener is bound with it, the
/// channel stays open while any link exists; once one is bound, only senders keep it open
/// (a listener's acceptor keeps a link to give each new connection its sender).
pub(crate) struct ChannelLink {
    pub(crate) chan: Arc<Channel>,
}

impl ChannelLink {
    /// A sender (for a listener being bound, or one of its new connections). The listener holds
    /// its own until it has closed every connection, so the channel ends as soon as the close
    /// completes.
    pub(crate) fn sender(&self) -> ChannelSender {
        let mut st = self.chan.lock();
        st.live += 1;
        st.bound = true;
        ChannelSender {
            chan: self.chan.clone(),
            batch: Vec::new(),
            discarded: false,
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

/// The sending side, held by a listener and by each of its connections' sessions. The channel
/// closes when the last one is dropped (the listener closed).
pub(crate) struct ChannelSender {
    chan: Arc<Channel>,
    /// The batch a session decodes into (kept to reuse its allocation).
    batch: Vec<Message>,
    /// Messages were discarded (every receiver gone) and that was logged.
    discarded: bool,
}

impl Drop for ChannelSender {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.live = st.live.saturating_sub(1);
        self.chan.released(st);
    }
}

impl ChannelSender {
    /// The batch to decode into, queued by [`commit`](ChannelSender::commit).
    pub(crate) fn batch(&mut self) -> &mut Vec<Message> {
        &mut self.batch
    }

    /// Whether this is the first time this sender's messages are discarded (to log it once).
    pub(crate) fn first_discard(&mut self) -> bool {
        !std::mem::replace(&mut self.discarded, true)
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

    /// Queues the [`batch`](ChannelSender::batch) (at most `reserved` messages, reserved by
    /// [`ChannelSender::reserve`]) and releases the reservation. Returns `true` if the queue is
    /// now full: then `conn` is in the paused list and must stop reading until resumed.
    pub(crate) fn commit(&mut self, reserved: usize, conn: &Conn) -> bool {
        let batch = &mut self.batch;
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
