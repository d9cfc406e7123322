//! The epoll backend (through `mio`): the same behaviour as the io_uring engine, for kernels
//! or sandboxes without io_uring, and as the in-process "versus epoll" baseline.

pub(crate) mod driver;
