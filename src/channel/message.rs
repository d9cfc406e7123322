//! What a channel delivers: a [`Message`], and why a receive returned none.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::acked::sequencer::Mark;
use crate::engine::handle::ConnInfo;
use crate::stream::conn::Conn;

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
    /// Its number in its writer's session, on an acknowledged listener.
    mark: Option<Mark>,
}

impl Message {
    pub(crate) fn new(payload: Bytes, conn: Conn, mark: Option<Mark>) -> Message {
        Message {
            payload,
            conn,
            mark,
        }
    }

    /// On an acknowledged listener ([`ListenerConfig::acked`](crate::ListenerConfig::acked)),
    /// the message's sequence number in its writer's session (1, 2, … across the writer's
    /// reconnects); `None` otherwise.
    pub fn seq(&self) -> Option<u64> {
        self.mark.map(|m| m.seq)
    }

    /// Whether an earlier listener process may have delivered this message already: it was
    /// re-sent after a connection to a listener that has since restarted, and this process
    /// cannot vouch for it. Always `false` in plain mode. See `docs/acked-protocol.md`.
    pub fn possible_duplicate(&self) -> bool {
        self.mark.is_some_and(|m| m.dup)
    }

    /// The consumer took it: acknowledge it (on an acknowledged listener). `drained`: the
    /// channel is empty now.
    pub(crate) fn taken(&self, drained: bool) {
        if let Some(mark) = self.mark {
            self.conn.taken(mark.seq, self.payload.len(), drained);
        }
    }

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

/// [`MessageReceiver::recv`](crate::MessageReceiver::recv) found the channel closed: every listener bound with its
/// configuration has closed and every message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message channel is closed")]
pub struct RecvError;

/// Why [`MessageReceiver::try_recv`](crate::MessageReceiver::try_recv) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No message is queued right now.
    #[error("no message is queued")]
    Empty,
    /// The channel is closed and drained.
    #[error("the message channel is closed")]
    Closed,
}

/// Why [`MessageReceiver::recv_timeout`](crate::MessageReceiver::recv_timeout) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No message arrived in time.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The channel is closed and drained.
    #[error("the message channel is closed")]
    Closed,
}
