//! The epoll backend (through `mio`): the same behaviour as the io_uring engine, for kernels
//! or sandboxes without io_uring, and as the in-process "versus epoll" baseline.
//!
//! `driver` holds the loop and the commands, `conn` a connection's receive, send and close,
//! `listener` accepting, and `sys` the raw syscalls (every `unsafe` block of the backend).

mod conn;
pub(crate) mod driver;
mod listener;
mod sys;
