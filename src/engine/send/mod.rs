//! The send path: producers frame messages straight into chunks of send memory
//! ([`chunk`]), a connection's [`SendQueue`](queue::SendQueue) orders those chunks and bounds
//! them, and the core hands whole chunks to the kernel through one `sendmsg` ([`outbox`]).
//!
//! Per message a producer takes the queue's lock once (uncontended: two atomic instructions),
//! copies the frame in wire format into the open chunk, and lets go. Everything else happens
//! per chunk or per send: the core takes every waiting chunk at once and the kernel reads them
//! where the producer wrote them, so each byte is copied once in user space. Chunks come from
//! and return to a per-core pool.
//!
//! `traits.rs` holds what the codec's layer supplies ([`traits::FrameIndex`],
//! [`traits::Encoded`]), `gate.rs` a queue's [`gate::Gate`] and [`gate::PushError`]; this module
//! only declares its files, which import each other by path.

pub(crate) mod chunk;
pub(super) mod direct;
pub(super) mod gate;
pub(crate) mod outbox;
pub(super) mod queue;
pub(super) mod traits;
