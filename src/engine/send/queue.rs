//! The outbound queue of one connection (or one writer across its reconnects).
//!
//! Producers append whole frames to the open chunk under the queue's lock, so frames from
//! concurrent writers never interleave and each writer's order is kept. The owning core takes
//! every waiting chunk at once and sends them with one `sendmsg`. A producer tells the core only
//! when the core said it went idle on this queue and was not told since ([`Owner`]); both sides
//! read and change that state under the lock, so no wake-up is lost and a busy core is never
//! woken per message. A producer
//! running on the owning core's own thread (a handler writing back) records the queue in a
//! core-local list instead of sending a command.
//!
//! One sender at a time keeps the byte order ([`Owner`], `owner.rs`, with its `loom` model): the
//! core while its outbox holds
//! chunks, or a producer thread handing on a `BufferedWriter` batch or flushing the queue, which
//! sends straight from its own thread with blocking `sendmsg`s when nobody else is sending (no
//! hand-off to the core's thread; if the socket is full the kernel waits for room, as for a
//! blocking write, for at most the socket's `SO_SNDTIMEO`, 100 ms). A writer's socket is handed
//! to its queue at the dial, before the core takes the connection in, so that such sends need
//! not wait for it. What such a send leaves goes back to the front of the queue for the core.
//! `producer.rs` holds the producers' side, `core_side.rs` the core's.
//!
//! The queue bounds the bytes it holds (waiting plus in flight): a full queue makes writers wait
//! (or fail with `Full`). When a connection fails, the chunks the kernel did not finish go back
//! to the front, cut at a frame boundary, and are sent first on the next connection, so no
//! accepted message is lost silently.
//!
//! The queue is generic over the core that drains it ([`QueueCore`]): the core's commands carry
//! queues, so naming the core's type here would make this file and `core.rs` import each other.
//! The engine uses one instantiation (`core::SendQueue`), so every call is static.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;

use crate::engine::send::chunk::{Chunk, ChunkPool};
use crate::engine::send::traits::FrameIndex;
use crate::error::ConnError;
use owner::Owner;

/// The sealer of the socket a sealed queue's connection runs on (see `seal.rs`).
type Sealer = Option<(Arc<OwnedFd>, Box<dyn crate::engine::send::traits::Seal>)>;

pub(crate) mod ack_state;
mod acks;
#[cfg(test)]
mod acks_tests;
mod core_side;
mod gate;
mod owner;
mod producer;
mod seal;
#[cfg(test)]
mod tests;

// `Gate` as an atomic (changed only under the lock, read also without it).
const OPEN: u8 = 0;
const RECONNECTING: u8 = 1;
const REFUSING: u8 = 2;
const CLOSED: u8 = 3;

/// Everything producers and the core share, under one lock.
struct Ctl {
    /// Chunks waiting for the core, in send order; producers append to the back one.
    chunks: VecDeque<Chunk>,
    /// Bytes accepted and not yet known to be sent: waiting here plus taken by the core.
    unsent: usize,
    /// Unsent bytes in `chunks`.
    queued: usize,
    /// Who sends now, and whether the core must be told of new bytes.
    owner: Owner,
    /// The attached connection's socket, for direct sends.
    fd: Option<Arc<OwnedFd>>,
    /// Chunks out for a direct send (kept to reuse the allocation).
    direct: VecDeque<Chunk>,
    /// The key (a `ConnKey`) of the connection that drains this queue on its core, if attached.
    key: Option<u64>,
    error: Option<Arc<ConnError>>,
    /// Threads blocked on `changed`.
    blocked: usize,
    /// Async writers waiting for room or for a state change.
    wakers: Vec<Waker>,
    /// The sequence number of the next frame queued (numbers matter on an acknowledged queue).
    next_seq: u64,
    /// An acknowledged queue's bookkeeping (`acks.rs`).
    acks: Option<ack_state::Acks>,
}

/// What a queue needs of the core that drains it: `CoreShared` (`core.rs`), whose commands
/// carry queues, so the queue names it only through this parameter (`core::SendQueue` is the
/// queue the engine uses). One implementation: calls on it are static.
pub(crate) trait QueueCore: Send + Sync + Sized {
    /// The send memory of the core's connections.
    fn pool(&self) -> &ChunkPool;
    /// Whether the calling thread is the core's.
    fn is_current(&self) -> bool;
    /// On the core's own thread: the connection `key` has bytes for the core (no command).
    fn defer_flush(key: u64);
    /// From another thread: bytes were queued on `queue` (a command, waking the core if it
    /// sleeps).
    fn flush(&self, queue: Arc<SendQueue<Self>>);
}

/// See the module docs. `C` is the core that drains it.
pub(crate) struct SendQueue<C: QueueCore> {
    ctl: Mutex<Ctl>,
    changed: Condvar,
    /// The link state, also readable without the lock (changed only under it).
    state: AtomicU8,
    limit: usize,
    core: Arc<C>,
    frames: Box<dyn FrameIndex>,
    /// When its connection fails, the queue is `Reconnecting` (and `on_reconnecting` called) instead of
    /// `Refusing`.
    reconnect_on_failure: bool,
    on_reconnecting: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Every byte is sealed (by the connection's [`Seal`]) before it is sent: see `seal.rs`.
    ///
    /// [`Seal`]: crate::engine::send::traits::Seal
    sealed: bool,
    /// The sealer of the connection now attached (or about to be), on a sealed queue. Locked
    /// only by the one thread sending, never while holding `ctl`.
    sealer: Mutex<Sealer>,
}

impl<C: QueueCore> SendQueue<C> {
    /// A queue drained by `core`, holding at most `limit` bytes (a single frame larger than that
    /// is accepted into an empty queue). With `reconnect_on_failure`, a failed connection leaves
    /// writes taken while [`SendQueue::on_reconnecting`]'s hook finds another. A `sealed` queue
    /// sends nothing its connection's sealer did not seal ([`SendQueue::set_sealer`]).
    pub(crate) fn new(
        core: Arc<C>,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        reconnect_on_failure: bool,
        sealed: bool,
    ) -> Arc<SendQueue<C>> {
        Arc::new(SendQueue {
            ctl: Mutex::new(Ctl {
                chunks: VecDeque::new(),
                unsent: 0,
                queued: 0,
                owner: Owner::new(),
                fd: None,
                direct: VecDeque::new(),
                key: None,
                error: None,
                blocked: 0,
                wakers: Vec::new(),
                next_seq: ack_state::FIRST_SEQ,
                acks: None,
            }),
            changed: Condvar::new(),
            state: AtomicU8::new(OPEN),
            limit: limit.max(1),
            core,
            frames,
            reconnect_on_failure,
            on_reconnecting: OnceLock::new(),
            sealed,
            sealer: Mutex::new(None),
        })
    }

    /// Sets the hook called (on the core) when a failed connection leaves the queue `Reconnecting`.
    pub(crate) fn on_reconnecting(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_reconnecting.set(hook);
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Ctl> {
        // Every update under this lock completes before any call out of this module (a
        // producer's fill runs before its bytes are committed), so a panic while holding it
        // cannot leave it inconsistent: a poisoned lock is still usable.
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks on `changed` until notified or `deadline`; `None` when the deadline has passed.
    fn wait<'a>(
        &self,
        mut ctl: MutexGuard<'a, Ctl>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Ctl>> {
        let timeout = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return None,
            },
        };
        ctl.blocked += 1;
        let mut ctl = match timeout {
            None => self.changed.wait(ctl).unwrap_or_else(|e| e.into_inner()),
            Some(left) => {
                self.changed
                    .wait_timeout(ctl, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        ctl.blocked -= 1;
        Some(ctl)
    }

    /// Wakes blocked and async waiters, if any (free when there are none).
    fn notify(&self, ctl: &mut Ctl) {
        if ctl.blocked > 0 {
            self.changed.notify_all();
        }
        for waker in ctl.wakers.drain(..) {
            waker.wake();
        }
    }

    #[inline]
    fn fits(&self, ctl: &Ctl, len: usize) -> bool {
        ctl.unsent == 0 || ctl.unsent + len <= self.limit
    }

    /// Async writers: registers `waker` to be woken when room frees up or the link changes.
    /// Returns `false` (and registers nothing) if a `len`-byte frame fits now or the link is
    /// down: the caller retries at once.
    pub(crate) fn register_waker(&self, waker: &Waker, len: usize) -> bool {
        let mut ctl = self.lock();
        if self.state.load(Ordering::Acquire) >= REFUSING || self.fits(&ctl, len) {
            return false;
        }
        ctl.wakers.push(waker.clone());
        true
    }

    /// The core this queue belongs to.
    pub(crate) fn core(&self) -> &Arc<C> {
        &self.core
    }

    /// Waits until no direct send is out, so that what it leaves is back in the queue (a direct
    /// send waits for room for at most `direct::FINISH_WITHIN`, so this is short).
    fn without_direct_send<'a>(&'a self, mut ctl: MutexGuard<'a, Ctl>) -> MutexGuard<'a, Ctl> {
        while ctl.owner.is_direct() {
            // The producer notifies under the lock when it hands the token back.
            ctl = match self.wait(ctl, None) {
                Some(ctl) => ctl,
                None => self.lock(),
            };
        }
        ctl
    }

    /// Takes every waiting frame out, in order (chunks go back to the pool); on an
    /// acknowledged queue, the frames sent and not acknowledged first.
    fn drain(&self, ctl: &mut Ctl) -> BytesMut {
        let mut rest = BytesMut::new();
        self.requeue_retained(ctl);
        let dropped = self.trim_acked(ctl);
        ctl.unsent = ctl.unsent.saturating_sub(dropped);
        for chunk in ctl.chunks.drain(..) {
            rest.extend_from_slice(chunk.resendable());
            ctl.unsent = ctl.unsent.saturating_sub(chunk.unsent_len());
            self.core.pool().put(chunk);
        }
        ctl.queued = 0;
        rest
    }
}

impl<C: QueueCore> Drop for SendQueue<C> {
    fn drop(&mut self) {
        let ctl = self.ctl.get_mut().unwrap_or_else(|e| e.into_inner());
        if ctl.chunks.iter().any(|c| c.unsent_len() > 0) {
            tracing::warn!("send queue dropped with frames never handed to the kernel");
        }
    }
}
