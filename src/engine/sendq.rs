//! The outbound queue of one connection (or one writer across its reconnects).
//!
//! Writers push whole frames into a lock-free ring ([`FrameRing`]): one compare-and-swap per
//! message, no lock, so frames from concurrent writers never interleave and each writer's order
//! is kept. The owning core takes everything published as one buffer and sends it with one
//! `send`, so many small frames share a syscall. A producer tells the core only when the core
//! said it went idle on this queue (`armed`), so a busy core is not woken per message.
//!
//! The ring bounds the queued bytes: a full ring makes writers wait (or fail with `Full`). When
//! a connection fails, the bytes the kernel never took go back into `resend`, cut at a frame
//! boundary, and are sent first on the next connection, so no accepted message is lost silently.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;

use crate::engine::core::{Command, CoreShared};
use crate::engine::framering::FrameRing;
use crate::error::ConnError;
use crate::frame::Frame;

/// Finds frame boundaries in encoded bytes; supplied by the layer that owns the codec.
pub(crate) trait FrameIndex: Send + Sync {
    /// The start of the frame that contains byte `offset` of `buf` (frames start at 0).
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize;
}

/// Whether the queue currently feeds a connection.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// A connection is live or being set up: writes are accepted.
    Up,
    /// The connection failed and a reconnect is under way: writes are still accepted and wait.
    Reconnecting,
    /// The connection failed and nobody reconnects: writes are refused until a reconnect.
    Down(Arc<ConnError>),
    /// Closed for good: writes fail.
    Closed,
}

const UP: u8 = 0;
const RECONNECTING: u8 = 1;
const DOWN: u8 = 2;
const CLOSED: u8 = 3;

/// Why a push was refused.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The link is down (the caller may reconnect and retry).
    Down(Arc<ConnError>),
    /// The queue is closed.
    Closed,
    /// The deadline passed while waiting for room.
    TimedOut,
}

/// State changed only on the slow paths (attach, detach, send completion, close).
struct Ctl {
    /// The slot of the connection that drains this queue on its core, if attached.
    slot: Option<u32>,
    error: Option<Arc<ConnError>>,
    /// Frames taken from the ring whose send failed: sent before anything in the ring.
    resend: BytesMut,
    spare: BytesMut,
    /// Bytes taken by the core and not yet fully handed to the kernel.
    inflight: usize,
    /// Async writers waiting for room or for a state change.
    wakers: Vec<Waker>,
}

/// See the module docs.
pub(crate) struct SendQueue {
    ring: FrameRing,
    state: AtomicU8,
    /// The core found nothing to send and waits to be told (by a `Flush` command).
    armed: AtomicBool,
    waiters: AtomicUsize,
    ctl: Mutex<Ctl>,
    changed: Condvar,
    core: Arc<CoreShared>,
    frames: Box<dyn FrameIndex>,
    /// On a failure, go to `Reconnecting` (and call `on_down`) instead of `Down`.
    auto_reconnect: bool,
    on_down: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// At most this many bytes go into one send.
const MAX_SEND: usize = 1 << 20;
/// Spare buffers above this capacity are not kept between sends.
const KEEP_CAPACITY: usize = 2 << 20;

impl SendQueue {
    /// A queue drained by `core`, holding at most about `limit` bytes. With `auto_reconnect`, a
    /// failure leaves writes accepted while [`SendQueue::set_on_down`]'s hook reconnects.
    pub(crate) fn new(
        core: Arc<CoreShared>,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        auto_reconnect: bool,
    ) -> Arc<SendQueue> {
        Arc::new(SendQueue {
            ring: FrameRing::new(limit),
            state: AtomicU8::new(UP),
            armed: AtomicBool::new(true),
            waiters: AtomicUsize::new(0),
            ctl: Mutex::new(Ctl {
                slot: None,
                error: None,
                resend: BytesMut::new(),
                spare: BytesMut::new(),
                inflight: 0,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
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

    fn lock(&self) -> MutexGuard<'_, Ctl> {
        // Every update under this lock is a few plain assignments, so a panic elsewhere while
        // holding it cannot leave it inconsistent: a poisoned lock is still usable.
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        ctl: MutexGuard<'a, Ctl>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Ctl>> {
        match deadline {
            None => Some(self.changed.wait(ctl).unwrap_or_else(|e| e.into_inner())),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                Some(
                    self.changed
                        .wait_timeout(ctl, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0,
                )
            }
        }
    }

    /// Wakes blocked and async waiters, if any (cheap when there are none).
    fn notify(&self, ctl: &mut Ctl) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
            for waker in ctl.wakers.drain(..) {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                waker.wake();
            }
        }
    }

    /// Async writers: registers `waker` to be woken when room frees up or the link changes.
    /// Returns `false` (and registers nothing) if a `len`-byte frame fits now or the link is
    /// down: the caller retries at once.
    pub(crate) fn register_waker(&self, waker: &Waker, len: usize) -> bool {
        let mut ctl = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if self.state.load(Ordering::Acquire) >= DOWN || self.ring.can_fit(len) {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
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
            ctl.error = Some(Arc::new(ConnError::Io(std::io::Error::from(
                std::io::ErrorKind::NotConnected,
            ))));
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
            _ => Link::Down(self.lock().error.clone().unwrap_or_else(|| {
                Arc::new(ConnError::Io(std::io::Error::from(
                    std::io::ErrorKind::NotConnected,
                )))
            })),
        }
    }

    /// Queues one frame, waiting (until `deadline`, if any) for room. Lock-free unless the ring
    /// is full.
    pub(crate) fn push(
        self: &Arc<Self>,
        frame: &Frame<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        loop {
            match self.state.load(Ordering::Acquire) {
                CLOSED => return Err(PushError::Closed),
                DOWN => {
                    if let Link::Down(err) = self.link() {
                        return Err(PushError::Down(err));
                    }
                    continue;
                }
                _ => {}
            }
            if self
                .ring
                .push(frame.len(), |dst| {
                    frame.write_to(dst);
                })
                .is_ok()
            {
                // The ring published with a SeqCst swap; this SeqCst load pairs with the core's
                // SeqCst arm-then-look in `take`: one of the two sees the other.
                if self.armed.load(Ordering::SeqCst) && self.armed.swap(false, Ordering::AcqRel) {
                    self.core.send(Command::Flush(self.clone()));
                }
                return Ok(());
            }
            self.wait_for_room(frame.len(), deadline)?;
        }
    }

    fn wait_for_room(&self, len: usize, deadline: Option<Instant>) -> Result<(), PushError> {
        let mut ctl = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.state.load(Ordering::Acquire) >= DOWN || self.ring.can_fit(len) {
                break Ok(());
            }
            match self.wait(ctl, deadline) {
                Some(next) => ctl = next,
                None => {
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return Err(PushError::TimedOut);
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Waits until everything accepted so far was handed to the kernel (`Ok(true)`), or until
    /// `deadline` (`Ok(false)`). Errors when the link is down or closed with bytes still queued.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> Result<bool, Link> {
        let mut ctl = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.ring.is_empty() && ctl.resend.is_empty() && ctl.inflight == 0 {
                break Ok(true);
            }
            match self.state.load(Ordering::Acquire) {
                UP | RECONNECTING => {}
                _ => {
                    drop(ctl);
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return Err(self.link());
                }
            }
            match self.wait(ctl, deadline) {
                Some(next) => ctl = next,
                None => {
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return Ok(false);
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
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
        let mut ctl = self.lock();
        if self.state.load(Ordering::Acquire) != CLOSED {
            self.state.store(DOWN, Ordering::Release);
            ctl.error = Some(err);
        }
        let rest = self.drain(&mut ctl);
        self.wake_all(&mut ctl);
        rest
    }

    fn wake_all(&self, ctl: &mut Ctl) {
        self.changed.notify_all();
        for waker in ctl.wakers.drain(..) {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            waker.wake();
        }
    }

    /// Closes the queue for good and returns what was never handed to the kernel.
    pub(crate) fn close(&self) -> BytesMut {
        let mut ctl = self.lock();
        self.state.store(CLOSED, Ordering::Release);
        let rest = self.drain(&mut ctl);
        self.wake_all(&mut ctl);
        rest
    }

    fn drain(&self, ctl: &mut Ctl) -> BytesMut {
        let mut rest = std::mem::take(&mut ctl.resend);
        while self.ring.consume_into(&mut rest, usize::MAX) > 0 {}
        rest
    }

    // ---- core side -------------------------------------------------------------------------

    /// Core: the queue now drains into connection `slot`. Returns whether bytes are waiting.
    pub(crate) fn attach(&self, slot: u32) -> bool {
        let mut ctl = self.lock();
        ctl.slot = Some(slot);
        // A Flush sent while detached was dropped: make the next push tell the core again (the
        // caller starts a send if this returns true).
        self.armed.store(true, Ordering::SeqCst);
        !ctl.resend.is_empty() || !self.ring.is_empty()
    }

    /// Core: the slot of the connection this queue drains into, if any.
    pub(crate) fn attached_slot(&self) -> Option<u32> {
        self.lock().slot
    }

    /// Core: takes what is queued (up to 1 MiB) for one send, or `None` if nothing is; in that
    /// case the next push tells the core.
    pub(crate) fn take(&self) -> Option<BytesMut> {
        let mut ctl = self.lock();
        let mut out = if ctl.resend.is_empty() {
            std::mem::take(&mut ctl.spare)
        } else {
            std::mem::take(&mut ctl.resend)
        };
        self.ring.consume_into(&mut out, MAX_SEND);
        if out.is_empty() {
            // Idle (or stopped at a frame still being written): ask to be told, then look once
            // more, pairing with the producer's publish-then-check. With bytes taken there is no
            // need: the core comes back when their send completes.
            self.armed.store(true, Ordering::SeqCst);
            if self.ring.has_published() {
                self.ring.consume_into(&mut out, MAX_SEND);
            }
        }
        self.notify(&mut ctl);
        if out.is_empty() {
            ctl.spare = out;
            return None;
        }
        ctl.inflight += out.len();
        Some(out)
    }

    /// Core: a buffer from [`SendQueue::take`] was fully handed to the kernel.
    pub(crate) fn complete(&self, mut buf: BytesMut) {
        let mut ctl = self.lock();
        ctl.inflight = ctl.inflight.saturating_sub(buf.len());
        if buf.capacity() <= KEEP_CAPACITY && ctl.spare.capacity() < buf.capacity() {
            buf.clear();
            ctl.spare = buf;
        }
        self.notify(&mut ctl);
    }

    /// Core: the connection is gone. `sending` is the buffer that was being sent (if any) and
    /// how much of it the kernel took. The unsent frames are kept to be sent first next time;
    /// the link becomes `Reconnecting`/`Down` (`reason` given and `reusable`) or `Closed`.
    pub(crate) fn detach(
        &self,
        sending: Option<(BytesMut, usize)>,
        reason: Option<Arc<ConnError>>,
        reusable: bool,
    ) {
        let mut ctl = self.lock();
        ctl.slot = None;
        if let Some((mut buf, sent)) = sending {
            ctl.inflight = ctl.inflight.saturating_sub(buf.len());
            let start = if sent >= buf.len() {
                buf.len()
            } else {
                self.frames.frame_start(&buf, sent)
            };
            if start < buf.len() {
                let unsent = buf.split_off(start);
                let mut front = BytesMut::with_capacity(unsent.len() + ctl.resend.len());
                front.extend_from_slice(&unsent);
                front.extend_from_slice(&ctl.resend);
                ctl.resend = front;
            }
        }
        let mut reconnect = false;
        if self.state.load(Ordering::Acquire) != CLOSED {
            match reason {
                Some(err) if reusable => {
                    ctl.error = Some(err);
                    reconnect = self.auto_reconnect;
                    let next = if reconnect { RECONNECTING } else { DOWN };
                    self.state.store(next, Ordering::Release);
                }
                _ => self.state.store(CLOSED, Ordering::Release),
            }
        }
        self.wake_all(&mut ctl);
        drop(ctl);
        if reconnect {
            if let Some(hook) = self.on_down.get() {
                hook();
            }
        }
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        let ctl = self.ctl.get_mut().unwrap_or_else(|e| e.into_inner());
        if !ctl.resend.is_empty() || !self.ring.is_empty() {
            tracing::warn!("send queue dropped with frames never handed to the kernel");
        }
    }
}
