//! The per-core runtime: one thread per core, each owning one io_uring ring (or epoll poller)
//! and every socket it accepted or dialed. [`Runtime`] starts the cores through `spawn`, the one
//! place that picks a backend's driver (`uring::driver` or `epoll::driver`).
//!
//! - `handle`: the one door for the layers above (listener, writer, conn).
//! - `conns`: a core's connections and listeners and the rules of their lives, shared by both
//!   drivers, which only turn its requests into I/O and kernel events into calls on it.
//! - `core`: what other threads share with a core (commands, wake-up, counters); names neither
//!   driver. `send`: send memory and each connection's queue. `session`: the seam where bytes
//!   become messages (the engine never sees a frame format).

// `handle` is the one door for the layers above: every other module is private, so the
// compiler keeps them out.
mod config;
mod conns;
mod core;
mod cpus;
mod dialer;
mod doorbell;
mod epoll;
pub(crate) mod handle;
mod kernel;
mod probe;
mod runtime;
mod send;
mod session;
mod stats;
mod uring;

pub use self::config::{Backend, RuntimeConfig};
pub use self::kernel::MIN_KERNEL;
pub use self::probe::{probe, KernelReport};
pub use self::runtime::Runtime;
pub use self::stats::CoreStats;
