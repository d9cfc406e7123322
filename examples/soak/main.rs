//! Soak: a listener on every core, writers streaming from several threads, and faults injected
//! at random times; at the end, every message written is accounted for.
//!
//! ```text
//! cargo run --release --example soak -- [--minutes N | --seconds N] [--writers W] [--threads T]
//!                                        [--backend auto|uring|epoll] [--no-faults] [--acked]
//! ```
//!
//! - The listener (handler delivery, one core per CPU) checks every message (stream, sequence,
//!   checksum) and records which connection brought it; `on_close` records how connections end.
//! - `W` writers (default 8), each written by `T` threads (default 2, one stream each, half of
//!   them through a `BufferedWriter`), messages of 24 bytes to 64 KiB, `RetryPolicy::forever()`;
//!   `on_failed` and `close` hand messages back.
//! - Faults at random times: the handler closes the connection of the next message, the
//!   listener is closed and bound again on the same port, a writer is closed and re-dialed.
//! - Alongside: partial-frame attackers and idle connections (`attackers.rs`).
//!
//! A message is lost if it was neither received nor handed back. TCP delivery ends at the local
//! kernel: bytes in the writer's send buffer and the listener's receive buffer when a connection
//! dies are lost unreported (as `tests/delivery.rs` reasons), so losses are allowed only at the
//! end of a connection that did not end cleanly, at most both buffers' sysctl maximum each, and
//! none from a writer that kept its first connection and closed it cleanly.
//! Everything else must be zero: duplicates, reordering within a connection, holes inside one
//! connection's sequence range, messages both received and handed back, corrupt messages.
//! Sequences, order and holes are per stream (one thread writing to one writer slot): threads
//! sharing a writer have no order between them.
//!
//! `--acked` runs the listener and the writers in acknowledged mode (`docs/acked-protocol.md`),
//! with the same faults; the attackers, plain peers, are refused by the listener. Then nothing
//! may be lost, not even at unclean connection ends: every message written is received or
//! handed back. A message received more than once must have been flagged
//! `possible_duplicate` on every receipt after its first (re-sent to a listener bound again,
//! which cannot vouch for it), and no listener lifetime may deliver one twice. Within one
//! listener lifetime, each writer's connections continue one another's order, per stream. A
//! message a writer's `close` hands back may have been received (delivered, its
//! acknowledgement not back in time): counted apart, allowed (see `docs/soak.md`).

mod attackers;
mod ledger;
mod report;

/// The listener's partial-frame budget: small enough that attackers' half frames make writers'
/// split frames wait their turn.
const LIMIT_BUDGET: usize = 4 << 20;
/// The listener's connection cap (writers and attackers stay under it; the limit path runs when
/// attackers burst).
const LIMIT_CONNECTIONS: usize = 256;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{
    AckedStats, Backend, ConnInfo, Listener, ListenerConfig, ListenerStats, RetryPolicy, Runtime,
    RuntimeConfig, Writer, WriterConfig,
};
use ledger::{message, Ledger, MAX_MESSAGE};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    run: Duration,
    writers: usize,
    threads: usize,
    faults: bool,
    backend: Backend,
    acked: bool,
}

const USAGE: &str = "usage: soak [--minutes N | --seconds N] [--writers W] [--threads T] \
                     [--backend auto|uring|epoll] [--no-faults] [--acked]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        run: Duration::from_secs(60),
        writers: 8,
        threads: 2,
        faults: true,
        backend: Backend::Auto,
        acked: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || -> Result<u64, String> {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            value.parse().map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--minutes" => args.run = Duration::from_secs(60 * number()?),
            "--seconds" => args.run = Duration::from_secs(number()?),
            "--writers" => args.writers = number()? as usize,
            "--threads" => args.threads = number()? as usize,
            "--no-faults" => args.faults = false,
            "--acked" => args.acked = true,
            "--backend" => {
                args.backend = match it.next().as_deref() {
                    Some("auto") => Backend::Auto,
                    Some("uring") => Backend::IoUring,
                    Some("epoll") => Backend::Epoll,
                    _ => return Err(USAGE.into()),
                }
            }
            _ => return Err(USAGE.into()),
        }
    }
    if args.writers == 0 || args.threads == 0 {
        return Err("need at least one writer and one thread per writer".into());
    }
    Ok(args)
}

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Default)]
struct Faults {
    kills: AtomicU64,
    restarts: AtomicU64,
    bind_retries: AtomicU64,
    redials: AtomicU64,
}

/// Acknowledged mode's counters, summed over every listener and writer of the run.
#[derive(Default)]
pub struct AckTotals {
    /// Listeners' `possible_duplicates` and `duplicates_dropped`.
    pub flagged: AtomicU64,
    pub dropped: AtomicU64,
    /// Writers' `acked_stats` at their close: messages they numbered, and re-sent.
    pub written: AtomicU64,
    pub resent: AtomicU64,
    /// Writer closes, and those that handed messages back (acknowledgements not all back
    /// within the close's timeout).
    pub closes: AtomicU64,
    pub closes_unsent: AtomicU64,
}

impl AckTotals {
    fn listener(&self, stats: &ListenerStats) {
        self.flagged
            .fetch_add(stats.possible_duplicates, Ordering::Relaxed);
        self.dropped
            .fetch_add(stats.duplicates_dropped, Ordering::Relaxed);
    }

    fn writer(&self, stats: Option<AckedStats>, unsent: bool) {
        self.closes.fetch_add(1, Ordering::Relaxed);
        self.closes_unsent
            .fetch_add(u64::from(unsent), Ordering::Relaxed);
        if let Some(stats) = stats {
            self.written.fetch_add(stats.written, Ordering::Relaxed);
            self.resent.fetch_add(stats.resent, Ordering::Relaxed);
        }
    }
}

struct Soak {
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
    /// Set by the fault thread: the handler closes the connection of the next message.
    kill_next: Arc<AtomicBool>,
    faults: Arc<Faults>,
    runtime: Runtime,
    addr: SocketAddr,
    listener: Mutex<Listener>,
    slots: Vec<Mutex<Dialed>>,
    generations: AtomicU64,
    /// Acknowledged mode (`--acked`).
    acked: bool,
    /// Listener lifetimes: bumped by each bind.
    epochs: AtomicU64,
    ack_totals: AckTotals,
}

/// A writer in a slot: its generation (unique per dial) and its first connection, to tell at
/// its close whether it ever lost a connection.
#[derive(Clone)]
struct Dialed {
    generation: u64,
    writer: Writer,
    first: Option<ConnInfo>,
}

impl Soak {
    fn start(args: &Args) -> Result<Soak, Error> {
        let runtime = Runtime::new(RuntimeConfig {
            backend: args.backend,
            ..RuntimeConfig::default()
        })?;
        let ledger = Arc::new(Ledger::new(args.writers * args.threads));
        let (kill_next, faults) = (Arc::default(), Arc::<Faults>::default());
        let live = Live {
            ledger: &ledger,
            kill_next: &kill_next,
            faults: &faults,
            acked: args.acked,
            epoch: 0,
        };
        let listener = bind(&runtime, "127.0.0.1:0", &live)?;
        let mut soak = Soak {
            stop: Arc::default(),
            ledger,
            kill_next,
            faults,
            runtime,
            addr: listener.local_addr(),
            listener: Mutex::new(listener),
            slots: Vec::new(),
            generations: AtomicU64::new(0),
            acked: args.acked,
            epochs: AtomicU64::new(1),
            ack_totals: AckTotals::default(),
        };
        for _ in 0..args.writers {
            let dialed = soak.dial()?;
            soak.slots.push(Mutex::new(dialed));
        }
        Ok(soak)
    }

    /// Dials a writer and waits (up to 2 s) for its first connection.
    fn dial(&self) -> Result<Dialed, Error> {
        let ledger = self.ledger.clone();
        let writer = Writer::dial(
            WriterConfig::new(self.addr.to_string())
                .max_message_size(2 * MAX_MESSAGE)
                .runtime(RuntimeConfig {
                    cores: 1,
                    pin: false,
                    backend: self.runtime.backend(),
                    ..RuntimeConfig::default()
                })
                .retry(RetryPolicy::forever())
                .background_connect(true)
                .acked(self.acked)
                .on_failed(move |failed| ledger.handed_back(&failed.messages, false)),
        )?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while writer.conn_info().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = writer.conn_info();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        Ok(Dialed {
            generation,
            writer,
            first,
        })
    }

    /// Closes a writer: what it could not send comes back; if it kept its first connection to
    /// the end, the ledger may count it clean.
    fn close(&self, dialed: &Dialed, timeout: Duration) {
        let closed = dialed.writer.close_timeout(timeout);
        if let Err(unsent) = &closed {
            self.ledger.handed_back(&unsent.unsent, true);
        }
        if self.acked {
            self.ack_totals
                .writer(dialed.writer.acked_stats(), closed.is_err());
        }
        let last = dialed.writer.conn_info();
        let kept = match (dialed.first.clone(), last) {
            (Some(first), Some(last)) if first.id == last.id => Some(last.local),
            _ => None,
        };
        self.ledger.writer_closed(dialed.generation, kept);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Closes the listener, waits a little, binds the same port again.
    fn restart_listener(&self, rng: &mut Rng) -> Result<(), Error> {
        let mut listener = self.listener.lock().unwrap();
        listener.close();
        self.ack_totals.listener(&listener.stats());
        std::thread::sleep(Duration::from_millis(10 + rng.below(300)));
        let addr = self.addr.to_string();
        let mut tries = 0;
        let live = Live {
            ledger: &self.ledger,
            kill_next: &self.kill_next,
            faults: &self.faults,
            acked: self.acked,
            epoch: self.epochs.fetch_add(1, Ordering::Relaxed),
        };
        *listener = loop {
            match bind(&self.runtime, &addr, &live) {
                Ok(l) => break l,
                Err(err) if tries < 100 => {
                    tries += 1;
                    self.faults.bind_retries.fetch_add(1, Ordering::Relaxed);
                    eprintln!("binding {addr} again failed: {err}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err.into()),
            }
        };
        self.faults.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Puts a new writer in slot `i`, then closes the old one (what it could not send comes
    /// back); its threads move to the new one when their next write fails.
    fn redial(&self, i: usize) -> Result<(), Error> {
        let new = self.dial()?;
        let old = std::mem::replace(&mut *self.slots[i].lock().unwrap(), new);
        self.close(&old, Duration::from_secs(2));
        self.faults.redials.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What a listener's handler and hooks share with the soak.
struct Live<'a> {
    ledger: &'a Arc<Ledger>,
    kill_next: &'a Arc<AtomicBool>,
    faults: &'a Arc<Faults>,
    acked: bool,
    /// This listener's lifetime.
    epoch: u64,
}

fn bind(runtime: &Runtime, addr: &str, live: &Live) -> Result<Listener, buffstreams::ListenError> {
    let (on_msg, on_close) = (live.ledger.clone(), live.ledger.clone());
    let (kill_next, faults) = (live.kill_next.clone(), live.faults.clone());
    let epoch = live.epoch;
    let config = ListenerConfig::new(addr, move |msg, conn| {
        // Recorded before returning: in acknowledged mode, returning acknowledges.
        on_msg.received(msg, conn.id(), epoch, conn.possible_duplicate());
        if kill_next.load(Ordering::Relaxed) && kill_next.swap(false, Ordering::Relaxed) {
            conn.close();
            faults.kills.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
    .max_message_size(2 * MAX_MESSAGE)
    // The limits a server facing untrusted peers sets: the attackers run into them.
    .partial_frame_budget(LIMIT_BUDGET)
    .frame_timeout(Duration::from_secs(3))
    .idle_timeout(Duration::from_secs(2))
    .max_connections(LIMIT_CONNECTIONS)
    .acked(live.acked)
    .on_close(move |info, reason, _unsent| on_close.closed(info.peer, reason));
    Listener::bind_on(runtime, config)
}

/// One stream: writes sequence numbers 0, 1, … to whatever writer is in `slot`; returns how
/// many were accepted, and from which sequence on each writer generation took them.
fn stream(soak: &Soak, slot: usize, stream: u32, buffered: bool) -> (u64, Vec<(u64, u64)>) {
    let mut rng = Rng::new(u64::from(stream));
    let mut buf = Vec::with_capacity(MAX_MESSAGE);
    let mut seq = 0;
    let mut generations = Vec::new();
    while !soak.stopped() {
        let dialed = soak.slots[slot].lock().unwrap().clone();
        if generations.last().map(|&(_, g)| g) != Some(dialed.generation) {
            generations.push((seq, dialed.generation));
        }
        let writer = &dialed.writer;
        let mut ok = true;
        for _ in 0..64 {
            if !ok || soak.stopped() {
                break;
            }
            if buffered {
                ok = buffered_burst(writer, stream, &mut seq, &mut buf);
            } else if rng.below(8) == 0 {
                let batch: Vec<Vec<u8>> = (0..1 + rng.below(8))
                    .map(|i| {
                        let mut m = Vec::new();
                        message(stream, seq + i, &mut m);
                        m
                    })
                    .collect();
                let result = writer.write_batch(&batch);
                seq += result.as_ref().map_or_else(|e| e.queued, |_| batch.len()) as u64;
                ok = result.is_ok();
            } else {
                message(stream, seq, &mut buf);
                ok = writer.write(&buf).is_ok();
                seq += u64::from(ok);
            }
        }
        if !ok {
            // The writer was closed (re-dialed): take the slot's new one.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (seq, generations)
}

/// Up to 32 messages through a `BufferedWriter`, then a flush; whether all went well.
fn buffered_burst(writer: &Writer, stream: u32, seq: &mut u64, buf: &mut Vec<u8>) -> bool {
    let mut out = writer.buffered();
    for _ in 0..32 {
        message(stream, *seq, buf);
        // An error means the message was not taken (a full batch is handed on before the
        // message is framed); what the batch already held is sent by a later flush or, when
        // `out` drops, handed back through `on_failed`.
        if out.write(buf).is_err() {
            return false;
        }
        *seq += 1;
    }
    out.flush().is_ok()
}

fn inject_faults(soak: &Soak) -> Result<(), Error> {
    let mut rng = Rng::new(0xFA17);
    loop {
        let pause = Instant::now() + Duration::from_millis(200 + rng.below(1300));
        while Instant::now() < pause {
            if soak.stopped() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match rng.below(6) {
            0..=2 => soak.kill_next.store(true, Ordering::Relaxed),
            3 => soak.restart_listener(&mut rng)?,
            _ => soak.redial(rng.below(soak.slots.len() as u64) as usize)?,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("soak failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, Error> {
    let soak = Arc::new(Soak::start(args)?);
    let started = Instant::now();
    println!(
        "soak: {} s, listener on {} cores ({:?}) at {}, {} writers x {} threads{}",
        args.run.as_secs(),
        soak.runtime.cores(),
        soak.runtime.backend(),
        soak.addr,
        args.writers,
        args.threads,
        if args.acked { ", acknowledged" } else { "" }
    );
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || report::sample_peaks(&sampling))
    };
    let fds_at_start = std::fs::read_dir("/proc/self/fd")?.count();
    let streams: Vec<_> = (0..args.writers * args.threads)
        .map(|s| {
            let soak = soak.clone();
            let slot = s / args.threads;
            std::thread::spawn(move || stream(&soak, slot, s as u32, s % 2 == 1))
        })
        .collect();
    let faults = {
        let soak = soak.clone();
        let on = args.faults;
        std::thread::spawn(move || if on { inject_faults(&soak) } else { Ok(()) })
    };
    let stats = Arc::new(attackers::AttackStats::default());
    let attackers = attackers::start(
        soak.addr,
        2 * MAX_MESSAGE,
        2,
        &soak.stop,
        &soak.ledger,
        &stats,
    );

    let mut next_line = Duration::ZERO;
    while started.elapsed() < args.run {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() >= next_line {
            next_line += Duration::from_secs(15);
            let received: u64 = soak
                .runtime
                .stats()
                .iter()
                .map(|s| s.messages_received)
                .sum();
            println!(
                "  {:>4} s: {received} messages received",
                started.elapsed().as_secs()
            );
        }
    }

    // Stop writing, then the faults and attackers; close every writer (what it cannot send comes
    // back) and wait until the listener has read every connection to its end.
    soak.stop.store(true, Ordering::Relaxed);
    let (written, generations): (Vec<u64>, Vec<_>) =
        streams.into_iter().map(|t| t.join().unwrap()).unzip();
    faults.join().unwrap()?;
    attackers.into_iter().for_each(|t| t.join().unwrap());
    for slot in &soak.slots {
        let dialed = slot.lock().unwrap().clone();
        soak.close(&dialed, Duration::from_secs(10));
    }
    let listener = soak.listener.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listener.connections().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let open_at_end = listener.connections().len();
    let held_at_end = listener.partial_frame_bytes();
    listener.close();
    soak.ack_totals.listener(&listener.stats());
    let sum =
        |f: fn(&buffstreams::CoreStats) -> u64| -> u64 { soak.runtime.stats().iter().map(f).sum() };
    println!(
        "limits           {} idle timeouts, {} frame timeouts, {} refused over {} connections; \
         partial-frame budget {} MiB, {} bytes held at the end",
        sum(|s| s.idle_timeouts),
        sum(|s| s.frame_timeouts),
        sum(|s| s.refused),
        LIMIT_CONNECTIONS,
        LIMIT_BUDGET >> 20,
        held_at_end
    );
    sampling.store(true, Ordering::Relaxed);
    let (peak_fds, peak_threads) = sampler.join().unwrap();
    let end = report::End {
        written,
        generations,
        open_at_end,
        fds_at_start,
        peak_fds,
        peak_threads,
    };
    Ok(report::report(&soak, &stats, &end))
}
