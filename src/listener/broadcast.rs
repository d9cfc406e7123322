//! [`Broadcast`]: one message queued on every live connection of a listener.

use crate::engine::handle::ConnInfo;
use crate::error::WriteError;
use crate::frame::Frame;
use crate::listener::registry::Registry;

/// What [`Listener::broadcast`](crate::Listener::broadcast) did: how many connections the message was queued for, and which
/// refused it and why.
///
/// A connection whose send queue is full (its peer reads too slowly) is never waited for: it
/// is reported with [`WriteError::Full`], the others still get the message.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Broadcast {
    /// Connections the message was queued for (the core sends it next).
    pub queued: usize,
    /// Connections that refused it: [`WriteError::Full`] (queue full),
    /// [`WriteError::Closed`] (closing meanwhile) or [`WriteError::Failed`].
    pub failed: Vec<(ConnInfo, WriteError)>,
}

impl Broadcast {
    /// Connections the broadcast was addressed to (after the filter).
    pub fn attempted(&self) -> usize {
        self.queued + self.failed.len()
    }

    /// Whether every addressed connection took the message.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Broadcast {
    /// Queues `frame` on every connection of `registry` for which `filter` returns `true`;
    /// never waits.
    pub(crate) fn send<F>(registry: &Registry, frame: &Frame<'_>, mut filter: F) -> Broadcast
    where
        F: FnMut(&ConnInfo) -> bool,
    {
        // The filter (user code) runs outside the registry's lock.
        let mut report = Broadcast::default();
        for conn in registry.snapshot() {
            let info = conn.info();
            if !filter(&info) {
                continue;
            }
            match conn.try_push(frame) {
                Ok(()) => report.queued += 1,
                Err(err) => report.failed.push((info, err)),
            }
        }
        report
    }
}
