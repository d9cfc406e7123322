//! The core's side of a send queue: attaching to a connection, taking chunks for a send,
//! retiring what the kernel took, and handing back what it did not when the connection ends.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::acks;
use super::owner::Take;
use super::{Ctl, QueueCore, SendQueue, CLOSED, RECONNECTING, REFUSING};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::direct;
use crate::engine::send::outbox::{Outbox, MAX_CHUNKS_PER_SEND};
use crate::error::ConnError;

impl<C: QueueCore> SendQueue<C> {
    /// Core: the queue now drains into connection `key` (a `ConnKey`). Returns whether bytes
    /// are waiting.
    pub(crate) fn attach(&self, key: u64, fd: Arc<OwnedFd>) -> bool {
        let preattached = self
            .lock()
            .fd
            .as_ref()
            .is_some_and(|now| Arc::ptr_eq(now, &fd));
        // A producer's blocking send on this socket waits for room for a bounded time. If the
        // option cannot be set, producers do not send directly: everything goes by the core.
        let fd = (preattached || direct::bound_blocking_sends(&fd).is_ok()).then_some(fd);
        let mut ctl = self.lock();
        ctl.key = Some(key);
        ctl.fd = fd;
        // A flush announced while detached went nowhere: make the next push tell the core
        // again (the caller starts a send if this returns true).
        ctl.owner.attached();
        ctl.chunks.iter().any(|c| !c.unsent().is_empty())
    }

    /// A writer's thread, about to hand a connected socket to the core: producers may send on it
    /// directly from now on (the core's `attach` follows). Ignored if a connection is attached.
    pub(crate) fn preattach(&self, fd: Arc<OwnedFd>) {
        if direct::bound_blocking_sends(&fd).is_err() {
            return;
        }
        let mut ctl = self.lock();
        if ctl.key.is_none() {
            ctl.fd = Some(fd);
        }
    }

    /// The socket given to [`SendQueue::preattach`] will not be attached after all (the core has
    /// ended): forget it, unless a connection took its place.
    pub(crate) fn unpreattach(&self, fd: &Arc<OwnedFd>) {
        let mut ctl = self.without_direct_send(self.lock());
        if ctl.key.is_none() && ctl.fd.as_ref().is_some_and(|now| Arc::ptr_eq(now, fd)) {
            ctl.fd = None;
        }
    }

    /// Core: the key of the connection this queue drains into, if any.
    pub(crate) fn attached_key(&self) -> Option<u64> {
        self.lock().key
    }

    /// Core: moves every waiting chunk (at most a send's worth) into `out`, sealed for a send on
    /// `fd` on a sealed queue. Returns `false` if there was nothing; then the next push tells
    /// the core.
    pub(crate) fn take(&self, out: &mut Outbox, fd: &Arc<OwnedFd>) -> bool {
        let mut ctl = self.lock();
        if ctl.owner.core_looks() == Take::Wait {
            // A producer is sending; it tells the core if it leaves anything.
            return false;
        }
        let mut taken = 0;
        while taken < MAX_CHUNKS_PER_SEND {
            let Some(front) = ctl.chunks.front() else {
                break;
            };
            if front.unsent().is_empty() {
                // An empty chunk (a refused frame's, or the open one): the last one stays for
                // producers; one with chunks behind it (a batch appended after it) goes back to
                // the pool so that what follows is not left waiting.
                if ctl.chunks.len() == 1 {
                    break;
                }
                if let Some(empty) = ctl.chunks.pop_front() {
                    self.core.pool().put(empty);
                }
                continue;
            }
            if let Some(chunk) = ctl.chunks.pop_front() {
                ctl.queued -= chunk.unsent().len();
                if let Some(acks) = &mut ctl.acks {
                    acks.handed(&chunk);
                }
                out.chunks_mut().push_back(chunk);
                taken += 1;
            }
        }
        acks::check(&ctl, Some(&*out.chunks_mut()));
        ctl.owner.core_took(taken > 0);
        if taken == 0 {
            // Idle: an empty open chunk goes back to the pool, so idle connections hold none.
            if let Some(chunk) = ctl.chunks.pop_front() {
                self.core.pool().put(chunk);
            }
        }
        drop(ctl);
        if taken > 0 {
            // If sealing fails the socket is shut down: the send fails and the connection
            // closes, handing the chunks back to the queue unsent.
            self.seal_for(out.chunks_mut(), fd);
        }
        taken > 0
    }

    /// Core: the kernel took all of `done` (chunks from [`SendQueue::take`]); `idle` says the
    /// core holds nothing more (it sends again only after another `take`).
    pub(crate) fn complete(&self, done: &mut Vec<Chunk>, idle: bool) {
        if done.is_empty() && !idle {
            return;
        }
        let mut ctl = self.lock();
        if ctl.acks.is_some() {
            let mut freed = 0;
            for chunk in done.drain(..) {
                freed += self.sent_whole(&mut ctl, chunk);
            }
            ctl.unsent = ctl.unsent.saturating_sub(freed);
            ctl.owner.core_sent(idle);
            self.notify(&mut ctl);
            return;
        }
        let bytes: usize = done.iter().map(Chunk::unsent_len).sum();
        ctl.unsent = ctl.unsent.saturating_sub(bytes);
        ctl.owner.core_sent(idle);
        self.notify(&mut ctl);
        drop(ctl);
        for chunk in done.drain(..) {
            self.core.pool().put(chunk);
        }
    }

    /// Rewinds every chunk to the start of the frame its connection was sending (a new
    /// connection must send those frames whole). Returns the bytes known sent that were dropped.
    /// On an acknowledged queue every chunk starts over whole: what the kernel took of it may
    /// never have arrived.
    pub(super) fn rewind_all(&self, ctl: &mut Ctl, chunks: &mut VecDeque<Chunk>) -> usize {
        if ctl.acks.is_some() {
            chunks.iter_mut().for_each(Chunk::restart);
            return 0;
        }
        let mut dropped = 0;
        for chunk in chunks.iter_mut() {
            let before = chunk.unsent_len();
            chunk.rewind(|buf, off| self.frames.frame_start(buf, off));
            dropped += before - chunk.unsent_len();
        }
        dropped
    }

    /// Core: the connection is gone. `out` holds what was being sent; the frames the kernel did
    /// not take in full are kept to be sent first next time. The gate becomes `Reconnecting` or
    /// `Refusing` (`reason` given and `reusable`: see `reconnect_on_failure`) or `Closed`.
    /// `fd` is the connection's socket (its sealer goes with it).
    pub(crate) fn detach(
        &self,
        out: &mut Outbox,
        reason: Option<Arc<ConnError>>,
        reusable: bool,
        fd: Option<&Arc<OwnedFd>>,
    ) {
        self.drop_sealer(fd);
        let returned = out.take_all();
        let mut ctl = self.lock();
        ctl.key = None;
        ctl.fd = None;
        ctl.owner.detached();
        for chunk in returned.into_iter().rev() {
            ctl.chunks.push_front(chunk);
        }
        // The chunk a send was in the middle of starts again at the frame the kernel was in;
        // on an acknowledged queue, everything not acknowledged goes again, from the oldest.
        let mut chunks = std::mem::take(&mut ctl.chunks);
        let dropped = self.rewind_all(&mut ctl, &mut chunks);
        ctl.chunks = chunks;
        // On an acknowledged queue what was sent and not acknowledged goes first again: unless
        // a producer's direct send is still out, whose chunks are newer than the kept ones and
        // come back when it ends (fully sent ones to the kept, the rest to the front); then the
        // next resume (or drain), which waits for it, puts the kept ones first.
        if !ctl.owner.is_direct() {
            self.requeue_retained(&mut ctl);
            acks::check(&ctl, None);
        }
        ctl.unsent = ctl.unsent.saturating_sub(dropped);
        ctl.queued = ctl.chunks.iter().map(|c| c.unsent().len()).sum();
        let mut reconnecting = false;
        if self.state.load(Ordering::Acquire) != CLOSED {
            match reason {
                Some(err) if reusable => {
                    ctl.error = Some(err);
                    reconnecting = self.reconnect_on_failure;
                    let next = if reconnecting { RECONNECTING } else { REFUSING };
                    self.state.store(next, Ordering::Release);
                }
                _ => self.state.store(CLOSED, Ordering::Release),
            }
        }
        // Blocked writers and async waiters hear the new state (no system call when there
        // are none: a closing connection with nobody waiting costs no futex wake-up).
        self.notify(&mut ctl);
        drop(ctl);
        if reconnecting {
            if let Some(hook) = self.on_reconnecting.get() {
                hook();
            }
        }
    }
}
