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

use crate::engine::core::{defer_flush, Command, CoreShared};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::direct;
use crate::engine::send::outbox::{Outbox, MAX_CHUNKS_PER_SEND};
use crate::engine::send::{FrameIndex, Link, PushError};
use crate::error::ConnError;
use crate::frame::Frame;

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
    /// The slot of the connection that drains this queue on its core, if attached.
    slot: Option<u32>,
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
                slot: None,
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

    /// Queues one frame, waiting (until `deadline`, if any) for room.
    pub(crate) fn push(
        self: &Arc<Self>,
        frame: &Frame<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        self.push_with(frame.len(), deadline, |dst| {
            frame.write_to(dst);
            true
        })
        .map(|_| ())
    }

    /// Reserves `len` bytes in the open chunk (waiting until `deadline`, if any, for room) and
    /// lets `fill` write a whole frame into them, under the queue's lock: `fill` must not write
    /// to this queue. The frame is queued if `fill` returns `true` (`Ok(true)`); otherwise
    /// nothing is (`Ok(false)`).
    pub(crate) fn push_with(
        self: &Arc<Self>,
        len: usize,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<bool, PushError> {
        let mut ctl = self.room_for(self.lock(), len, deadline)?;
        if !self.append(&mut ctl, len, fill) {
            return Ok(false);
        }
        self.announce(ctl);
        Ok(true)
    }

    /// Queues `frames` in order, waiting (until `deadline`, if any) for room whenever the queue
    /// is full; the lock is taken once unless it has to wait. Returns how many were queued and
    /// why the rest were not.
    pub(crate) fn push_frames(
        self: &Arc<Self>,
        frames: &[Frame<'_>],
        deadline: Option<Instant>,
    ) -> (usize, Result<(), PushError>) {
        let mut ctl = self.lock();
        for (done, frame) in frames.iter().enumerate() {
            if !self.fits(&ctl, frame.len()) || self.state.load(Ordering::Acquire) >= DOWN {
                if done > 0 {
                    // Let the core start on what is queued while this thread waits.
                    ctl = self.announce_keep(ctl);
                }
                ctl = match self.room_for(ctl, frame.len(), deadline) {
                    Ok(ctl) => ctl,
                    Err(err) => return (done, Err(err)),
                };
            }
            self.append(&mut ctl, frame.len(), |dst| {
                frame.write_to(dst);
                true
            });
        }
        if !frames.is_empty() {
            self.announce(ctl);
        }
        (frames.len(), Ok(()))
    }

    /// Waits (until `deadline`) until the link accepts writes and a `len`-byte frame fits.
    fn room_for<'a>(
        &self,
        mut ctl: MutexGuard<'a, Ctl>,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, Ctl>, PushError> {
        loop {
            match self.state.load(Ordering::Acquire) {
                CLOSED => return Err(PushError::Closed),
                DOWN => {
                    let err = ctl.error.clone().unwrap_or_else(|| {
                        Arc::new(ConnError::Io(std::io::Error::from(
                            std::io::ErrorKind::NotConnected,
                        )))
                    });
                    return Err(PushError::Down(err));
                }
                _ => {}
            }
            if self.fits(&ctl, len) {
                return Ok(ctl);
            }
            ctl = self.wait(ctl, deadline).ok_or(PushError::TimedOut)?;
        }
    }

    /// Appends one `len`-byte frame written by `fill` (see `push_with`).
    fn append(&self, ctl: &mut Ctl, len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> bool {
        if ctl.chunks.back().map_or(true, |c| c.room() < len) {
            ctl.chunks.push_back(self.core.pool().get(len));
        }
        let Some(chunk) = ctl.chunks.back_mut() else {
            return false;
        };
        if !fill(chunk.spare(len)) {
            return false;
        }
        chunk.commit(len);
        ctl.held += len;
        ctl.queued += len;
        true
    }

    /// Appends whole chunks of frames built elsewhere (a [`BufferedWriter`]'s), waiting (until
    /// `deadline`, if any) for room, then sends what is queued: from a producer thread, straight
    /// away with one nonblocking syscall if nobody else is sending (as `BufWriter::flush`
    /// does), else through the core. On an error the chunks stay in `chunks`.
    ///
    /// [`BufferedWriter`]: crate::BufferedWriter
    pub(crate) fn push_chunks(
        self: &Arc<Self>,
        chunks: &mut VecDeque<Chunk>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        let bytes: usize = chunks.iter().map(Chunk::held).sum();
        if bytes == 0 {
            return Ok(());
        }
        let mut ctl = self.room_for(self.lock(), bytes, deadline)?;
        ctl.held += bytes;
        ctl.queued += bytes;
        ctl.chunks.extend(chunks.drain(..));
        let ctl = self.send_direct(ctl);
        self.announce(ctl);
        Ok(())
    }

    /// From a producer thread (not the core's): if nobody is sending, sends what is queued now
    /// with one nonblocking syscall. What the kernel does not take (its buffer is full, or the
    /// connection failed) stays first in the queue, and the core is told.
    fn send_direct<'a>(self: &'a Arc<Self>, mut ctl: MutexGuard<'a, Ctl>) -> MutexGuard<'a, Ctl> {
        if ctl.queued == 0
            || ctl.sender != Sender::Nobody
            || ctl.direct_blocked
            || self.state.load(Ordering::Acquire) != UP
            || self.core.is_current()
        {
            return ctl;
        }
        let Some(fd) = ctl.fd.clone() else {
            return ctl;
        };
        ctl.sender = Sender::Producer;
        let mut out = std::mem::take(&mut ctl.direct);
        while ctl.chunks.front().is_some_and(|c| !c.unsent().is_empty()) {
            if let Some(chunk) = ctl.chunks.pop_front() {
                ctl.queued -= chunk.unsent().len();
                out.push_back(chunk);
            }
        }
        drop(ctl);
        // An error leaves everything queued: the core's own send meets it and closes.
        let mut sent = direct::send_chunks(&fd, &out).unwrap_or(0);
        let mut ctl = self.lock();
        let same_conn = ctl.fd.as_ref().is_some_and(|now| Arc::ptr_eq(now, &fd));
        drop(fd);
        let mut freed = 0;
        while let Some(front) = out.front_mut() {
            let take = sent.min(front.unsent().len());
            front.advance(take);
            sent -= take;
            if !front.is_sent() {
                break;
            }
            if let Some(chunk) = out.pop_front() {
                freed += chunk.held();
                self.core.pool().put(chunk);
            }
        }
        ctl.held = ctl.held.saturating_sub(freed);
        ctl.sender = Sender::Nobody;
        if !same_conn {
            // The connection went away meanwhile: what is left starts again at a frame.
            let dropped = self.rewind_all(&mut out);
            ctl.held = ctl.held.saturating_sub(dropped);
        }
        if !out.is_empty() {
            // Leftovers go first; the core must send them (announce tells it), and producers
            // leave the socket to it until it has made progress.
            ctl.armed = true;
            ctl.direct_blocked = true;
        }
        while let Some(chunk) = out.pop_back() {
            ctl.queued += chunk.unsent().len();
            ctl.chunks.push_front(chunk);
        }
        ctl.direct = out;
        if freed > 0 {
            self.notify(&mut ctl);
        }
        ctl
    }

    /// After an append: tells the core if it waits to be told, and lets go of the lock.
    fn announce(self: &Arc<Self>, mut ctl: MutexGuard<'_, Ctl>) {
        if !ctl.armed || ctl.queued == 0 {
            // Told already, or a direct send took everything: nothing for the core.
            return;
        }
        ctl.armed = false;
        let slot = ctl.slot;
        drop(ctl);
        self.tell_core(slot);
    }

    /// `announce`, keeping the lock (re-taken if a command had to be sent).
    fn announce_keep<'a>(self: &'a Arc<Self>, mut ctl: MutexGuard<'a, Ctl>) -> MutexGuard<'a, Ctl> {
        if !ctl.armed {
            return ctl;
        }
        ctl.armed = false;
        let slot = ctl.slot;
        drop(ctl);
        self.tell_core(slot);
        self.lock()
    }

    /// Asks the core to take from this queue (it said it waits to be told).
    fn tell_core(self: &Arc<Self>, slot: Option<u32>) {
        if self.core.is_current() {
            // On the owning core's thread: no command, no wake-up; the loop looks at its local
            // list before it next enters the kernel. (Detached: `attach` looks.)
            if let Some(slot) = slot {
                defer_flush(slot, Arc::as_ptr(self));
            }
        } else {
            self.core.send(Command::Flush(self.clone()));
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
        let mut ctl = self.lock();
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
        let mut ctl = self.lock();
        self.state.store(CLOSED, Ordering::Release);
        let rest = self.drain(&mut ctl);
        self.notify(&mut ctl);
        rest
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

    // ---- core side -------------------------------------------------------------------------

    /// Core: the queue now drains into connection `slot`. Returns whether bytes are waiting.
    pub(crate) fn attach(&self, slot: u32, fd: Arc<OwnedFd>) -> bool {
        let mut ctl = self.lock();
        ctl.slot = Some(slot);
        ctl.fd = Some(fd);
        // A flush announced while detached went nowhere: make the next push tell the core
        // again (the caller starts a send if this returns true).
        ctl.armed = true;
        ctl.chunks.iter().any(|c| !c.unsent().is_empty())
    }

    /// Core: the slot of the connection this queue drains into, if any.
    pub(crate) fn attached_slot(&self) -> Option<u32> {
        self.lock().slot
    }

    /// Core: moves every waiting chunk (at most a send's worth) into `out`. Returns `false` if
    /// there was nothing; then the next push tells the core.
    pub(crate) fn take(&self, out: &mut Outbox) -> bool {
        let mut ctl = self.lock();
        if ctl.sender == Sender::Producer {
            // A producer is sending; it tells the core if it leaves anything.
            ctl.armed = true;
            return false;
        }
        let mut taken = 0;
        while taken < MAX_CHUNKS_PER_SEND {
            match ctl.chunks.front() {
                Some(front) if !front.unsent().is_empty() => {}
                _ => break,
            }
            if let Some(chunk) = ctl.chunks.pop_front() {
                ctl.queued -= chunk.unsent().len();
                out.chunks_mut().push_back(chunk);
                taken += 1;
            }
        }
        if taken > 0 {
            ctl.sender = Sender::Core;
        } else {
            if ctl.sender == Sender::Core {
                ctl.sender = Sender::Nobody;
            }
            ctl.armed = true;
            // Idle: an empty open chunk goes back to the pool, so idle connections hold none.
            if let Some(chunk) = ctl.chunks.pop_front() {
                self.core.pool().put(chunk);
            }
        }
        taken > 0
    }

    /// Core: the kernel took all of `done` (chunks from [`SendQueue::take`]); `idle` says the
    /// core holds nothing more (it sends again only after another `take`).
    pub(crate) fn complete(&self, done: &mut Vec<Chunk>, idle: bool) {
        if done.is_empty() && !idle {
            return;
        }
        let bytes: usize = done.iter().map(Chunk::held).sum();
        {
            let mut ctl = self.lock();
            ctl.held = ctl.held.saturating_sub(bytes);
            if idle && ctl.sender == Sender::Core {
                ctl.sender = Sender::Nobody;
            }
            ctl.direct_blocked = false;
            self.notify(&mut ctl);
        }
        for chunk in done.drain(..) {
            self.core.pool().put(chunk);
        }
    }

    /// Rewinds every chunk to the start of the frame its connection was sending (a new
    /// connection must send those frames whole). Returns the bytes known sent that were dropped.
    fn rewind_all(&self, chunks: &mut VecDeque<Chunk>) -> usize {
        let mut dropped = 0;
        for chunk in chunks.iter_mut() {
            let before = chunk.held();
            chunk.rewind(|buf, off| self.frames.frame_start(buf, off));
            dropped += before - chunk.held();
        }
        dropped
    }

    /// Core: the connection is gone. `out` holds what was being sent; the frames the kernel did
    /// not take in full are kept to be sent first next time. The link becomes
    /// `Reconnecting`/`Down` (`reason` given and `reusable`) or `Closed`.
    pub(crate) fn detach(&self, out: &mut Outbox, reason: Option<Arc<ConnError>>, reusable: bool) {
        let returned = out.take_all();
        let mut ctl = self.lock();
        ctl.slot = None;
        ctl.fd = None;
        ctl.direct_blocked = false;
        if ctl.sender == Sender::Core {
            ctl.sender = Sender::Nobody;
        }
        for chunk in returned.into_iter().rev() {
            ctl.chunks.push_front(chunk);
        }
        // The chunk a send was in the middle of starts again at the frame the kernel was in.
        let dropped = self.rewind_all(&mut ctl.chunks);
        ctl.held = ctl.held.saturating_sub(dropped);
        ctl.queued = ctl.chunks.iter().map(|c| c.unsent().len()).sum();
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
        self.changed.notify_all();
        for waker in ctl.wakers.drain(..) {
            waker.wake();
        }
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
        if ctl.chunks.iter().any(|c| c.held() > 0) {
            tracing::warn!("send queue dropped with frames never handed to the kernel");
        }
    }
}
