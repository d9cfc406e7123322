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
use std::sync::{Arc, Condvar, Mutex};

mod message;
mod receiver;
mod sender;
mod state;

pub use message::{Message, RecvError, RecvTimeoutError, TryRecvError};
pub use receiver::{IntoMessageIter, MessageIter, MessageReceiver, RecvMessage, TryMessageIter};
pub(crate) use sender::{ChannelLink, ChannelSender};

use state::{Channel, State};

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

#[cfg(test)]
mod tests;
