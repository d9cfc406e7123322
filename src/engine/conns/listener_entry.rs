//! A listener's entry in the table ([`ListenerSlot`]) and how long accepting pauses after it
//! ran out of descriptors or memory; its transitions are in `listener.rs`.

use std::os::fd::OwnedFd;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::core::Acceptor;

/// How long a listener waits before accepting again after running out of descriptors/memory.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A listener of the table.
pub(crate) struct ListenerSlot<X> {
    pub(super) id: u64,
    pub(super) fd: OwnedFd,
    pub(super) acceptor: Arc<dyn Acceptor>,
    /// Accepting is paused until then (after `EMFILE` and the like).
    pub(super) retry_at: Option<Instant>,
    /// Closing; the ack to send once closed.
    pub(super) closing: Option<Option<SyncSender<()>>>,
    /// Connections accepted here and still open.
    pub(super) conns: usize,
    /// Its sessions want the periodic tick (timeouts).
    pub(super) ticks: bool,
    /// The backend's own state.
    pub(super) io: X,
}
