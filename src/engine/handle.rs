//! The engine's door for the layers above it (listener, writer, conn): a [`CoreHandle`] to one
//! core, a [`SendQueueHandle`] to one connection's send side (a writer's, across its
//! reconnects), and the [`Acceptor`] a listener gives its cores. Through them those layers add
//! listeners and connections, write, wait for a flush, resume reading, close, and steer a
//! writer's queue through its reconnects; the commands, the send queue's internals and the
//! connection table stay inside the engine. The rest of what they use of the engine is
//! re-exported here.
//!
//! The handles' methods are here; their types and [`Acceptor`] are defined in `core.rs`, with
//! the types they are made of: `Command` carries an `Arc<dyn Acceptor>`, whose `open` names both
//! handles, and the handles hold the core's shared state, whose command queue holds `Command`s.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;

use crate::engine::core::Command;
use crate::engine::core::SendQueue;
pub(crate) use crate::engine::core::{Acceptor, CoreHandle, SendQueueHandle};
use crate::engine::send::chunk::ChunkPool;
use crate::error::ConnError;

// Everything else the layers above use of the engine passes through here.
pub(crate) use crate::engine::dialer::{Next, Redial};
pub(crate) use crate::engine::send::chunk::{Chunk, CHUNK_SIZE};
pub(crate) use crate::engine::send::gate::{Gate, PushError};
pub(crate) use crate::engine::send::queue::ack_state::{AckCounts, AckFault, Resume};
pub(crate) use crate::engine::send::traits::{Encoded, FrameIndex, Seal};
pub(crate) use crate::engine::session::{next_conn_id, peer_cred, Delivered, Session};
pub use crate::engine::session::{ConnInfo, PeerCred};

impl CoreHandle {
    /// Index of this core in its runtime.
    pub(crate) fn index(&self) -> usize {
        self.0.index()
    }

    /// This core's identity in the process while any handle to it lives (for per-core state kept
    /// by the layers above).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Whether the calling thread is this core's (where waiting for the core would deadlock).
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.0.is_current()
    }

    /// The send memory of this core's connections, for handles that fill chunks themselves.
    pub(crate) fn pool(&self) -> &ChunkPool {
        self.0.pool()
    }

    /// Asks this core to accept on `fd` (a socket bound for it) for listener `id`; the
    /// receiver hears once it does (a disconnect means it could not).
    pub(crate) fn add_listener(
        &self,
        id: u64,
        fd: OwnedFd,
        acceptor: Arc<dyn Acceptor>,
    ) -> Receiver<()> {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        self.0.send(Command::AddListener {
            id,
            fd,
            acceptor,
            ack,
        });
        done
    }

    /// Asks this core to bring every connection's receive within its credit now (see
    /// `Session::recv_credit`: a listener's budget came under pressure).
    pub(crate) fn narrow_receives(&self) {
        self.0.send(Command::NarrowReceives);
    }

    /// Asks this core to close listener `id` and its connections; the receiver hears once it
    /// has (or disconnects if the core has ended).
    pub(crate) fn remove_listener(&self, id: u64) -> Receiver<()> {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        self.0.send(Command::RemoveListener { id, ack });
        done
    }

    /// Hands a connected socket to this core, draining `sendq` and feeding `session`; on a
    /// sealed queue (see [`SendQueueHandle::sealed`]) `seal` seals what is sent on it.
    /// `false` if the core has ended.
    pub(crate) fn adopt(
        &self,
        fd: OwnedFd,
        info: ConnInfo,
        sendq: &SendQueueHandle,
        session: Box<dyn Session>,
        seal: Option<Box<dyn Seal>>,
    ) -> bool {
        self.adopt_for(None, fd, info, sendq, session, seal)
    }

    /// [`adopt`](CoreHandle::adopt) for a connection listener `listener` accepted and handed
    /// off ([`Acceptor::hand_off`]): it counts as that listener's, and closes with it. If the
    /// listener has closed meanwhile, the connection is closed at once (its session hears it).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn adopt_accepted(
        &self,
        listener: u64,
        fd: OwnedFd,
        info: ConnInfo,
        sendq: &SendQueueHandle,
        session: Box<dyn Session>,
        seal: Option<Box<dyn Seal>>,
    ) -> bool {
        self.adopt_for(Some(listener), fd, info, sendq, session, seal)
    }

    fn adopt_for(
        &self,
        listener: Option<u64>,
        fd: OwnedFd,
        info: ConnInfo,
        sendq: &SendQueueHandle,
        session: Box<dyn Session>,
        seal: Option<Box<dyn Seal>>,
    ) -> bool {
        let fd = Arc::new(fd);
        if let Some(seal) = seal {
            sendq.0.set_sealer(fd.clone(), seal);
        }
        // Producers may send on it at once (a flush right after a dial sends from its own
        // thread), before the core has taken the connection in.
        sendq.0.preattach(fd.clone());
        let sent = self.0.send(Command::AddConn {
            fd: fd.clone(),
            info,
            sendq: sendq.0.clone(),
            session,
            listener,
        });
        if !sent {
            sendq.0.unpreattach(&fd);
        }
        sent
    }
}

/// What a connection's queue does when its connection fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Refuse writes (an accepted connection's queue, or a writer that will not reconnect by
    /// itself).
    Refuse,
    /// Take writes for the next connection (they wait) and call the
    /// [`SendQueueHandle::on_reconnecting`] hook.
    Reconnect,
}

impl SendQueueHandle {
    /// A queue drained by `core`, holding at most `limit` bytes (a single frame larger than that
    /// is taken into an empty queue). `frames` finds frame boundaries in what it holds, so that a
    /// failed connection's partly sent frame is sent again whole.
    pub(crate) fn new(
        core: &CoreHandle,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        after_failure: AfterFailure,
    ) -> SendQueueHandle {
        Self::with(core, limit, frames, after_failure, false)
    }

    /// [`new`](SendQueueHandle::new) for a connection whose bytes are all sealed before they
    /// are sent (TLS): nothing leaves it but what the sealer given to
    /// [`CoreHandle::adopt`] with each connection sealed.
    pub(crate) fn sealed(
        core: &CoreHandle,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        after_failure: AfterFailure,
    ) -> SendQueueHandle {
        Self::with(core, limit, frames, after_failure, true)
    }

    fn with(
        core: &CoreHandle,
        limit: usize,
        frames: Box<dyn FrameIndex>,
        after_failure: AfterFailure,
        sealed: bool,
    ) -> SendQueueHandle {
        let reconnect = after_failure == AfterFailure::Reconnect;
        let queue = SendQueue::new(core.0.clone(), limit, frames, reconnect, sealed);
        SendQueueHandle(queue)
    }

    /// Whether the calling thread is the owning core's.
    #[inline]
    pub(crate) fn on_own_core(&self) -> bool {
        self.0.core().is_current()
    }

    // ---- acknowledged mode (see `send/queue/acks.rs`) -------------------------------------

    /// Makes this new queue an acknowledged one: chunks sent are kept until acknowledged, and
    /// the queue's bound counts them.
    pub(crate) fn make_acked(&self) {
        self.0.make_acked();
    }

    /// The peer acknowledged every frame up to `seq`.
    pub(crate) fn ack(&self, seq: u64) -> Result<(), AckFault> {
        self.0.ack(seq)
    }

    /// An acknowledged queue's counters.
    pub(crate) fn ack_counts(&self) -> Option<AckCounts> {
        self.0.ack_counts()
    }

    /// Before a connection is attached: drops what was acknowledged and puts the hello `hello`
    /// writes for where the connection starts first in the queue.
    pub(crate) fn resume_acked(&self, hello: impl FnOnce(Resume) -> Vec<u8>) -> Option<Resume> {
        self.0.resume_acked(hello)
    }

    // ---- writing -------------------------------------------------------------------------

    /// Queues one frame, waiting (until `deadline`, if any) for room.
    pub(crate) fn push(
        &self,
        frame: &impl Encoded,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        self.0.push(frame, deadline)
    }

    /// Reserves `room` bytes of send memory (waiting until `deadline`, if any) and lets `fill`
    /// write one whole frame at their start; `fill` returns its length, or `None` to queue
    /// nothing. `fill` runs under the queue's lock and must not write to this connection.
    #[inline]
    pub(crate) fn push_with(
        &self,
        room: usize,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<usize>, PushError> {
        self.0.push_with(room, deadline, fill)
    }

    /// Queues `frames` in order, waiting for room whenever the queue is full; returns how many
    /// were queued and why the rest were not.
    pub(crate) fn push_frames<F: Encoded>(
        &self,
        frames: &[F],
        deadline: Option<Instant>,
    ) -> (usize, Result<(), PushError>) {
        self.0.push_frames(frames, deadline)
    }

    /// Queues chunks of frames built elsewhere (a batching handle's) and sends them, from this
    /// thread when nobody else is sending. On an error the chunks stay in `chunks`.
    pub(crate) fn push_chunks(
        &self,
        chunks: &mut VecDeque<Chunk>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError> {
        self.0.push_chunks(chunks, deadline)
    }

    /// Async writers: `waker` is woken when room frees up or the gate changes. `false` (and
    /// nothing registered) if a `len`-byte frame fits now or the gate refuses: retry at once.
    pub(crate) fn register_waker(&self, waker: &Waker, len: usize) -> bool {
        self.0.register_waker(waker, len)
    }

    /// Waits until everything queued so far was handed to the kernel (`Ok(true)`) or until
    /// `deadline` (`Ok(false)`); the gate, if it refuses or is closed with bytes still queued.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> Result<bool, Gate> {
        self.0.wait_drained(deadline)
    }

    // ---- reading and closing -------------------------------------------------------------

    /// Asks the owning core to read the connection again (its consumer has room).
    pub(crate) fn resume_reading(&self) {
        self.0.core().send(Command::Resume(self.0.clone()));
    }

    /// A waker that makes the owning core read the connection again; holds it weakly.
    pub(crate) fn resume_waker(&self) -> Waker {
        Waker::from(Arc::new(ResumeOnWake(Arc::downgrade(&self.0))))
    }

    /// Asks the owning core to close the connection: after sending what is queued, or at once
    /// (`force`: what was not sent comes back to the queue). With `wait`, returns a receiver
    /// that hears once it is closed (`None` if the core has ended).
    pub(crate) fn close_conn(&self, force: bool, wait: bool) -> Option<Receiver<()>> {
        let (ack, done) = match wait {
            true => {
                let (ack, done) = std::sync::mpsc::sync_channel(1);
                (Some(ack), Some(done))
            }
            false => (None, None),
        };
        let sent = self.0.core().send(Command::CloseConn {
            sendq: self.0.clone(),
            force,
            ack,
        });
        done.filter(|_| sent)
    }

    /// Closes the queue for good; returns what was never handed to the kernel.
    pub(crate) fn close_queue(&self) -> BytesMut {
        self.0.close()
    }

    /// [`close_queue`](SendQueueHandle::close_queue), also saying whether nothing of the queue's is
    /// in flight (so closing the connection afterwards cannot hand anything back).
    pub(crate) fn close_queue_idle(&self) -> (BytesMut, bool) {
        self.0.close_idle()
    }

    /// Whether the queue's bytes are sealed before they are sent ([`SendQueueHandle::sealed`]).
    pub(crate) fn is_sealed(&self) -> bool {
        self.0.is_sealed()
    }

    /// Whether the queue takes writes now.
    pub(crate) fn gate(&self) -> Gate {
        self.0.gate()
    }

    // ---- a writer's reconnects -----------------------------------------------------------

    /// Sets the hook called on the core when a failed connection leaves the queue waiting for a reconnect
    /// ([`AfterFailure::Reconnect`]).
    pub(crate) fn on_reconnecting(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.0.on_reconnecting(hook);
    }

    /// A refusing queue holds writes again (a connection is expected); whether it was refusing.
    pub(crate) fn expect_reconnect(&self) -> bool {
        self.0.expect_reconnect()
    }

    /// The queue starts with no connection, one being expected (`err` until then).
    pub(crate) fn start_reconnecting(&self, err: Arc<ConnError>) {
        self.0.start_reconnecting(err);
    }

    /// A new connection is about to be adopted: writes are taken again.
    pub(crate) fn reopen(&self) {
        self.0.reopen();
    }

    /// No connection is expected: refuse writes with `err`; returns what was queued.
    pub(crate) fn refuse(&self, err: Arc<ConnError>) -> BytesMut {
        self.0.refuse(err)
    }

    /// A handle that does not keep the queue alive.
    pub(crate) fn downgrade(&self) -> WeakSendQueueHandle {
        WeakSendQueueHandle(Arc::downgrade(&self.0))
    }
}

/// A [`SendQueueHandle`] that does not keep its queue alive.
pub(crate) struct WeakSendQueueHandle(Weak<SendQueue>);

impl WeakSendQueueHandle {
    /// The handle, if the queue still exists.
    pub(crate) fn upgrade(&self) -> Option<SendQueueHandle> {
        self.0.upgrade().map(SendQueueHandle)
    }
}

/// Wakes a paused connection: its core resumes reading it (nothing if it is gone).
struct ResumeOnWake(Weak<SendQueue>);

impl Wake for ResumeOnWake {
    fn wake(self: Arc<Self>) {
        if let Some(sendq) = self.0.upgrade() {
            sendq.core().send(Command::Resume(sendq.clone()));
        }
    }
}

/// For the upper layers' unit tests: a core with no thread and no ring, whose commands are
/// counted instead of carried out.
#[cfg(test)]
impl CoreHandle {
    /// A core that never runs.
    pub(crate) fn detached() -> CoreHandle {
        CoreHandle(Arc::new(
            crate::engine::core::CoreShared::new(0).expect("eventfd"),
        ))
    }

    /// How many `Resume` commands were sent to it since the last call (one per connection
    /// asked to read again).
    pub(crate) fn take_resumes(&self) -> usize {
        self.0
            .take_commands()
            .unwrap_or_default()
            .iter()
            .filter(|cmd| matches!(cmd, Command::Resume(_)))
            .count()
    }
}
