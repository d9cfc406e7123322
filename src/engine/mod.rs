//! The per-core runtime: one thread per core, each owning one io_uring ring (or epoll poller)
//! and every socket it accepted or dialed. This module only declares its files and re-exports
//! what the crate root makes public; the files import each other by path.
//!
//! - `handle`: the one door for the layers above (listener, writer, conn).
//! - `config`: [`Backend`] and [`RuntimeConfig`]. `runtime`: [`Runtime`], which starts the cores
//!   through `spawn`, the one place that picks a backend's driver (`uring::driver` or
//!   `epoll::driver`).
//! - `conns`: a core's connections and listeners and the rules of their lives, shared by both
//!   drivers, which only turn its requests into I/O and kernel events into calls on it.
//! - `core`: what other threads share with a core (commands, wake-up, counters) and the handles
//!   to it; names neither driver. `send`: send memory and each connection's queue. `session`:
//!   the seam where bytes become messages (the engine never sees a frame format).
//! - `kernel`: what the running kernel offers io_uring (shared by ring set-up and [`probe`]);
//!   `probe`: the public report of it. `cpus`, `dialer`, `doorbell`, `stats`: CPU sets,
//!   background reconnects, a sleeping core's wake-up, [`CoreStats`].

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
