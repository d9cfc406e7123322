//! The library under test: `buffstreams-uring` and `buffstreams-epoll`.
//!
//! TO WIRE IT IN, fill the two functions below (nothing else in the bench needs to change;
//! returning `Err(StartError::Unavailable(reason))` makes the harness print
//! `SKIP contender=... reason=unavailable` and carry on, so do that when the kernel refuses
//! io_uring rather than failing).
//!
//! `server(backend, args)` runs in its own process (pinned to CPU 0 when `args.cores == 1`):
//! * listen on `127.0.0.1:0` with `args.cores` cores on `backend`, default framing (u32 BE);
//! * for every message received call `crate::stats::count(1, payload.len() as u64)` from the
//!   core that received it (cheap: a per-thread slot, no atomic RMW, no lock);
//! * when `args.echo` (ping-pong), write the payload back to the sender as one frame;
//! * return at once with the bound address; put the `Listener`/`Manager` in `keep` (it lives
//!   until the process is killed).
//!
//! `client(backend, args)` runs in its own process pinned to CPU 1 (use 1 core):
//! * `Workload::Stream`: `args.conns` connections to `args.addr`, each writing `args.size`-byte
//!   messages as fast as the library takes them (the end-to-end figure);
//! * `Workload::Pingpong`: `args.conns` connections, each with one outstanding message: send
//!   one, wait for its echo, `crate::stats::record_rtt(start.elapsed())`, repeat;
//! * `Workload::Churn`: `args.conns` workers, each dialing, writing one message and closing,
//!   over and over;
//! * return once the connections are up (the warm-up starts then); report failures on the
//!   way with `crate::stats::client_error(e)`; put writers/runtimes in `keep`.
//!
//! `wire::payload(size)` gives the payload every other contender sends.

use super::contenders::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};

/// Which engine backend of the library to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

pub fn server(backend: Backend, args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let _ = args;
    Err(StartError::Unavailable(format!(
        "buffstreams {} server not wired into the bench yet",
        backend.name()
    )))
}

pub fn client(backend: Backend, args: &ClientArgs) -> Result<ClientHandle, StartError> {
    let _ = args;
    Err(StartError::Unavailable(format!(
        "buffstreams {} client not wired into the bench yet",
        backend.name()
    )))
}
