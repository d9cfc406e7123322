//! A connection's stream above the engine: what listeners and writers share.
//!
//! - [`Conn`](conn::Conn): the public handle to write back through;
//! - [`Outbound`](outbound::Outbound): the write path (frame a message with the stream's codec
//!   straight into its send queue), shared by `Conn` and [`Writer`](crate::Writer), and the one
//!   mapping of the engine's refusals to [`WriteError`](crate::WriteError);
//! - [`retry`]: the one "the link is down: reconnect, then try again" loop;
//! - [`FramedSession`](session::FramedSession): what the engine calls with received bytes:
//!   decode them and hand each message to its [`Delivery`](delivery::Delivery), holding back
//!   what cannot be delivered yet ([`held`]), under a [`watchdog`].
//!
//! `listener/` and `writer/` build these; they talk to the engine only through
//! `engine::handle`. This module only declares its files: each imports the others by path, so
//! no two files import each other.

pub(crate) mod conn;
pub(crate) mod delivery;
pub(crate) mod frames;
pub(crate) mod handler;
pub(crate) mod held;
pub(crate) mod outbound;
pub(crate) mod retry;
pub(crate) mod session;
pub(crate) mod tally;
mod to_channel;
mod to_handler;
pub(crate) mod watchdog;

#[cfg(test)]
pub(crate) mod tests;
