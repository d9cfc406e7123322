//! A fault-injecting TCP proxy: forwards each connection to a target and cuts it after a
//! random number of bytes from the client, dropping what it holds (both directions end at
//! once, with a reset). What the client's kernel had accepted and the proxy had read is lost,
//! as when a connection dies with bytes in flight.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Rng;

pub struct Cutter {
    pub addr: SocketAddr,
    pub cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Sets `SO_LINGER` to 0: closing sends a reset and drops unsent bytes.
fn linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl Cutter {
    /// Proxies to `target`, cutting each connection after `min..max` bytes from the client
    /// (`max == 0`: never).
    pub fn start(target: SocketAddr, min: u64, max: u64, seed: u64) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cuts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            while !s.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let budget = if max == 0 {
                    u64::MAX
                } else {
                    min + rng.below(max - min + 1)
                };
                client.set_nonblocking(false).ok();
                live.lock()
                    .unwrap()
                    .push(client.try_clone().expect("clone"));
                pipe(client, server, budget, c.clone(), s.clone());
            }
            for conn in live.lock().unwrap().drain(..) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        Cutter {
            addr,
            cuts,
            stop,
            thread: Some(thread),
        }
    }

    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways; after `budget` bytes from the client, resets both sides.
fn pipe(
    client: TcpStream,
    server: TcpStream,
    budget: u64,
    cuts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let (c2, s2) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let cut = move |a: &TcpStream, b: &TcpStream| {
        linger_zero(a);
        linger_zero(b);
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    let (ca, sa) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    std::thread::spawn(move || {
        let (mut from, mut to) = (client, server);
        let mut buf = vec![0u8; 64 << 10];
        let mut left = budget;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let pass = (n as u64).min(left) as usize;
            if to.write_all(&buf[..pass]).is_err() {
                break;
            }
            left -= pass as u64;
            if left == 0 || stop.load(Ordering::Relaxed) {
                cuts.fetch_add(1, Ordering::Relaxed);
                cut(&ca, &sa);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut from, mut to) = (s2, c2);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
