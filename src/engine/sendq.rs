//! The outbound queue of one connection (or one writer across its reconnects).
//!
//! User threads append whole encoded frames under a short lock, so frames from concurrent writers
//! never interleave. The owning core takes everything queued as one buffer and sends it with one
//! `send`, so many small frames share a syscall. The queue is bounded in bytes: writers wait for
//! room. When a connection fails, the bytes that never reached the kernel go back to the front
//! of the queue, cut at a frame boundary, so no accepted message is lost silently.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;

use crate::engine::core::{Command, CoreShared};
use crate::error::ConnError;

/// Finds frame boundaries in encoded bytes; supplied by the layer that owns the codec.
pub(crate) trait FrameIndex: Send + Sync {
    /// The start of the frame that contains byte `offset` of `buf` (frames start at 0).
    fn frame_start(&self, buf: &[u8], offset: usize) -> usize;
}

/// Whether the queue currently feeds a live connection.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// A connection is being set up or is live: writes are accepted.
    Up,
    /// The connection failed; a writer may reconnect, queued bytes are kept.
    Down(Arc<ConnError>),
    /// Closed for good: writes fail.
    Closed,
}

struct State {
    buf: BytesMut,
    spare: BytesMut,
    inflight: usize,
    scheduled: bool,
    link: Link,
    /// The slot of the connection that drains this queue on its core, if attached.
    slot: Option<u32>,
}

/// Why a push was refused.
pub(crate) enum PushError<E> {
    /// The encoder refused the message.
    Encode(E),
    /// The link is down (the caller may reconnect and retry).
    Down(Arc<ConnError>),
    /// The queue is closed.
    Closed,
    /// The deadline passed while waiting for room.
    TimedOut,
}

/// See the module docs.
pub(crate) struct SendQueue {
    state: Mutex<State>,
    changed: Condvar,
    limit: usize,
    core: Arc<CoreShared>,
    frames: Box<dyn FrameIndex>,
}

/// Spare buffers above this capacity are not kept between sends.
const KEEP_CAPACITY: usize = 1 << 20;

impl SendQueue {
    /// A queue drained by `core`, holding at most `limit` bytes (a larger single frame is let in
    /// when the queue is empty).
    pub(crate) fn new(
        core: Arc<CoreShared>,
        limit: usize,
        frames: Box<dyn FrameIndex>,
    ) -> Arc<SendQueue> {
        Arc::new(SendQueue {
            state: Mutex::new(State {
                buf: BytesMut::new(),
                spare: BytesMut::new(),
                inflight: 0,
                scheduled: false,
                link: Link::Up,
                slot: None,
            }),
            changed: Condvar::new(),
            limit,
            core,
            frames,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is
        // a few plain assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The core this queue belongs to.
    pub(crate) fn core(&self) -> &Arc<CoreShared> {
        &self.core
    }

    /// Appends one frame written by `encode`, waiting (until `deadline`, if any) for room.
    ///
    /// `encode` must append exactly one whole frame or nothing.
    pub(crate) fn push<T, E>(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        encode: impl FnOnce(&mut BytesMut) -> Result<T, E>,
    ) -> Result<T, PushError<E>> {
        let mut st = self.lock();
        loop {
            match &st.link {
                Link::Closed => return Err(PushError::Closed),
                Link::Down(err) => return Err(PushError::Down(err.clone())),
                Link::Up => {}
            }
            let queued = st.buf.len() + st.inflight;
            if queued == 0 || queued < self.limit {
                break;
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(PushError::TimedOut);
                    }
                    self.changed
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        let out = encode(&mut st.buf).map_err(PushError::Encode)?;
        let notify = !st.scheduled && st.slot.is_some();
        st.scheduled |= notify;
        drop(st);
        if notify {
            self.core.send(Command::Flush(self.clone()));
        }
        Ok(out)
    }

    /// Waits until everything accepted so far was handed to the kernel, the link went down, or
    /// `deadline` passed. Returns whether the queue is empty.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> Result<bool, Link> {
        let mut st = self.lock();
        loop {
            match &st.link {
                Link::Up => {}
                other => return Err(other.clone()),
            }
            if st.buf.is_empty() && st.inflight == 0 {
                return Ok(true);
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    self.changed
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// The link's current state.
    pub(crate) fn link(&self) -> Link {
        self.lock().link.clone()
    }

    /// Marks a reconnect in progress: writes are accepted again.
    pub(crate) fn relink(&self) {
        let mut st = self.lock();
        if matches!(st.link, Link::Down(_)) {
            st.link = Link::Up;
        }
    }

    /// Closes the queue for good and returns what was never handed to the kernel.
    pub(crate) fn close(&self) -> BytesMut {
        let mut st = self.lock();
        st.link = Link::Closed;
        let rest = std::mem::take(&mut st.buf);
        drop(st);
        self.changed.notify_all();
        rest
    }

    // ---- core side -------------------------------------------------------------------------

    /// Core: the queue now drains into connection `slot`. Returns whether bytes are waiting.
    pub(crate) fn attach(&self, slot: u32) -> bool {
        let mut st = self.lock();
        st.slot = Some(slot);
        st.scheduled = false;
        !st.buf.is_empty()
    }

    /// Core: the slot of the connection this queue drains into, if any.
    pub(crate) fn attached_slot(&self) -> Option<u32> {
        self.lock().slot
    }

    /// Core: takes everything queued for one send, or `None` if nothing is queued.
    pub(crate) fn take(&self) -> Option<BytesMut> {
        let mut st = self.lock();
        st.scheduled = false;
        if st.buf.is_empty() {
            return None;
        }
        let spare = std::mem::take(&mut st.spare);
        let buf = std::mem::replace(&mut st.buf, spare);
        st.inflight += buf.len();
        Some(buf)
    }

    /// Core: a buffer from [`SendQueue::take`] was fully handed to the kernel.
    pub(crate) fn complete(&self, mut buf: BytesMut) {
        let mut st = self.lock();
        st.inflight = st.inflight.saturating_sub(buf.len());
        if buf.capacity() <= KEEP_CAPACITY && st.spare.capacity() < buf.capacity() {
            buf.clear();
            st.spare = buf;
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Core: the connection is gone. `sending` is the buffer that was being sent (if any) and
    /// `sent` how much of it the kernel took. The unsent frames go back to the front of the
    /// queue; the link becomes `Down(reason)` (a writer may reconnect) or `Closed`.
    pub(crate) fn detach(
        &self,
        sending: Option<(BytesMut, usize)>,
        reason: Option<Arc<ConnError>>,
        reusable: bool,
    ) {
        let mut st = self.lock();
        st.slot = None;
        st.scheduled = false;
        if let Some((mut buf, sent)) = sending {
            st.inflight = st.inflight.saturating_sub(buf.len());
            let start = if sent >= buf.len() {
                buf.len()
            } else {
                self.frames.frame_start(&buf, sent)
            };
            if start < buf.len() {
                let unsent = buf.split_off(start);
                let mut front = BytesMut::with_capacity(unsent.len() + st.buf.len());
                front.extend_from_slice(&unsent);
                front.extend_from_slice(&st.buf);
                st.buf = front;
            }
        }
        if !matches!(st.link, Link::Closed) {
            st.link = match reason {
                Some(err) if reusable => Link::Down(err),
                _ => Link::Closed,
            };
        }
        drop(st);
        self.changed.notify_all();
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if !st.buf.is_empty() {
            tracing::warn!(
                bytes = st.buf.len(),
                "send queue dropped with frames never handed to the kernel"
            );
        }
    }
}
