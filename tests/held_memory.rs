//! What a listener holds for hostile peers, measured as the process's resident memory: many
//! connections that each announce an 8 MiB frame and trickle it, never finishing, on both
//! backends, with the default configuration (64 MiB budget) and with an 8 MiB budget.
//!
//! - While they trickle, resident memory grows by at most the budget plus 16 MiB, however many
//!   of them there are (50 or 500), and a good connection keeps streaming.
//! - Once they have closed, resident memory is back within 8 MiB of where it started.
//!
//! Each scenario runs in this test binary's own process, one at a time (resident memory is
//! process-wide).

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{Backend, Listener, ListenerConfig};
use common::{good_stream, runtime_on, wait_until};

const MIB: usize = 1 << 20;
/// What every attacker announces: the default maximum message size.
const ANNOUNCE: usize = 8 * MIB;
/// The valid frames attackers stream first in the `streamed_first` scenarios: 1 KiB with their
/// header.
const STREAMED_FRAME: usize = 1020;
/// How much each streams first: past the receive credit's slow start (4 + 8 + ... + 256 KiB).
const STREAM_FIRST: usize = 640 * 1024;

/// Resident memory scenarios are process-wide: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// This process's resident set, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// `conns` peers that each announce an `ANNOUNCE`-byte frame and send all of it but its last
/// byte (none of them ever finishes), as fast as the listener takes it. They all connect
/// first, then each sends its header with the first 64 KiB of payload in one write, so a
/// connection that must wait for the budget has a full socket buffer behind its header.
struct Attackers {
    socks: Vec<TcpStream>,
    /// Bytes of its frame each sends at most (header included).
    frame_bytes: usize,
    /// Bytes of frame (header included) each has sent.
    sent: Vec<usize>,
}

impl Attackers {
    fn connect(addr: SocketAddr, conns: usize) -> Attackers {
        let socks: Vec<TcpStream> = (0..conns)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        Attackers {
            sent: vec![0; socks.len()],
            socks,
            frame_bytes: 4 + ANNOUNCE - 1,
        }
    }

    /// Every attacker first streams `each` bytes (a multiple of 64 KiB) of valid 1 KiB frames,
    /// so that its connection's receive credit has grown past its slow start to no limit;
    /// returns once `delivered` counts them all.
    fn stream_first(&mut self, each: usize, delivered: &AtomicU64) {
        let mut block = Vec::with_capacity(64 * 1024);
        while block.len() < 64 * 1024 {
            block.extend_from_slice(&(STREAMED_FRAME as u32).to_be_bytes());
            block.resize(block.len() + STREAMED_FRAME, 7);
        }
        let mut left = vec![each; self.socks.len()];
        while left.iter().any(|&l| l > 0) {
            let mut progress = false;
            for (s, left) in self.socks.iter_mut().zip(&mut left) {
                let at = (each - *left) % block.len();
                let n = (block.len() - at).min(*left);
                if n == 0 {
                    continue;
                }
                match s.write(&block[at..at + n]) {
                    Ok(n) => {
                        *left -= n;
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("attacker write failed: {e}"),
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let frames = (self.socks.len() * each / block.len() * 64) as u64;
        assert!(
            wait_until(Duration::from_secs(30), || delivered
                .load(Ordering::Relaxed)
                >= frames),
            "the attackers' first frames were not all delivered"
        );
    }

    /// One round: every attacker sends what its socket takes of its next 64 KiB. Returns the
    /// bytes sent.
    fn round(&mut self, frame_start: &[u8]) -> usize {
        let total = self.frame_bytes;
        let mut sent = 0;
        for (s, done) in self.socks.iter_mut().zip(&mut self.sent) {
            // The frame's bytes from `done` on: the header, then 0x5a forever.
            let from = (*done).min(4);
            let bytes = &frame_start[from..];
            let n = bytes.len().min(total - *done);
            if n == 0 {
                continue;
            }
            match s.write(&bytes[..n]) {
                Ok(n) => {
                    *done += n;
                    sent += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("attacker write failed: {e}"),
            }
        }
        sent
    }
}

struct Figures {
    peak_growth: usize,
    /// The most bytes stopped connections held at once (sampled).
    held_peak: usize,
    after_close: isize,
    good: u64,
}

fn scenario(backend: Backend, conns: usize, budget: Option<usize>, stream_first: bool) -> Figures {
    let good = Arc::new(AtomicU64::new(0));
    let streamed = Arc::new(AtomicU64::new(0));
    let (g, st) = (good.clone(), streamed.clone());
    let mut config = ListenerConfig::new("127.0.0.1:0", move |msg, _| {
        if msg == b"good" {
            g.fetch_add(1, Ordering::Relaxed);
        } else if msg.len() == STREAMED_FRAME {
            st.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
    .runtime(runtime_on(backend, 1));
    if let Some(budget) = budget {
        config = config.partial_frame_budget(budget);
    }
    let listener = Listener::bind(config).unwrap();
    let addr = listener.local_addr();
    let writer = good_stream(addr, &good);
    std::thread::sleep(Duration::from_millis(100));
    let start = rss();

    let mut attackers = Attackers::connect(addr, conns);
    if stream_first {
        attackers.stream_first(STREAM_FIRST, &streamed);
        // Streaming grew their sockets' receive buffers to megabytes: 500 of them full would
        // put the kernel's TCP memory under pressure (`tcp_mem`), whose drops and
        // retransmission backoff then stall the test for seconds. 1 MiB each still leaves
        // every stopped connection with far more queued than its credit.
        attackers.frame_bytes = MIB;
    }
    let mut frame_start = (ANNOUNCE as u32).to_be_bytes().to_vec();
    frame_start.resize(4 + 64 * 1024, 0x5a);
    let mut peak = rss();
    let mut held_peak = 0;
    let good_before = good.load(Ordering::Relaxed);
    let mut written = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        if attackers.round(&frame_start) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        for _ in 0..10 {
            writer.write(b"good").unwrap();
        }
        written += 10;
        peak = peak.max(rss());
        held_peak = held_peak.max(listener.held_bytes());
    }
    writer.flush().unwrap();
    // Everything the good connection wrote meanwhile arrives, with the attackers still there.
    let written = good_before + written;
    let flowed = wait_until(Duration::from_secs(10), || {
        good.load(Ordering::Relaxed) >= written
    });
    peak = peak.max(rss());
    let good_during = good.load(Ordering::Relaxed) - good_before;
    assert!(
        flowed,
        "{backend:?} {conns}: the good connection stalled ({good_during} of {} delivered)",
        written - good_before
    );

    drop(attackers);
    assert!(
        wait_until(Duration::from_secs(30), || {
            listener.partial_frame_bytes() == 0
                && listener.held_bytes() == 0
                && listener.connections().len() <= 1
        }),
        "{backend:?} {conns}: the attackers' connections did not all close ({} left, {} bytes \
         held, {} reserved)",
        listener.connections().len(),
        listener.held_bytes(),
        listener.partial_frame_bytes()
    );
    std::thread::sleep(Duration::from_millis(200));
    let after = rss() as isize - start as isize;
    writer.close().unwrap();
    listener.close();
    Figures {
        peak_growth: peak.saturating_sub(start),
        held_peak,
        after_close: after,
        good: good_during,
    }
}

fn check(backend: Backend, conns: usize, budget: Option<usize>, stream_first: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = scenario(backend, conns, budget, stream_first);
    let limit = budget.unwrap_or(buffstreams::DEFAULT_PARTIAL_FRAME_BUDGET);
    eprintln!(
        "{backend:?}, {conns} attackers{}, budget {} MiB: resident +{:.1} MiB at peak (held by \
         stopped connections: {} KiB at most), {:+.1} MiB after they closed; {} good messages \
         meanwhile",
        if stream_first {
            " (streamed first)"
        } else {
            ""
        },
        limit / MIB,
        f.peak_growth as f64 / MIB as f64,
        f.held_peak / 1024,
        f.after_close as f64 / MIB as f64,
        f.good
    );
    assert!(
        f.peak_growth <= limit + 16 * MIB,
        "{backend:?}, {conns} attackers: resident memory grew by {} MiB (budget {} MiB + 16)",
        f.peak_growth / MIB,
        limit / MIB
    );
    // A few KiB per stopped connection (its receive credit), however it behaved before.
    assert!(
        f.held_peak <= conns * 8 * 1024,
        "{backend:?}, {conns} attackers: stopped connections held {} KiB",
        f.held_peak / 1024
    );
    assert!(
        f.after_close <= 8 * MIB as isize,
        "{backend:?}, {conns} attackers: {} MiB still resident after they closed",
        f.after_close / MIB as isize
    );
}

macro_rules! scenarios {
    ($($name:ident: $conns:expr, $budget:expr, $stream_first:expr;)+) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                super::check(buffstreams::Backend::IoUring, $conns, $budget, $stream_first);
            }
            #[test]
            fn epoll() {
                super::check(buffstreams::Backend::Epoll, $conns, $budget, $stream_first);
            }
        }
    )+};
}

scenarios! {
    default_budget_50: 50, None, false;
    default_budget_500: 500, None, false;
    budget_8_mib_50: 50, Some(8 * super::MIB), false;
    budget_8_mib_500: 500, Some(8 * super::MIB), false;
    // Peers whose receives have no limit any more when they stop.
    streamed_first_500: 500, None, true;
    streamed_first_budget_8_mib_500: 500, Some(8 * super::MIB), true;
}
