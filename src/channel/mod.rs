//! Channel delivery: a listener hands every message to a bounded queue that any thread or async
//! task consumes, instead of calling a handler on the owning core. Set up with
//! [`ListenerConfig::with_channel`](crate::ListenerConfig::with_channel).
//!
//! The queue holds at most `capacity` messages, plus at most one per connection: when it is
//! full, the connection that filled it stops reading its socket, and TCP flow control pushes
//! back on its peer, so a slow consumer never makes the listener buffer without bound. What
//! such a connection had already received but not decoded is kept (no more than was in flight
//! when reading stopped). Once the consumer has taken the queue down to half its capacity, every
//! paused connection reads again.
//!
//! ```no_run
//! use std::time::Duration;
//! use buffstreams::RecvTimeoutError;
//! use buffstreams::{Listener, ListenerConfig};
//!
//! let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", 256);
//! let listener = Listener::bind(config)?;
//! loop {
//!     match messages.recv_timeout(Duration::from_secs(1)) {
//!         Ok(msg) => println!("{} bytes from connection {}", msg.len(), msg.id()),
//!         Err(RecvTimeoutError::Timeout) => println!("idle"),
//!         Err(RecvTimeoutError::Closed) => break, // the listener was closed
//!     }
//! }
//! # Ok::<(), buffstreams::ListenError>(())
//! ```

// How it works: each connection's session reserves room, decodes frames into a batch within
// it, and queues the batch. When the queue is full it registers its connection in the paused
// list, keeps the undecoded rest of its bytes and tells the engine to stop reading. A receiver
// (or a session releasing an unused reservation) that brings the queue down to the low
// watermark sends `Resume` to the core of each paused connection.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;

use crate::conn::Conn;
use crate::engine::session::ConnInfo;

mod receiver;
mod sender;

pub use receiver::{IntoIter, Iter, MessageReceiver, Recv, TryIter};
pub(crate) use sender::{ChannelLink, ChannelSender, ChannelSource};

/// One message received by a listener configured with
/// [`ListenerConfig::with_channel`](crate::ListenerConfig::with_channel): the payload and the
/// connection it came from (to reply through, or to tell senders apart).
///
/// ```no_run
/// # fn demo(messages: buffstreams::MessageReceiver) -> Result<(), buffstreams::WriteError> {
/// for msg in &messages {
///     println!("{} bytes from connection {} ({})", msg.len(), msg.id(), msg.peer_addr());
///     msg.conn.write(&msg.payload)?; // echo
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Message {
    /// The payload, without its framing.
    pub payload: Bytes,
    /// The connection it arrived on; [`Conn::write`] replies on it.
    pub conn: Conn,
}

impl Message {
    /// Id of the connection the message arrived on (unique per process).
    pub fn id(&self) -> u64 {
        self.conn.id()
    }

    /// The address of the peer that sent the message.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// Everything identifying the connection the message arrived on.
    pub fn info(&self) -> ConnInfo {
        self.conn.info()
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether the payload is empty (an empty message is a valid message).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload, dropping the connection handle.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("conn", &self.conn.id())
            .field("peer", &self.conn.peer_addr())
            .field("len", &self.payload.len())
            .finish()
    }
}

/// [`MessageReceiver::recv`] found the channel closed: every listener bound with its
/// configuration has closed and every message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message channel is closed")]
pub struct RecvError;

/// Why [`MessageReceiver::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No message is queued right now.
    #[error("no message is queued")]
    Empty,
    /// The channel is closed and drained.
    #[error("the message channel is closed")]
    Closed,
}

/// Why [`MessageReceiver::recv_timeout`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No message arrived in time.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The channel is closed and drained.
    #[error("the message channel is closed")]
    Closed,
}

/// The queue shared by a channel's receivers, its configuration and the sessions feeding it.
pub(crate) struct Channel {
    capacity: usize,
    /// Paused connections resume once queued plus reserved messages drop to this.
    low: usize,
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    queue: VecDeque<Message>,
    /// Room sessions reserved for the batch they are decoding.
    reserved: usize,
    /// Connections that stopped reading because the queue was full.
    paused: Vec<Conn>,
    /// Configurations (and their clones) that may still bind a listener.
    links: usize,
    /// Listeners' acceptors and connection sessions that may still send.
    live: usize,
    /// Some listener was bound with this channel.
    bound: bool,
    receivers: usize,
    /// Threads blocked in `recv`/`recv_timeout`.
    blocked: usize,
    /// Async receivers waiting, keyed by their future's id.
    wakers: Vec<(u64, Waker)>,
    next_key: u64,
}

impl State {
    fn closed(&self) -> bool {
        self.live == 0 && (self.bound || self.links == 0)
    }

    fn level(&self) -> usize {
        self.queue.len() + self.reserved
    }
}

impl Channel {
    /// A channel holding about `capacity` messages (at least 1), its configuration's link and
    /// its first receiver.
    pub(crate) fn open(capacity: usize) -> (ChannelLink, MessageReceiver) {
        let capacity = capacity.max(1);
        let chan = Arc::new(Channel {
            capacity,
            low: capacity / 2,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                reserved: 0,
                paused: Vec::new(),
                links: 1,
                live: 0,
                bound: false,
                receivers: 1,
                blocked: 0,
                wakers: Vec::new(),
                next_key: 0,
            }),
            ready: Condvar::new(),
        });
        (
            ChannelLink { chan: chan.clone() },
            MessageReceiver::new(chan),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a few plain operations that cannot panic half-way
        // (user code never runs under it), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next message; with it, the paused connections to resume if the queue dropped
    /// to the low watermark (resume them after unlocking).
    fn pop(&self, st: &mut State) -> Option<(Message, Vec<Conn>)> {
        let msg = st.queue.pop_front()?;
        let resume = if !st.paused.is_empty() && st.level() <= self.low {
            std::mem::take(&mut st.paused)
        } else {
            Vec::new()
        };
        Some((msg, resume))
    }

    /// Wakes everyone waiting (the channel closed).
    fn wake_all(&self, mut st: MutexGuard<'_, State>) {
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.ready.notify_all();
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Called after a count that keeps the channel open went down.
    fn released(&self, st: MutexGuard<'_, State>) {
        if st.closed() {
            self.wake_all(st);
        }
    }
}

fn resume_all(conns: Vec<Conn>) {
    for conn in conns {
        conn.resume();
    }
}
