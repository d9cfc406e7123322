//! Background reconnects: one thread per runtime, started on first use, that runs connect
//! attempts when they are due. Connecting blocks (up to the connect timeout), so it never runs
//! on a core.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a job wants after an attempt.
pub(crate) enum Next {
    /// Finished (connected, gave up, or no longer needed).
    Done,
    /// Try again after this long.
    RetryIn(Duration),
}

/// A reconnect job. Held weakly: a job whose owner is gone is dropped.
pub(crate) trait Redial: Send + Sync {
    /// Makes one attempt.
    fn attempt(&self) -> Next;
}

struct Job {
    due: Instant,
    seq: u64,
    job: Weak<dyn Redial>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct State {
    queue: BinaryHeap<Reverse<Job>>,
    seq: u64,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Dialer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Dialer {
    /// Runs `job` at `due` (on the dialer thread, starting it if needed).
    pub(crate) fn schedule(&self, job: Weak<dyn Redial>, due: Instant) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.stopped {
                return;
            }
            st.seq += 1;
            let seq = st.seq;
            st.queue.push(Reverse(Job { due, seq, job }));
        }
        self.shared.changed.notify_one();
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name("buffstreams-dialer".into())
                .spawn(move || run(&shared))
            {
                Ok(handle) => *thread = Some(handle),
                Err(err) => tracing::error!(%err, "cannot start the reconnect thread"),
            }
        }
    }

    /// Drops pending jobs and joins the thread (unless called from it).
    pub(crate) fn stop(&self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stopped = true;
            st.queue.clear();
        }
        self.shared.changed.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(shared: &Shared) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if st.stopped {
            return;
        }
        let now = Instant::now();
        let due = match st.queue.peek() {
            None => {
                st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            Some(Reverse(job)) => job.due,
        };
        if due > now {
            st = shared
                .changed
                .wait_timeout(st, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let Some(Reverse(job)) = st.queue.pop() else {
            continue;
        };
        drop(st);
        let next = job.job.upgrade().map(|j| j.attempt());
        st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Next::RetryIn(delay)) = next {
            st.seq += 1;
            let seq = st.seq;
            st.queue.push(Reverse(Job {
                due: Instant::now() + delay,
                seq,
                job: job.job,
            }));
        }
    }
}
