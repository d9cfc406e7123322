//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use buffstreams::{Backend, Framing, RuntimeConfig};

/// Polls `cond` every millisecond until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// xorshift64*: deterministic, fast, good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fills `buf` with bytes that never equal the framing's delimiter (if it has one).
pub fn fill(rng: &mut Rng, buf: &mut [u8], framing: Framing) {
    for b in buf.iter_mut() {
        let mut v = rng.next() as u8;
        if let Framing::Delimited(d) = framing {
            if v == d {
                v = d.wrapping_add(1);
            }
        }
        *b = v;
    }
}

/// An order-sensitive digest of a message sequence: equal digests mean (with overwhelming
/// probability) the same messages in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest {
    pub count: u64,
    pub bytes: u64,
    pub hash: u64,
}

impl Digest {
    pub fn add(&mut self, msg: &[u8]) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ msg.len() as u64;
        for &b in msg {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.count += 1;
        self.bytes += msg.len() as u64;
        self.hash = self
            .hash
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
            ^ h;
    }
}

/// Every framing, with a maximum message size it can carry.
pub fn all_framings() -> Vec<(Framing, usize)> {
    vec![
        (Framing::U16Be, 1024),
        (Framing::U16Le, 1024),
        (Framing::U32Be, 1024),
        (Framing::U32Le, 1024),
        (Framing::U64Be, 1024),
        (Framing::U64Le, 1024),
        (Framing::Varint, 1024),
        (Framing::BuffStreams, 1024),
        (Framing::Delimited(b'\n'), 1024),
        (Framing::Delimited(0), 1024),
    ]
}

/// Installs a `tracing` subscriber once (RUST_LOG controls it), so failures show engine events.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Both engine backends, for tests that run on each.
pub const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

/// Runs `scenario(backend: Backend)` as two tests, `scenario::io_uring` and `scenario::epoll`,
/// so a failure names its backend.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[test]
            fn io_uring() {
                super::$scenario(buffstreams::Backend::IoUring);
            }
            #[test]
            fn epoll() {
                super::$scenario(buffstreams::Backend::Epoll);
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// An unpinned runtime of `cores` cores on `backend` (tests share the machine's CPUs).
pub fn runtime_on(backend: Backend, cores: usize) -> RuntimeConfig {
    RuntimeConfig {
        cores,
        backend,
        pin: false,
        ..RuntimeConfig::default()
    }
}

/// Anonymous network namespaces with a given loopback MTU (the benchmark's `--mtu` code).
#[path = "../../benches/throughput/netns.rs"]
pub mod netns;

/// A TCP proxy that cuts connections (acknowledged-delivery tests).
pub mod cutter;

/// Test certificates for the TLS tests.
#[cfg(feature = "tls")]
pub mod tls;

/// Runs `f` on a thread of its own inside a new network namespace whose loopback has MTU `mtu`
/// (threads `f` starts, such as a runtime's cores, are in it too; the namespace is freed when
/// the last of them ends). `Err` if it cannot be made: that needs root (CI runs as root).
pub fn in_namespace_with_mtu<T: Send + 'static>(
    mtu: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    use std::os::fd::AsRawFd;
    let ns = netns::with_loopback_mtu(mtu)?;
    std::thread::spawn(move || {
        // SAFETY: setns takes a descriptor and flags and touches no memory of ours; `ns` is an
        // open network-namespace descriptor for the whole call. It moves only this thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .expect("the namespace thread panicked")
}

/// Dials `addr` and writes `good` once, waiting (up to 5 s) until `count` shows the listener
/// received it: a well-behaved stream, ready before a test brings in bad peers.
pub fn good_stream(
    addr: std::net::SocketAddr,
    count: &std::sync::atomic::AtomicU64,
) -> buffstreams::Writer {
    let writer =
        buffstreams::Writer::dial(buffstreams::WriterConfig::new(addr.to_string())).unwrap();
    writer.write(b"good").unwrap();
    assert!(wait_until(Duration::from_secs(5), || count
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0));
    writer
}

/// A test this machine cannot run (`why`) passes with a note, unless
/// `BUFFSTREAMS_REQUIRE_IO_URING=1` (CI sets it: the full environment, with io_uring, root and
/// two CPUs) says it must run here: then it fails.
#[allow(dead_code)]
pub fn skip(why: &str) {
    if std::env::var("BUFFSTREAMS_REQUIRE_IO_URING").is_ok_and(|v| v == "1") {
        panic!("{why}, and BUFFSTREAMS_REQUIRE_IO_URING=1 requires this test to run");
    }
    eprintln!("{why}: skipped");
}
