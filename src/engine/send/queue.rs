//! The outbound queue of one connection (or one writer across its reconnects).
//!
//! Producers append whole frames to the open chunk under the queue's lock, so frames from
//! concurrent writers never interleave and each writer's order is kept. The owning core takes
//! every waiting chunk at once and sends them with one `sendmsg`. A producer tells the core only
//! when the core said it went idle on this queue (`armed`); both sides read and write that flag
//! under the lock, so no wake-up is lost and a busy core is never woken per message. A producer
//! running on the owning core's own thread (a handler writing back) records the queue in a
//! core-local list instead of sending a command.
//!
//! One sender at a time keeps the byte order (`Sender`): the core while its outbox holds
//! chunks, or a producer thread handing on a `BufferedWriter` batch, which sends straight from
//! its own thread with one nonblocking `sendmsg` when nobody else is sending (no hand-off to the
//! core's thread). What such a send leaves goes back to the front of the queue for the core.
//! `producer.rs` holds the producers' side, `core_side.rs` the core's.
//!
//! The queue bounds the bytes it holds (waiting plus in flight): a full queue makes writers wait
//! (or fail with `Full`). When a connection fails, the chunks the kernel did not finish go back
//! to the front, cut at a frame boundary, and are sent first on the next connection, so no
//! accepted message is lost silently.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;

use crate::engine::core::{Command, CoreShared};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::{FrameIndex, Link};
use crate::error::ConnError;

mod core_side;
mod producer;
#[cfg(test)]
mod tests;

const UP: u8 = 0;
const RECONNECTING: u8 = 1;
const DOWN: u8 = 2;
const CLOSED: u8 = 3;

/// Who may send on the connection now: one sender at a time keeps the byte order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sender {
    Nobody,
    /// The core: it holds taken chunks in its outbox.
    Core,
    /// A producer thread, in a direct send.
    Producer,
}

/// Everything producers and the core share, under one lock.
struct Ctl {
    /// Chunks waiting for the core, in send order; producers append to the back one.
    chunks: VecDeque<Chunk>,
    /// Bytes accepted and not yet known to be sent: waiting here plus taken by the core.
    held: usize,
    /// Unsent bytes in `chunks`.
    queued: usize,
    sender: Sender,
    /// A direct send found the socket's buffer full: producers leave sending to the core until
    /// one of its sends completes (the ring waits for room without spinning).
    direct_blocked: bool,
    /// The attached connection's socket, for direct sends.
    fd: Option<Arc<OwnedFd>>,
    /// Chunks out for a direct send (kept to reuse the allocation).
    direct: VecDeque<Chunk>,
    /// The core found nothing to send and waits to be told.
    armed: bool,
    /// The key (a `ConnKey`) of the connection that drains this queue on its core, if attached.
    key: Option<u64>,
    error: Option<Arc<ConnError>>,
    /// Threads blocked on `changed`.
    blocked: usize,
    /// Async writers waiting for room or for a state change.
    wakers: Vec<Waker>,
}

/// See the module docs.
pub(crate) struct SendQueue {
    ctl: Mutex<Ctl>,
    changed: Condvar,
    /// The link state, also readable without the lock (changed only under it).
    state: AtomicU8,
    limit: usize,
    core: Arc<CoreShared>,
    frames: Box<dyn FrameIndex>,
    /// On a failure, go to `Reconnecting` (and call `on_down`) instead of `Down`.
    auto_reconnect: bool,
    on_down: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl SendQueue {
    /// A queue drained by `core`, holding at most `limit` bytes (a single frame larger than that
    /// is accepted into an empty queue). With `auto_reconnect`, a failure leaves writes accepted
    /// while [`SendQueue::set_on_down`]'s hook reconnects.
    pub(crate) fn new(
        core: Arc<CoreShared>,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        auto_reconnect: bool,
    ) -> Arc<SendQueue> {
        Arc::new(SendQueue {
            ctl: Mutex::new(Ctl {
                chunks: VecDeque::new(),
                held: 0,
                queued: 0,
                sender: Sender::Nobody,
                direct_blocked: false,
                fd: None,
                direct: VecDeque::new(),
                armed: true,
                key: None,
                error: None,
                blocked: 0,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
            state: AtomicU8::new(UP),
            limit: limit.max(1),
            core,
            frames,
            auto_reconnect,
            on_down: OnceLock::new(),
        })
    }

    /// Sets the hook called (on the core) when a failure starts a reconnect.
    pub(crate) fn set_on_down(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_down.set(hook);
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
        ctl.held == 0 || ctl.held + len <= self.limit
    }

    /// Async writers: registers `waker` to be woken when room frees up or the link changes.
    /// Returns `false` (and registers nothing) if a `len`-byte frame fits now or the link is
    /// down: the caller retries at once.
    pub(crate) fn register_waker(&self, waker: &Waker, len: usize) -> bool {
        let mut ctl = self.lock();
        if self.state.load(Ordering::Acquire) >= DOWN || self.fits(&ctl, len) {
            return false;
        }
        ctl.wakers.push(waker.clone());
        true
    }

    /// Nobody is reconnecting yet but someone will: accept writes again (queued meanwhile).
    pub(crate) fn start_reconnecting(&self) -> bool {
        let mut ctl = self.lock();
        let ok = self
            .state
            .compare_exchange(DOWN, RECONNECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok && ctl.error.is_none() {
            ctl.error = Some(Arc::new(ConnError::NotConnected));
        }
        self.notify(&mut ctl);
        ok
    }

    /// A queue that starts without a connection (connecting in the background).
    pub(crate) fn set_reconnecting(&self, err: Arc<ConnError>) {
        let mut ctl = self.lock();
        ctl.error = Some(err);
        let _ = self
            .state
            .compare_exchange(UP, RECONNECTING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The core this queue belongs to.
    pub(crate) fn core(&self) -> &Arc<CoreShared> {
        &self.core
    }

    /// The link's current state.
    pub(crate) fn link(&self) -> Link {
        match self.state.load(Ordering::Acquire) {
            UP => Link::Up,
            CLOSED => Link::Closed,
            RECONNECTING => Link::Reconnecting,
            _ => Link::Down(
                self.lock()
                    .error
                    .clone()
                    .unwrap_or_else(|| Arc::new(ConnError::NotConnected)),
            ),
        }
    }

    /// Asks the core to read the connection draining this queue again (its consumer has room).
    pub(crate) fn request_resume(self: &Arc<Self>) {
        self.core.send(Command::Resume(self.clone()));
    }

    /// Asks the core to close the connection draining this queue: after sending what is
    /// queued, or at once (`force`: what was not sent comes back to the queue). With `wait`,
    /// returns a receiver that hears once it is closed (`None` if the core has ended).
    pub(crate) fn request_close(
        self: &Arc<Self>,
        force: bool,
        wait: bool,
    ) -> Option<std::sync::mpsc::Receiver<()>> {
        let (ack, done) = match wait {
            true => {
                let (ack, done) = std::sync::mpsc::sync_channel(1);
                (Some(ack), Some(done))
            }
            false => (None, None),
        };
        let sent = self.core.send(Command::CloseConn {
            sendq: self.clone(),
            force,
            ack,
        });
        done.filter(|_| sent)
    }

    /// Waits until everything accepted so far was handed to the kernel (`Ok(true)`), or until
    /// `deadline` (`Ok(false)`). Errors when the link is down or closed with bytes still queued.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> Result<bool, Link> {
        let mut ctl = self.lock();
        loop {
            if ctl.held == 0 {
                return Ok(true);
            }
            match self.state.load(Ordering::Acquire) {
                UP | RECONNECTING => {}
                _ => {
                    drop(ctl);
                    return Err(self.link());
                }
            }
            match self.wait(ctl, deadline) {
                Some(next) => ctl = next,
                None => return Ok(false),
            }
        }
    }

    /// A reconnect is about to attach a new connection: writes are accepted again.
    pub(crate) fn relink(&self) {
        let _ctl = self.lock();
        let _ = self
            .state
            .compare_exchange(RECONNECTING, UP, Ordering::AcqRel, Ordering::Acquire);
        let _ = self
            .state
            .compare_exchange(DOWN, UP, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Nobody will reconnect: refuse writes with `err`, and return everything queued.
    pub(crate) fn give_up(&self, err: Arc<ConnError>) -> BytesMut {
        let mut ctl = self.settled(self.lock());
        if self.state.load(Ordering::Acquire) != CLOSED {
            self.state.store(DOWN, Ordering::Release);
            ctl.error = Some(err);
        }
        let rest = self.drain(&mut ctl);
        self.notify(&mut ctl);
        rest
    }

    /// Closes the queue for good and returns what was never handed to the kernel.
    pub(crate) fn close(&self) -> BytesMut {
        let mut ctl = self.settled(self.lock());
        self.state.store(CLOSED, Ordering::Release);
        let rest = self.drain(&mut ctl);
        self.notify(&mut ctl);
        rest
    }

    /// Waits until no direct send is out, so that what it leaves is back in the queue (a direct
    /// send never blocks, so this is short).
    fn settled<'a>(&'a self, mut ctl: MutexGuard<'a, Ctl>) -> MutexGuard<'a, Ctl> {
        while ctl.sender == Sender::Producer {
            // The producer notifies under the lock when it hands the token back.
            ctl = match self.wait(ctl, None) {
                Some(ctl) => ctl,
                None => self.lock(),
            };
        }
        ctl
    }

    /// Takes every waiting frame out, in order (chunks go back to the pool).
    fn drain(&self, ctl: &mut Ctl) -> BytesMut {
        let mut rest = BytesMut::new();
        for chunk in ctl.chunks.drain(..) {
            rest.extend_from_slice(chunk.resendable());
            ctl.held = ctl.held.saturating_sub(chunk.held());
            self.core.pool().put(chunk);
        }
        ctl.queued = 0;
        rest
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        let ctl = self.ctl.get_mut().unwrap_or_else(|e| e.into_inner());
        if ctl.chunks.iter().any(|c| c.held() > 0) {
            tracing::warn!("send queue dropped with frames never handed to the kernel");
        }
    }
}
