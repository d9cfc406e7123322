//! `send --acked`'s watchdog: a thread that follows the writers' acknowledgements and closes
//! the writers when waiting for them can no longer end well, so that a write waiting for room
//! (the unacknowledged bound) or the final `flush_acked` returns instead of waiting forever.
//!
//! It gives up when no new acknowledgement came for `--ack-timeout` while messages wait for
//! one, when the listener keeps closing connections without acknowledging anything (a plain
//! listener: the writer's hello is not answered, and the writer reconnects again and again), or
//! on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use buffstreams::Writer;

use crate::Stop;

/// `--ack-timeout`'s default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections per writer made without any acknowledgement before the watchdog decides the
/// listener is not answering the acknowledged protocol. A listener restart costs one.
const CHURN_PER_WRITER: u64 = 10;

/// How often the acknowledgements are looked at.
const EVERY: Duration = Duration::from_millis(20);

/// Why the watchdog closed the writers.
#[derive(Debug, Clone, PartialEq)]
pub enum GaveUp {
    /// No acknowledgement for this long while messages waited for one.
    Stalled(Duration),
    /// This many connections were made (and ended) without an acknowledgement.
    Churn(u64),
    /// Ctrl-C.
    Interrupted,
}

/// The writers' counters added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages written (handed to the writers' queues).
    pub written: u64,
    /// Messages sent again after reconnects.
    pub resent: u64,
}

/// The acknowledgement counters of every writer, added up.
pub fn totals(writers: &[Writer]) -> Totals {
    writers
        .iter()
        .filter_map(Writer::acked_stats)
        .fold(Totals::default(), |sum, s| Totals {
            acked: sum.acked + s.acked,
            written: sum.written + s.written,
            resent: sum.resent + s.resent,
        })
}

/// The newest connection id among the writers (ids grow with every connection made).
fn newest_conn(writers: &[Writer]) -> u64 {
    writers
        .iter()
        .filter_map(|w| w.conn_info().map(|info| info.id))
        .max()
        .unwrap_or(0)
}

/// The running watchdog.
pub struct AckWatch {
    done: Arc<AtomicBool>,
    thread: JoinHandle<Option<GaveUp>>,
}

impl AckWatch {
    /// Starts watching `writers` (clones of the ones the caller writes through).
    pub fn start(writers: Vec<Writer>, stop: Stop, timeout: Duration) -> Result<AckWatch, String> {
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let thread = std::thread::Builder::new()
            .name("ack-watch".into())
            .spawn(move || watch(&writers, &stop, timeout, &finished))
            .map_err(|e| format!("cannot start the acknowledgement watchdog: {e}"))?;
        Ok(AckWatch { done, thread })
    }

    /// Stops watching; says why the writers were closed, if they were.
    pub fn finish(self) -> Option<GaveUp> {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(None)
    }
}

fn watch(writers: &[Writer], stop: &Stop, timeout: Duration, done: &AtomicBool) -> Option<GaveUp> {
    let mut last = totals(writers).acked;
    let mut since = Instant::now();
    let mut conn_at_progress = newest_conn(writers);
    let churn_limit = CHURN_PER_WRITER * writers.len() as u64;
    let verdict = loop {
        if done.load(Ordering::Relaxed) {
            return None;
        }
        if stop.requested() {
            break GaveUp::Interrupted;
        }
        let now = totals(writers);
        let conn = newest_conn(writers);
        if now.acked != last || now.acked >= now.written {
            last = now.acked;
            since = Instant::now();
            conn_at_progress = conn;
        } else if since.elapsed() >= timeout {
            break GaveUp::Stalled(timeout);
        } else if conn.saturating_sub(conn_at_progress) >= churn_limit {
            break GaveUp::Churn(conn - conn_at_progress);
        }
        std::thread::sleep(EVERY);
    };
    // A write or flush waiting on a writer returns once it is closed. What was not acknowledged
    // is counted from the writers' counters, not from what close hands back.
    for writer in writers {
        let _ = writer.close_timeout(Duration::ZERO);
    }
    Some(verdict)
}
