//! Acknowledged delivery (`docs/acked-protocol.md`), end to end: one test binary.
//!
//! - `delivery.rs`: acknowledgements, resume through cut connections (exactly once, in order),
//!   channel and handler delivery, replies, giving up, `BufferedWriter`, Unix sockets, `Manager`.
//! - `restart.rs`: a listener process killed (SIGKILL) mid-stream and restarted.
//! - `bad_peers.rs`: bad input at both ends, the session table's bounds.
//! - `flush_races.rs`: writers flushing from their threads while the listener restarts.
//! - `tls.rs`: over TLS through cut connections.
//! - `interop_python.rs`: a Python peer written from the protocol document alone.

#[path = "../common/mod.rs"]
mod common;

mod bad_peers;
mod delivery;
mod flush_races;
mod interop_python;
mod restart;
#[cfg(feature = "tls")]
mod tls;
