//! A listener's live connections: for broadcast, the connection cap and the list of
//! connections.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::stream::conn::Conn;

/// The listener's live connections: added when accepted, removed when closed (touched per
/// connection, never per message).
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Conn>>,
}

impl Registry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<u64, Conn>> {
        // Only inserts, removes and clones happen under this lock: never poisoned half-way.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live connections, by id.
    pub(crate) fn snapshot(&self) -> Vec<Conn> {
        let mut conns: Vec<Conn> = self.lock().values().cloned().collect();
        conns.sort_unstable_by_key(Conn::id);
        conns
    }
}
