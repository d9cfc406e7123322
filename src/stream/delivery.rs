//! Where a stream's decoded messages go: the one "handler or channel" choice, carried from a
//! listener's configuration through its acceptor to each connection's session. The channel
//! side changes type on the way ([`ChannelLink`](crate::channel::ChannelLink) in the
//! configuration and the acceptor, a [`ChannelSender`](crate::channel::ChannelSender) per
//! session); the choice is written once.

use crate::stream::handler::MessageHandler;

/// Where decoded messages go.
pub(crate) enum Delivery<C> {
    /// Decoded and dropped (a writer without a reply handler).
    Discard,
    /// Called with each message on the owning core.
    Handler(MessageHandler),
    /// Queued on a bounded channel, through `C`.
    Channel(C),
}

impl<C> Delivery<C> {
    /// The same choice, with the channel side made by `channel`.
    pub(crate) fn map_channel<D>(&self, channel: impl FnOnce(&C) -> D) -> Delivery<D> {
        match self {
            Delivery::Discard => Delivery::Discard,
            Delivery::Handler(handler) => Delivery::Handler(handler.clone()),
            Delivery::Channel(c) => Delivery::Channel(channel(c)),
        }
    }
}

impl<C: Clone> Clone for Delivery<C> {
    fn clone(&self) -> Self {
        self.map_channel(C::clone)
    }
}

/// How much of a chunk a delivery took.
pub(crate) struct Fed {
    /// Bytes decoded.
    pub(crate) used: usize,
    /// Messages delivered.
    pub(crate) messages: u64,
    /// The channel is full: stop reading until it resumes the connection.
    pub(crate) full: bool,
}
