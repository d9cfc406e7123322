//! The producers' side of a send queue: framing into the open chunk, batches, a
//! `BufferedWriter`'s chunks, the direct send from a producer thread, and telling the core.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::{Ctl, QueueCore, SendQueue, CLOSED, OPEN, REFUSING};
use crate::engine::send::chunk::{Chunk, CHUNK_SIZE};
use crate::engine::send::direct;
use crate::engine::send::gate::PushError;
use crate::engine::send::traits::Encoded;
use crate::error::ConnError;

impl<C: QueueCore> SendQueue<C> {
    /// Queues one frame, waiting (until `deadline`, if any) for room.
    pub(crate) fn push(
        self: &Arc<Self>,
        frame: &impl Encoded,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        self.push_with(frame.len(), deadline, |dst| Some(frame.write_to(dst)))
            .map(|_| ())
    }

    /// Reserves `room` bytes in the open chunk (waiting until `deadline`, if any, for room) and
    /// lets `fill` write one whole frame at their start, under the queue's lock: `fill` must not
    /// write to this queue. `fill` returns the frame's length (at most `room`), which is queued
    /// (`Ok(Some(len))`), or `None` to queue nothing (`Ok(None)`).
    #[inline]
    pub(crate) fn push_with(
        self: &Arc<Self>,
        room: usize,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<usize>, PushError> {
        let mut ctl = self.room_for(self.lock(), room, deadline)?;
        let written = self.append(&mut ctl, room, fill);
        if written.is_some() {
            self.announce(ctl);
        }
        Ok(written)
    }

    /// Queues `frames` in order, waiting (until `deadline`, if any) for room whenever the queue
    /// is full; the lock is taken once unless it has to wait. Returns how many were queued and
    /// why the rest were not.
    pub(crate) fn push_frames<F: Encoded>(
        self: &Arc<Self>,
        frames: &[F],
        deadline: Option<Instant>,
    ) -> (usize, Result<(), PushError>) {
        let mut ctl = self.lock();
        for (done, frame) in frames.iter().enumerate() {
            if !self.fits(&ctl, frame.len()) || self.state.load(Ordering::Acquire) >= REFUSING {
                if done > 0 {
                    // Let the core start on what is queued while this thread waits.
                    ctl = self.announce_keep(ctl);
                }
                ctl = match self.room_for(ctl, frame.len(), deadline) {
                    Ok(ctl) => ctl,
                    Err(err) => return (done, Err(err)),
                };
            }
            self.append(&mut ctl, frame.len(), |dst| Some(frame.write_to(dst)));
        }
        if !frames.is_empty() {
            self.announce(ctl);
        }
        (frames.len(), Ok(()))
    }

    /// Waits (until `deadline`) until the link accepts writes and a `len`-byte frame fits.
    #[inline]
    fn room_for<'a>(
        &self,
        mut ctl: MutexGuard<'a, Ctl>,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, Ctl>, PushError> {
        loop {
            match self.state.load(Ordering::Acquire) {
                CLOSED => return Err(PushError::Closed),
                REFUSING => {
                    let err = ctl
                        .error
                        .clone()
                        .unwrap_or_else(|| Arc::new(ConnError::NotConnected));
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

    /// Appends one frame that `fill` writes into at most `room` bytes (see `push_with`).
    #[inline]
    fn append(
        &self,
        ctl: &mut Ctl,
        room: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        if ctl.chunks.back().map_or(true, |c| c.room() < room) {
            let spare = match &mut ctl.acks {
                Some(acks) if room <= CHUNK_SIZE => acks.spare(),
                _ => None,
            };
            let mut chunk = spare.unwrap_or_else(|| self.core.pool().get(room));
            chunk.number_from(ctl.next_seq);
            ctl.chunks.push_back(chunk);
        }
        let chunk = ctl.chunks.back_mut()?;
        let len = fill(chunk.spare(room))?.min(room);
        chunk.commit(len);
        ctl.unsent += len;
        ctl.queued += len;
        ctl.next_seq += 1;
        Some(len)
    }

    /// Appends whole chunks of frames built elsewhere (a [`BufferedWriter`]'s), waiting (until
    /// `deadline`, if any) for room, then sends what is queued: from a producer thread, straight
    /// away if nobody else is sending (as `BufWriter::flush` does), else through the core. On an
    /// error the chunks stay in `chunks`.
    ///
    /// [`BufferedWriter`]: crate::BufferedWriter
    pub(crate) fn push_chunks(
        self: &Arc<Self>,
        chunks: &mut VecDeque<Chunk>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        let bytes: usize = chunks.iter().map(Chunk::unsent_len).sum();
        if bytes == 0 {
            return Ok(());
        }
        let mut ctl = self.room_for(self.lock(), bytes, deadline)?;
        ctl.unsent += bytes;
        ctl.queued += bytes;
        for mut chunk in chunks.drain(..) {
            ctl.next_seq = chunk.number_from(ctl.next_seq);
            ctl.chunks.push_back(chunk);
        }
        let ctl = self.send_direct(ctl);
        self.announce(ctl);
        Ok(())
    }

    /// From a producer thread (not the core's): if nobody is sending, sends what is queued now
    /// from this thread (`direct::send_batch`: at once, then as the socket drains, for a short
    /// while). What the kernel does not take (its buffer stayed full, or the connection failed)
    /// stays first in the queue, and the core is told.
    pub(super) fn send_direct<'a>(
        self: &'a Arc<Self>,
        mut ctl: MutexGuard<'a, Ctl>,
    ) -> MutexGuard<'a, Ctl> {
        if ctl.queued == 0
            || !ctl.owner.may_send_direct()
            || self.state.load(Ordering::Acquire) != OPEN
            || self.core.is_current()
        {
            return ctl;
        }
        let Some(fd) = ctl.fd.clone() else {
            return ctl;
        };
        if !ctl.owner.start_direct() {
            return ctl;
        }
        let mut out = std::mem::take(&mut ctl.direct);
        while out.len() < direct::MAX_BATCH_CHUNKS
            && ctl.chunks.front().is_some_and(|c| !c.unsent().is_empty())
        {
            if let Some(chunk) = ctl.chunks.pop_front() {
                ctl.queued -= chunk.unsent().len();
                if let Some(acks) = &mut ctl.acks {
                    acks.handed(&chunk);
                }
                out.push_back(chunk);
            }
        }
        drop(ctl);
        // What the kernel does not take stays queued: the core's own send finishes it, or meets
        // the error and closes. (Chunks that could not be sealed: the socket was shut down,
        // so nothing is sent.)
        let mut sent = match self.seal_for(&mut out, &fd) {
            true => direct::send_batch(&fd, &out),
            false => 0,
        };
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
                freed += self.sent_whole(&mut ctl, chunk);
            }
        }
        ctl.unsent = ctl.unsent.saturating_sub(freed);
        if !same_conn {
            // The connection went away meanwhile: what is left starts again at a frame (all
            // of it, on an acknowledged queue: nobody acknowledged it).
            let dropped = self.rewind_all(&mut ctl, &mut out);
            ctl.unsent = ctl.unsent.saturating_sub(dropped);
        }
        // Leftovers go first; the core must send them (announce tells it), and producers
        // leave the socket to it until it has made progress.
        ctl.owner.end_direct(!out.is_empty());
        while let Some(chunk) = out.pop_back() {
            ctl.queued += chunk.unsent().len();
            ctl.chunks.push_front(chunk);
        }
        ctl.direct = out;
        // Room may have freed, and a closer may be waiting for the token to come back.
        self.notify(&mut ctl);
        ctl
    }

    /// After an append: tells the core if it waits to be told, and lets go of the lock.
    #[inline]
    fn announce(self: &Arc<Self>, mut ctl: MutexGuard<'_, Ctl>) {
        if ctl.queued == 0 || !ctl.owner.tell() {
            // A direct send took everything, or told already: nothing for the core.
            return;
        }
        let key = ctl.key;
        drop(ctl);
        self.tell_core(key);
    }

    /// `announce`, keeping the lock (re-taken if a command had to be sent).
    pub(super) fn announce_keep<'a>(
        self: &'a Arc<Self>,
        mut ctl: MutexGuard<'a, Ctl>,
    ) -> MutexGuard<'a, Ctl> {
        if !ctl.owner.tell() {
            return ctl;
        }
        let key = ctl.key;
        drop(ctl);
        self.tell_core(key);
        self.lock()
    }

    /// Asks the core to take from this queue (it said it waits to be told).
    fn tell_core(self: &Arc<Self>, key: Option<u64>) {
        if self.core.is_current() {
            // On the owning core's thread: no command, no wake-up; the loop looks at its local
            // list before it next enters the kernel. (Detached: `attach` looks.)
            if let Some(key) = key {
                C::defer_flush(key);
            }
        } else {
            self.core.flush(self.clone());
        }
    }
}
