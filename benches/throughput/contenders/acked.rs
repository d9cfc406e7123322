//! `buffstreams-acked`: `buffstreams-uring` (`buffstreams.rs`'s io_uring server and client)
//! with acknowledged delivery on both ends, every `ListenerConfig` given `acked(true)` and
//! every `WriterConfig` `acked(true)` (the library's default `max_unacked_bytes`, 4 MiB, unless
//! `BUFFSTREAMS_BENCH_UNACKED` says otherwise). The protocol: `docs/acked-protocol.md`.
//!
//! Where it runs (`Workload::admits`): end to end only, since both ends must speak the
//! protocol. In `stream` the client is the same as buffstreams-uring's (one thread
//! round-robining over a `BufferedWriter` per connection); the writers keep every message
//! until the listener acknowledges it (after each batch of received bytes its handler
//! returned for), and stop taking messages with `max_unacked_bytes` unacknowledged. In
//! `pingpong` the listener's echo is a reply frame on the same connection, and the
//! acknowledgement of each request follows its reply (queued when the batch that delivered
//! the request ends, so in practice sent with it); the round trip is timed to the reply.
//!
//! What is counted: the client registers its writers with `stats::set_acked_source`, and the
//! trial's rate is the number of messages the writers saw acknowledged during the window
//! (`role.rs`, `run.rs`), not the number the server received: a message counts only once its
//! acknowledgement is back, the windowed counterpart of ending a run with `flush_acked()`
//! inside the timed region. The server's own count is logged next to it.

use super::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};
use crate::buffstreams::{self, Backend};
use crate::wire;

pub fn server(args: &ServerArgs) -> Result<ServerHandle, StartError> {
    buffstreams::server_with(Backend::Uring, args, |cfg| cfg.acked(true))
}

pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
    // Diagnostic (unset in published runs): the writers' max_unacked_bytes.
    let unacked = wire::env_bytes("BUFFSTREAMS_BENCH_UNACKED");
    buffstreams::client_with(Backend::Uring, args, move |cfg| {
        let cfg = cfg.acked(true);
        match unacked {
            Some(bytes) => cfg.max_unacked_bytes(bytes),
            None => cfg,
        }
    })
}
