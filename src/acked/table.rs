//! A listener's session table: writer session id → what was delivered of it and which
//! connection owns it ([`Slot`]), bounded and expiring; and [`DedupStore`], the seam for a table
//! that outlives the process.
//!
//! While the process lives the table makes delivery exactly once: a connection that resumes a
//! known session drops what was delivered already, and takes the session over, so a connection
//! it replaced (whose peer is gone, with bytes still in its socket) delivers nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::acked::error::AckError;
use crate::acked::wire::{Hello, Reply, SessionId};
use crate::stream::conn::Conn;

/// Keeps what was delivered of each writer session beyond the listener process, so that a
/// restarted listener can still drop what it delivered before (a persistent table). The
/// in-memory table consults it for sessions it does not know.
///
/// Without one (the default), a restarted listener knows no session: re-sent messages reach
/// the application flagged as possible duplicates. A store narrows that to the messages
/// delivered after its last [`save`](DedupStore::save).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use buffstreams::{DedupStore, SessionId};
///
/// /// A store in memory (a real one writes to disk).
/// #[derive(Default)]
/// struct Memory(Mutex<HashMap<SessionId, u64>>);
///
/// impl DedupStore for Memory {
///     fn load(&self, session: &SessionId) -> Option<u64> {
///         self.0.lock().unwrap().get(session).copied()
///     }
///     fn save(&self, session: &SessionId, delivered: u64) {
///         self.0.lock().unwrap().insert(*session, delivered);
///     }
/// }
/// ```
pub trait DedupStore: Send + Sync {
    /// The last message of `session` delivered, as saved, if the store knows the session.
    fn load(&self, session: &SessionId) -> Option<u64>;
    /// Messages of `session` up to `delivered` were delivered. Called before each
    /// acknowledgement is sent and when a connection of the session closes, on the thread
    /// doing that (keep it quick).
    fn save(&self, session: &SessionId, delivered: u64);
}

/// One writer session's entry.
pub(crate) struct Slot {
    pub(crate) id: SessionId,
    state: Mutex<SlotState>,
}

/// A slot's state, under its lock. The owning connection holds the lock while it delivers a
/// batch, so a connection that takes the session over waits for the batch to end.
pub(crate) struct SlotState {
    /// The last message accepted: delivered, or queued on the listener's channel.
    pub(crate) accepted: u64,
    /// The last message delivered: the handler returned, or the consumer took it.
    pub(crate) delivered: u64,
    /// The last acknowledgement sent.
    pub(crate) acked: u64,
    /// Payload bytes delivered since the last acknowledgement.
    pub(crate) pending: usize,
    /// The connection that owns the session (acknowledgements go there).
    pub(crate) owner: Option<Conn>,
    owner_id: u64,
    /// When its owner left (the entry expires `ttl` later).
    released: Option<Instant>,
    /// Messages before this one may have been delivered by an earlier process (the
    /// `first_new` of the hello that made the entry, if the session was unknown then): they
    /// stay flagged on every connection of the session.
    flag_before: u64,
}

impl Slot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Updates under this lock are plain stores; user code runs under it (a handler), but
        // a panic there leaves the numbers as they were before the message: still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SlotState {
    /// Whether connection `id` still owns the session.
    pub(crate) fn owned_by(&self, id: u64) -> bool {
        self.owner_id == id
    }
}

/// What a hello found (see [`SessionTable::open`]).
pub(crate) struct Opened {
    pub(crate) slot: Arc<Slot>,
    pub(crate) reply: Reply,
    /// Frames up to this one were accepted already: drop them.
    pub(crate) skip_through: u64,
    /// Frames before this one may have been delivered by an earlier process: flag them.
    pub(crate) flag_before: u64,
}

/// Settings of a listener's session table.
#[derive(Clone)]
pub(crate) struct TableConfig {
    pub(crate) max_sessions: usize,
    pub(crate) ttl: Duration,
    pub(crate) store: Option<Arc<dyn DedupStore>>,
}

/// A listener's writer sessions (see the module docs).
pub(crate) struct SessionTable {
    slots: Mutex<Slots>,
    config: TableConfig,
    /// Re-sent frames dropped as delivered already.
    dropped: AtomicU64,
    /// Frames delivered flagged.
    flagged: AtomicU64,
}

struct Slots {
    map: HashMap<SessionId, Arc<Slot>>,
    next_sweep: Instant,
}

impl SessionTable {
    pub(crate) fn new(config: TableConfig) -> SessionTable {
        SessionTable {
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                next_sweep: Instant::now(),
            }),
            config,
            dropped: AtomicU64::new(0),
            flagged: AtomicU64::new(0),
        }
    }

    /// Counts what a connection's batch dropped and flagged.
    pub(crate) fn count(&self, dropped: u64, flagged: u64) {
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if flagged > 0 {
            self.flagged.fetch_add(flagged, Ordering::Relaxed);
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn flagged(&self) -> u64 {
        self.flagged.load(Ordering::Relaxed)
    }

    pub(crate) fn store(&self) -> Option<&Arc<dyn DedupStore>> {
        self.config.store.as_ref()
    }

    /// Sessions in the table.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Plain map updates: a panic cannot leave it half-changed.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `conn` said `hello`: it owns the session from now on.
    pub(crate) fn open(&self, hello: &Hello, conn: &Conn) -> Result<Opened, AckError> {
        let mut slots = self.lock();
        if let Some(slot) = slots.map.get(&hello.session).cloned() {
            drop(slots);
            let mut st = slot.lock();
            if hello.first_seq > st.accepted + 1 {
                return Err(AckError::Gap {
                    accepted: st.accepted,
                    first_seq: hello.first_seq,
                });
            }
            st.owner = Some(conn.clone());
            st.owner_id = conn.id();
            st.released = None;
            let opened = Opened {
                reply: Reply {
                    known: true,
                    delivered: st.delivered,
                },
                skip_through: st.accepted,
                flag_before: st.flag_before,
                slot: slot.clone(),
            };
            return Ok(opened);
        }
        self.make_room(&mut slots)?;
        let saved = self.store().and_then(|s| s.load(&hello.session));
        let accepted = saved.unwrap_or(0).max(hello.first_seq - 1);
        let slot = Arc::new(Slot {
            id: hello.session,
            state: Mutex::new(SlotState {
                accepted,
                delivered: accepted,
                acked: saved.unwrap_or(0),
                pending: 0,
                owner: Some(conn.clone()),
                owner_id: conn.id(),
                released: None,
                flag_before: hello.first_new,
            }),
        });
        slots.map.insert(hello.session, slot.clone());
        Ok(Opened {
            reply: Reply {
                known: saved.is_some(),
                delivered: saved.unwrap_or(0),
            },
            skip_through: saved.unwrap_or(0),
            flag_before: hello.first_new,
            slot,
        })
    }

    /// Connection `conn_id` of `slot` closed: the session is ownerless and starts to expire.
    pub(crate) fn release(&self, slot: &Slot, conn_id: u64) {
        let mut st = slot.lock();
        if st.owner_id == conn_id {
            st.owner = None;
            st.released = Some(Instant::now());
        }
        if let Some(store) = self.store() {
            store.save(&slot.id, st.delivered);
        }
    }

    /// Room for one more session: expired entries go (at most every quarter of the time to
    /// live), then, if the table is full, the session left ownerless longest ago.
    fn make_room(&self, slots: &mut Slots) -> Result<(), AckError> {
        let now = Instant::now();
        if now >= slots.next_sweep || slots.map.len() >= self.config.max_sessions {
            let ttl = self.config.ttl;
            slots.map.retain(|_, slot| {
                let st = slot.lock();
                st.released.map_or(true, |at| now.duration_since(at) < ttl)
            });
            slots.next_sweep = now + ttl / 4;
        }
        if slots.map.len() < self.config.max_sessions {
            return Ok(());
        }
        let oldest = slots
            .map
            .iter()
            .filter_map(|(id, slot)| slot.lock().released.map(|at| (at, *id)))
            .min();
        match oldest {
            Some((_, id)) => {
                slots.map.remove(&id);
                Ok(())
            }
            None => Err(AckError::TableFull),
        }
    }
}
