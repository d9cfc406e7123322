//! The epoll backend (through `mio`): the same behaviour as the io_uring engine, for kernels
//! or sandboxes without io_uring, and as the in-process "versus epoll" baseline.
//!
//! `driver` holds the loop and its events, `passes` the read and accept passes that drain a
//! ready socket, `poller` the I/O the connection table asks for (registration, nonblocking
//! sends, the ready list), and `sys` the raw syscalls (every `unsafe` block of the backend).

pub(crate) mod driver;
mod passes;
mod poller;
mod sys;
