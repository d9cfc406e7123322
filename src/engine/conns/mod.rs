//! The connection table of one core, shared by both backends: every connection and listener
//! the core owns, and the state machine each goes through (reading, paused, flushing, closing,
//! closed), with no I/O of its own.
//!
//! A driver (`uring::driver`, `epoll::driver`) turns kernel events into calls on the table
//! (`Conns::data`, `Conns::sent`, `Conns::accepted`, ...), and the table asks for I/O
//! through the driver's [`Io`](io::Io): arm a receive, start a send, stop reading, end what is
//! in flight, stop watching a socket. So the rules (when a paused connection reads again, what a
//! close waits for, where a failed connection's unsent frames go, when a closing listener's
//! socket is released) are written once, and unit-tested against a fake `Io` with no kernel
//! (`tests.rs`).
//!
//! Connections live in generation-numbered slots ([`ConnKey`](slab::ConnKey)): a completion, an
//! event or a command for a connection that has gone carries an old generation and finds
//! nothing, even if its slot was reused meanwhile.
//!
//! `table.rs` holds the table ([`Conns`](table::Conns)) with its commands and timers, `io.rs`
//! what it asks of a backend, `entry.rs` a connection's entry and `conn.rs` its transitions,
//! `listener_entry.rs` a listener's entry and `listener.rs` its transitions, `slab.rs` the
//! slots, `credit.rs` how much one receive may deliver. This module only declares its files,
//! which import each other by path.

pub(super) mod conn;
pub(super) mod credit;
pub(super) mod entry;
pub(super) mod io;
pub(super) mod listener;
pub(super) mod listener_entry;
pub(super) mod slab;
pub(super) mod table;
#[cfg(test)]
mod tests;
