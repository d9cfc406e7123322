//! How many [`BufferedWriter`](crate::BufferedWriter)s fill batches on each core now: they size
//! their batches by it, so that a core's batches together stay in cache. A writer policy, kept
//! here rather than in the engine's chunk pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::handle::CoreHandle;

/// The live counts, by core (its [`CoreHandle::id`]); an entry goes when its count drops to 0.
/// A few entries (one per core with batching handles), touched per handle, never per message.
static HANDLES: Mutex<Vec<(usize, Arc<AtomicUsize>)>> = Mutex::new(Vec::new());

/// One batching handle's place in its core's count: counted while it lives.
#[derive(Debug)]
pub(crate) struct CoreShare {
    core: usize,
    count: Arc<AtomicUsize>,
}

impl CoreShare {
    /// Counts one more batching handle on `core`.
    pub(crate) fn join(core: &CoreHandle) -> CoreShare {
        let mut all = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
        let count = match all.iter().find(|(id, _)| *id == core.id()) {
            Some((_, count)) => count.clone(),
            None => {
                let count = Arc::new(AtomicUsize::new(0));
                all.push((core.id(), count.clone()));
                count
            }
        };
        count.fetch_add(1, Ordering::Relaxed);
        CoreShare {
            core: core.id(),
            count,
        }
    }

    /// How many batching handles share the core now (read once per batch, not per message).
    pub(crate) fn handles(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for CoreShare {
    fn drop(&mut self) {
        let mut all = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
        if self.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            all.retain(|(id, _)| *id != self.core);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CoreShare;
    use crate::engine::handle::CoreHandle;

    #[test]
    fn handles_on_one_core_count_each_other_not_another_cores() {
        let (a, b) = (CoreHandle::detached(), CoreHandle::detached());
        let one = CoreShare::join(&a);
        let two = CoreShare::join(&a);
        let other = CoreShare::join(&b);
        assert_eq!((one.handles(), two.handles(), other.handles()), (2, 2, 1));
        drop(two);
        assert_eq!(one.handles(), 1);
        drop(one);
        assert_eq!(CoreShare::join(&a).handles(), 1, "counted again from zero");
    }
}
