//! What a child process keeps: message counters (server), round-trip samples, the first
//! error and, in acknowledged mode, the count of acknowledged messages (client). Everything here is process-global so any contender can report from any
//! thread without plumbing.
//!
//! Counting costs no atomic read-modify-write: each thread owns a cache-line-sized slot that
//! only it writes (a plain load + store), and the control thread sums the slots at the edges
//! of the measurement window.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

#[repr(align(128))]
#[derive(Default)]
struct Slot {
    msgs: AtomicU64,
    bytes: AtomicU64,
}

static SLOTS: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());

thread_local! {
    static MY_SLOT: Cell<Option<&'static Slot>> = const { Cell::new(None) };
}

fn my_slot() -> &'static Slot {
    MY_SLOT.with(|cell| match cell.get() {
        Some(slot) => slot,
        None => {
            // One small leak per thread that ever counts; the process is short-lived.
            let slot: &'static Slot = Box::leak(Box::default());
            SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
            cell.set(Some(slot));
            slot
        }
    })
}

/// Server side: `msgs` messages carrying `bytes` payload bytes arrived. Cheap; call it per
/// message from whatever thread received them.
#[inline]
pub fn count(msgs: u64, bytes: u64) {
    let slot = my_slot();
    // Single writer per slot: no RMW needed, readers only sum.
    slot.msgs.store(slot.msgs.load(Relaxed) + msgs, Relaxed);
    slot.bytes.store(slot.bytes.load(Relaxed) + bytes, Relaxed);
}

/// (messages, payload bytes) counted so far by all threads.
pub fn totals() -> (u64, u64) {
    SLOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .fold((0, 0), |(m, b), s| {
            (m + s.msgs.load(Relaxed), b + s.bytes.load(Relaxed))
        })
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static RTTS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Client side: one round trip took `rtt`. Kept only inside the measurement window of a
/// 1-connection ping-pong; otherwise a single relaxed load.
#[inline]
pub fn record_rtt(rtt: Duration) {
    if RECORDING.load(Relaxed) {
        let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        RTTS.lock().unwrap_or_else(|e| e.into_inner()).push(ns);
    }
}

pub fn start_recording() {
    RTTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    RECORDING.store(true, Relaxed);
}

/// Stops recording and returns the samples (ns).
pub fn stop_recording() -> Vec<u64> {
    RECORDING.store(false, Relaxed);
    std::mem::take(&mut *RTTS.lock().unwrap_or_else(|e| e.into_inner()))
}

static CLIENT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Client side: a connection failed. The first error is reported at the window's end.
pub fn client_error(msg: impl std::fmt::Display) {
    let mut slot = CLIENT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(msg.to_string());
    }
}

pub fn take_client_error() -> Option<String> {
    CLIENT_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

/// Client side, acknowledged mode: what counts the messages acknowledged so far (summed over
/// the client's writers). Set once by a client whose writers are acknowledged.
type AckedSource = Box<dyn Fn() -> u64 + Send>;
static ACKED: Mutex<Option<AckedSource>> = Mutex::new(None);

/// Client side: `acked` sums the messages every writer of the client saw acknowledged
/// (`Writer::acked_stats`). The client's report then carries that count over the window.
pub fn set_acked_source(acked: impl Fn() -> u64 + Send + 'static) {
    *ACKED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(acked));
}

/// Messages acknowledged so far; `None` when the client is not acknowledged.
pub fn acked_total() -> Option<u64> {
    ACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|acked| acked())
}
