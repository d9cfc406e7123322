//! A listener's handshake thread: accepted sockets are handed to it (under a cap on
//! handshakes in progress), it runs their handshakes side by side with nonblocking I/O and
//! `poll`, each within the handshake timeout, and hands every finished connection on. The
//! cores never run a handshake: the 100-300 us of CPU a full handshake costs, which anyone who
//! can reach the port can make the listener spend, lands on this thread, which runs at a lower
//! scheduling priority (nice 10 by default): on a CPU it shares with a core, the core's
//! established streams get most of the CPU and handshakes the rest (measured: `cargo bench
//! --bench tls_flood`, docs/benchmarks.md).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

use crate::engine::handle::{ConnInfo, CoreHandle};
use crate::tls::error::TlsError;
use crate::tls::handshake::{Established, Handshaking};

/// An accepted socket waiting for its handshake.
pub(crate) struct Job {
    pub(crate) fd: OwnedFd,
    pub(crate) info: ConnInfo,
    pub(crate) core: CoreHandle,
}

/// What happens to a handshake's connection when it ends.
pub(crate) trait Finish: Send + 'static {
    /// The handshake finished: hand the connection to its core.
    fn established(&self, job: Job, tls: Established<UnbufferedServerConnection>);
    /// It failed (the socket is closed after this).
    fn failed(&self, info: &ConnInfo, err: TlsError);
}

/// The handle a listener's acceptor holds; dropping it ends the thread (handshakes still in
/// progress are dropped, closing their sockets).
pub(crate) struct Handshaker {
    jobs: Sender<Job>,
    wake: UnixStream,
    /// The thread is (about to be) asleep in `poll`: a new job must wake it.
    asleep: Arc<AtomicBool>,
    in_progress: Arc<AtomicUsize>,
    max: usize,
}

impl Handshaker {
    /// Starts the thread, at scheduling priority `nice` (see `ListenerConfig::handshake_nice`).
    pub(crate) fn start(
        config: Arc<ServerConfig>,
        timeout: Duration,
        max: usize,
        nice: i32,
        finish: Box<dyn Finish>,
    ) -> std::io::Result<Handshaker> {
        let (jobs, rx) = mpsc::channel();
        let (wake, woken) = UnixStream::pair()?;
        woken.set_nonblocking(true)?;
        let in_progress = Arc::new(AtomicUsize::new(0));
        let asleep = Arc::new(AtomicBool::new(false));
        let thread = Thread {
            asleep: asleep.clone(),
            config,
            timeout,
            jobs: rx,
            woken,
            in_progress: in_progress.clone(),
            finish,
            live: Vec::new(),
            nice,
        };
        std::thread::Builder::new()
            .name("buffstreams-tls".into())
            .spawn(move || thread.run())?;
        Ok(Handshaker {
            jobs,
            wake,
            asleep,
            in_progress,
            max: max.max(1),
        })
    }

    /// Hands `job` to the thread; gives it back if `max` handshakes are in progress already.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        if self.in_progress.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.in_progress.fetch_sub(1, Ordering::AcqRel);
            return Err(job);
        }
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            self.in_progress.fetch_sub(1, Ordering::AcqRel);
            return Err(job);
        }
        // Pairs with the thread's fence between saying it sleeps and looking at the channel
        // a last time: either it sees this job, or this sees it asleep and wakes it.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            let _ = (&self.wake).write(&[1]);
        }
        Ok(())
    }
}

impl Drop for Handshaker {
    fn drop(&mut self) {
        // The channel disconnects when `jobs` goes; the byte makes the thread look now.
        let _ = (&self.wake).write(&[0]);
    }
}

struct Live {
    job: Job,
    hs: Handshaking<UnbufferedServerConnection>,
    deadline: Instant,
}

struct Thread {
    asleep: Arc<AtomicBool>,
    config: Arc<ServerConfig>,
    timeout: Duration,
    jobs: Receiver<Job>,
    woken: UnixStream,
    in_progress: Arc<AtomicUsize>,
    finish: Box<dyn Finish>,
    live: Vec<Live>,
    nice: i32,
}

impl Thread {
    fn run(mut self) {
        if self.nice != 0 {
            // SAFETY: setpriority takes plain integers and touches no memory; on Linux,
            // PRIO_PROCESS with id 0 is the calling thread alone (nice is per thread).
            let set = syscall!(setpriority(libc::PRIO_PROCESS, 0, self.nice));
            if let Err(err) = set {
                tracing::warn!(%err, nice = self.nice, "cannot change the TLS handshake thread's priority");
            }
        }
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            if !self.take_jobs() {
                return;
            }
            self.asleep.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // A job sent before `asleep` was seen did not wake this thread: look once more.
            if !self.take_jobs() {
                return;
            }
            fds.clear();
            fds.push(pollfd(&self.woken, libc::POLLIN));
            fds.extend(self.live.iter().map(|l| pollfd(&l.job.fd, l.hs.events())));
            let now = Instant::now();
            let next = self.live.iter().map(|l| l.deadline).min();
            let ms = next.map_or(-1, |at| {
                at.saturating_duration_since(now)
                    .as_millis()
                    .clamp(1, i32::MAX as u128) as i32
            });
            // SAFETY: `fds` is a live vector of initialised pollfds, and its length is passed.
            let polled = syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms));
            self.asleep.store(false, Ordering::SeqCst);
            if polled.is_err() {
                continue; // EINTR; nothing else is possible with valid arguments
            }
            if fds[0].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.woken).read(&mut sink), Ok(n) if n > 0) {}
            }
            let now = Instant::now();
            // Only the handshakes polled (those begun since are not in `fds`), last first: a
            // handshake that ends is swapped with the last, which was seen already.
            let polled = fds.len() - 1;
            for i in (0..polled.min(self.live.len())).rev() {
                if fds[i + 1].revents != 0 {
                    self.advance(i);
                } else if now >= self.live[i].deadline {
                    self.settle(i, Err(TlsError::HandshakeTimeout(self.timeout)));
                }
            }
        }
    }

    /// Begins every job waiting; `false` once the listener is gone.
    fn take_jobs(&mut self) -> bool {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.begin(job),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// A new handshake: its ClientHello has usually arrived already, so it is read at once
    /// rather than after a round of `poll`.
    fn begin(&mut self, job: Job) {
        match UnbufferedServerConnection::new(self.config.clone()) {
            Ok(conn) => {
                self.live.push(Live {
                    job,
                    hs: Handshaking::new(conn),
                    deadline: Instant::now() + self.timeout,
                });
                self.advance(self.live.len() - 1);
            }
            Err(err) => {
                self.in_progress.fetch_sub(1, Ordering::AcqRel);
                self.finish.failed(&job.info, TlsError::Handshake(err));
            }
        }
    }

    /// Reads and writes what handshake `i` can now; hands it on if it finished or failed.
    fn advance(&mut self, i: usize) {
        let l = &mut self.live[i];
        let result = l.hs.read(&l.job.fd).and_then(|()| l.hs.write(&l.job.fd));
        self.settle(i, result);
    }

    /// Hands handshake `i` on if `result` ended it.
    fn settle(&mut self, i: usize, result: Result<(), TlsError>) {
        match result {
            Ok(()) if !self.live[i].hs.finished() => {}
            Ok(()) => {
                let l = self.live.swap_remove(i);
                self.in_progress.fetch_sub(1, Ordering::AcqRel);
                self.finish.established(l.job, l.hs.established());
            }
            Err(err) => {
                let l = self.live.swap_remove(i);
                self.in_progress.fetch_sub(1, Ordering::AcqRel);
                self.finish.failed(&l.job.info, err);
            }
        }
    }
}

fn pollfd(fd: &impl AsRawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}
