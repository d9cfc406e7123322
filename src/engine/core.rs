//! What every backend's core shares with other threads: the command queue they use to talk to
//! a core, the wake-up (only a core that sleeps is woken: `doorbell.rs`), per-core counters,
//! thread start-up and pinning. What a core owns (its connections and listeners) is in
//! `conns`; the loops live in `uring::driver` and `epoll::driver`. This module names neither
//! driver (the `spawn` that picks one is in `runtime.rs`).
//!
//! [`CoreHandle`] (a core as the layers above see it), [`SendQueueHandle`] (a connection's send
//! side) and [`Acceptor`] (what a listener gives a core) are defined here and used through
//! `handle.rs`, which has the handles' methods: [`Command`] carries an `Arc<dyn Acceptor>`,
//! whose `open` names both handles, which hold this file's `CoreShared`, whose command queue
//! holds `Command`s: these types are defined in terms of each other, so they share this file.
//! A [`SendQueue`] holds an `Arc<CoreShared>` too: `send/queue.rs` names it only through its
//! `QueueCore` parameter (implemented here), so that file does not import this one.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::config::RuntimeConfig;
use crate::engine::doorbell::Doorbell;
use crate::engine::send::chunk::ChunkPool;
use crate::engine::send::queue::QueueCore;
use crate::engine::session::{ConnInfo, Session};
use crate::engine::stats::{CoreStats, SharedCounters};
use crate::error::StartError;

/// Work handed to a core by other threads.
pub(super) enum Command {
    /// Start accepting on a listening socket bound for this core.
    AddListener {
        id: u64,
        fd: OwnedFd,
        acceptor: Arc<dyn Acceptor>,
        ack: SyncSender<()>,
    },
    /// Stop accepting, close the listener's connections, close its socket, then ack.
    RemoveListener { id: u64, ack: SyncSender<()> },
    /// Own a connected socket (a writer's).
    AddConn {
        fd: Arc<OwnedFd>,
        info: ConnInfo,
        sendq: Arc<SendQueue>,
        session: Box<dyn Session>,
        /// The listener (by id) that accepted it and handed it off (`Acceptor::hand_off`);
        /// `None` for a writer's connection.
        listener: Option<u64>,
    },
    /// Bytes were queued on this queue.
    Flush(Arc<SendQueue>),
    /// The consumer of the connection draining this queue has room again: call the session's
    /// `resume` and, unless it pauses again, read again.
    Resume(Arc<SendQueue>),
    /// A listener's budget came under pressure: every connection whose receive may deliver more
    /// than its credit allows now has it cancelled and re-armed with the smaller limit.
    NarrowReceives,
    /// Close the connection draining this queue (ack when closed): after sending what is
    /// queued, or at once if `force`.
    CloseConn {
        sendq: Arc<SendQueue>,
        force: bool,
        ack: Option<SyncSender<()>>,
    },
    /// Close everything (sending what is queued for at most `grace`) and end the thread.
    Shutdown { grace: Duration },
}

thread_local! {
    static CURRENT_CORE: Cell<*const CoreShared> = const { Cell::new(std::ptr::null()) };
    /// Connections written to from this core's own thread since the loop last looked (their
    /// `ConnKey`s, as attached to their queues).
    static DEFERRED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// On a core's own thread: the connection `key` has bytes for the core (its queue had said it
/// waits to be told). No command, no atomic: the loop picks it up before it next enters the
/// kernel (`Conns::run_deferred`).
pub(crate) fn defer_flush(key: u64) {
    DEFERRED.with(|d| d.borrow_mut().push(key));
}

/// Swaps the connections [`defer_flush`] recorded into `batch` (which the caller emptied).
pub(super) fn take_deferred(batch: &mut Vec<u64>) {
    DEFERRED.with(|d| std::mem::swap(&mut *d.borrow_mut(), batch));
}

/// Whether [`defer_flush`] recorded connections the loop has not taken yet.
pub(super) fn has_deferred() -> bool {
    DEFERRED.with(|d| !d.borrow().is_empty())
}

/// A connection's send queue, drained by a core (see `send/queue.rs`).
pub(super) type SendQueue = crate::engine::send::queue::SendQueue<CoreShared>;

/// What other threads share with a core.
pub(super) struct CoreShared {
    index: usize,
    commands: Mutex<Vec<Command>>,
    alive: AtomicBool,
    /// Tells the core that commands or flushes wait (see `doorbell.rs`).
    bell: Doorbell,
    wake: OwnedFd,
    counters: SharedCounters,
    pool: ChunkPool,
    /// The core's ring runs with `IORING_SETUP_SQPOLL` (set once, before start-up returns).
    sqpoll: AtomicBool,
}

impl CoreShared {
    pub(super) fn new(index: usize) -> io::Result<CoreShared> {
        // SAFETY: eventfd takes no pointer and no descriptor.
        let fd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
        Ok(CoreShared {
            index,
            commands: Mutex::new(Vec::new()),
            alive: AtomicBool::new(true),
            bell: Doorbell::new(),
            // SAFETY: `fd` was just created by eventfd and is owned by nobody else.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            counters: SharedCounters::default(),
            pool: ChunkPool::default(),
            sqpoll: AtomicBool::new(false),
        })
    }

    /// Index of this core in its runtime.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the calling thread is this core's thread.
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        CURRENT_CORE.with(|c| std::ptr::eq(c.get(), self))
    }

    /// The send memory this core's queues share.
    pub(crate) fn pool(&self) -> &ChunkPool {
        &self.pool
    }

    /// A snapshot of this core's counters.
    pub(crate) fn stats(&self) -> CoreStats {
        self.counters.snapshot(self.index)
    }

    /// Queues `cmd` (upper layers go through `handle.rs`) and wakes the core if it sleeps. A command sent to a core that has ended is
    /// dropped, which drops any ack sender inside it, so a waiter sees a disconnected channel;
    /// returns whether the core took it.
    pub(super) fn send(&self, cmd: Command) -> bool {
        {
            let mut queue = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            if !self.alive.load(Ordering::Acquire) {
                return false;
            }
            queue.push(cmd);
        }
        if self.bell.ring() {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd, open while `self` lives. A
            // failure (EAGAIN when the counter is saturated) means a wake-up is already
            // pending, so it is ignored.
            let _ = syscall!(write(
                self.wake.as_raw_fd(),
                std::ptr::addr_of!(one).cast(),
                8
            ));
        }
        true
    }

    /// Driver: takes the queued commands, if any were sent since the last call.
    pub(super) fn take_commands(&self) -> Option<Vec<Command>> {
        if !self.bell.take() {
            return None;
        }
        let mut queue = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        Some(std::mem::take(&mut *queue))
    }

    /// Driver, busy polling: whether commands were sent since the last
    /// [`CoreShared::take_commands`] (a load only: see `doorbell.rs`).
    #[inline]
    pub(super) fn has_commands(&self) -> bool {
        self.bell.peek()
    }

    /// io_uring driver, at start-up: the ring runs with `IORING_SETUP_SQPOLL`.
    pub(super) fn set_sqpoll(&self) {
        self.sqpoll.store(true, Ordering::Release);
    }

    /// Whether the core's ring runs with `IORING_SETUP_SQPOLL`.
    pub(super) fn sqpoll(&self) -> bool {
        self.sqpoll.load(Ordering::Acquire)
    }

    /// Driver: announces that the core is about to block. Returns `false` if commands arrived
    /// meanwhile (then the core must not block, and calls [`CoreShared::awake`]). While the core
    /// sleeps, senders write to [`CoreShared::wake_fd`].
    pub(crate) fn about_to_sleep(&self) -> bool {
        self.bell.about_to_sleep()
    }

    /// Driver: the core is running again.
    pub(crate) fn awake(&self) {
        self.bell.awake();
    }

    /// The eventfd senders write to when the core sleeps; a driver keeps a read armed on it.
    pub(crate) fn wake_fd(&self) -> std::os::fd::RawFd {
        self.wake.as_raw_fd()
    }

    /// Driver: publishes the core's private counters.
    pub(crate) fn publish(&self, local: &CoreStats) {
        self.counters.publish(local);
    }

    /// Marks the core ended and drops every queued command (and so their ack senders).
    fn retire(&self) {
        let dropped = {
            let mut queue = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            self.alive.store(false, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        drop(dropped);
    }
}

/// Retires its core when dropped, including while a panic unwinds the core's thread.
struct Retire(Arc<CoreShared>);

impl Drop for Retire {
    fn drop(&mut self) {
        self.0.retire();
    }
}

/// One core of a runtime, as the layers above the engine see it.
#[derive(Clone)]
pub(crate) struct CoreHandle(pub(super) Arc<CoreShared>);

/// One connection's send side (a writer's across its reconnects): cheap to clone, usable from
/// any thread.
#[derive(Clone)]
pub(crate) struct SendQueueHandle(pub(super) Arc<SendQueue>);

/// Builds the session and queue for each connection a listener accepts.
pub(crate) trait Acceptor: Send + Sync {
    /// A connection was accepted on `core`: its send side and its session. `None` refuses it
    /// (the core closes it at once and counts it in
    /// [`CoreStats::refused`](crate::CoreStats::refused)).
    fn open(
        &self,
        info: ConnInfo,
        core: &CoreHandle,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)>;

    /// Takes an accepted socket over instead of [`open`](Acceptor::open) (which runs when this
    /// gives it back): a listener that must do work before the connection carries messages
    /// (a TLS handshake) does it elsewhere, then hands the connection to its core with
    /// [`CoreHandle::adopt_accepted`].
    fn hand_off(&self, fd: OwnedFd, info: ConnInfo, core: &CoreHandle) -> Result<(), OwnedFd> {
        let _ = (info, core);
        Err(fd)
    }

    /// Whether this listener's sessions want [`Session::on_tick`].
    fn ticks(&self) -> bool {
        false
    }
}

impl QueueCore for CoreShared {
    #[inline]
    fn pool(&self) -> &ChunkPool {
        CoreShared::pool(self)
    }

    #[inline]
    fn is_current(&self) -> bool {
        CoreShared::is_current(self)
    }

    #[inline]
    fn defer_flush(key: u64) {
        defer_flush(key);
    }

    fn flush(&self, queue: Arc<SendQueue>) {
        self.send(Command::Flush(queue));
    }
}

/// A backend's per-core loop.
pub(super) trait Driver: Sized {
    /// Sets the core up on its own thread (the ring or poller must be created there).
    fn new(shared: Arc<CoreShared>, cfg: &RuntimeConfig) -> Result<Self, StartError>;
    /// Runs until shut down, then releases everything the kernel may still use.
    fn run(self);
}

/// Starts core `index` on a new thread running driver `D`; returns once its loop is set up
/// (or failed to set up). `engine::spawn` picks the driver.
pub(super) fn spawn_with<D: Driver>(
    index: usize,
    cfg: &RuntimeConfig,
) -> Result<(Arc<CoreShared>, std::thread::JoinHandle<()>), StartError> {
    let shared = Arc::new(CoreShared::new(index).map_err(StartError::Setup)?);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread_shared = shared.clone();
    let cfg = cfg.clone();
    let handle = std::thread::Builder::new()
        .name(format!("buffstreams-core-{index}"))
        .spawn(move || {
            let shared = thread_shared;
            if let Some(cpu) = cfg.cpu_for(index) {
                pin_to_cpu(cpu);
            }
            let core = match D::new(shared.clone(), &cfg) {
                Ok(core) => core,
                Err(err) => {
                    shared.retire();
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            CURRENT_CORE.with(|c| c.set(Arc::as_ptr(&shared)));
            let span = tracing::debug_span!("core", index);
            let _enter = span.enter();
            // Retired however the loop ends: a panic out of it (a user's close hook) must not
            // leave commands queued forever, or whoever waits for their answers (a listener's
            // close) would wait forever.
            let _retire = Retire(shared);
            core.run();
        })
        .map_err(|source| StartError::Spawn {
            core: index,
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((shared, handle)),
        Ok(Err(err)) => {
            let _ = handle.join();
            Err(err)
        }
        Err(_) => {
            let _ = handle.join();
            Err(StartError::Spawn {
                core: index,
                source: io::Error::other("core thread ended during start-up"),
            })
        }
    }
}

fn pin_to_cpu(cpu: usize) {
    if !crate::engine::cpus::pin_current_thread(cpu) {
        tracing::debug!(cpu, "could not pin core thread");
    }
}
