//! [`AckError`]: what goes wrong in acknowledged mode.

use crate::frame::Framing;

/// A breach of the acknowledged-delivery protocol (`docs/acked-protocol.md`), or a
/// configuration it cannot run on. A breach closes that one connection
/// ([`ConnError::Acked`](crate::ConnError::Acked)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// An acknowledged listener's peer did not start with a hello: a plain writer.
    #[error("the peer is not an acknowledged writer (no hello)")]
    PlainWriter,
    /// An acknowledged writer's peer did not answer with a reply: a plain listener.
    #[error("the peer is not an acknowledged listener (no reply to the hello)")]
    PlainListener,
    /// The peer speaks another version of the protocol.
    #[error("unsupported acknowledged-protocol version {0}")]
    UnsupportedVersion(u8),
    /// The hello is malformed.
    #[error("bad hello: {0}")]
    BadHello(&'static str),
    /// The reply is malformed.
    #[error("bad reply: {0}")]
    BadReply(&'static str),
    /// The writer resumes after messages this listener never delivered (it dropped messages
    /// nobody acknowledged).
    #[error("the writer resumes at message {first_seq} but only {accepted} were delivered")]
    Gap {
        /// The last message delivered here.
        accepted: u64,
        /// Where the writer resumed.
        first_seq: u64,
    },
    /// A listener frame with an unknown tag.
    #[error("a listener frame with unknown tag {0}")]
    BadTag(u8),
    /// A malformed acknowledgement.
    #[error("bad acknowledgement: {0}")]
    BadAck(&'static str),
    /// An acknowledgement before an earlier one.
    #[error("acknowledgement {got} goes back from {acked}")]
    AckBackwards {
        /// The last acknowledgement.
        acked: u64,
        /// The one received.
        got: u64,
    },
    /// An acknowledgement of a message never sent.
    #[error("acknowledgement {got} is beyond the last message sent, {sent}")]
    AckBeyond {
        /// The last message sent.
        sent: u64,
        /// The one acknowledged.
        got: u64,
    },
    /// Another connection of the same writer session took the session over.
    #[error("another connection took this writer session over")]
    Superseded,
    /// The listener's session table is full of sessions with live connections.
    #[error("the listener's session table is full")]
    TableFull,
    /// A write to an acknowledged connection before its writer's hello was answered (a
    /// broadcast reaching a new connection): refused, as the reply must come first.
    #[error("the connection's acknowledged session is not open yet")]
    NotReady,
    /// The connection closed before the listener's reply.
    #[error("the connection closed before the listener's reply")]
    NoReply,
    /// Several connections in a row closed before the listener's reply (a plain listener
    /// closes the connection on the hello): a write or flush that would dial again from the
    /// caller's thread fails with this instead. Background reconnects count such connections
    /// as failed attempts, so the retry policy gives up with this after its attempts.
    #[error("{0} connections in a row closed before the listener's reply: not an acknowledged listener?")]
    NoReplies(u32),
    /// Acknowledged mode cannot run on this framing (2-byte length headers, delimiters).
    #[error("acknowledged mode cannot run on {0:?} framing")]
    Framing(Framing),
    /// Every receiver of the listener's channel was dropped: nobody can take (and so
    /// acknowledge) the messages.
    #[error("nobody takes the messages: every MessageReceiver was dropped")]
    NoReceiver,
}

impl AckError {
    /// Whether reconnecting cannot help: the peer does not speak this protocol (or this
    /// version of it), or the configuration cannot run it. A writer whose connection failed
    /// so gives up instead of redialing (its messages go to `on_failed`).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AckError::PlainListener | AckError::UnsupportedVersion(_) | AckError::Framing(_)
        )
    }
}
