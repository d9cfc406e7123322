//! Connections that are no writers: partial-frame attackers (announce a large frame, trickle a
//! few bytes of it, disappear) and idle connections (connect, say nothing, leave).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ledger::Ledger;
use crate::Rng;

/// How many idle connections are held open at once.
const IDLE: usize = 32;

#[derive(Default)]
pub struct AttackStats {
    pub partial: AtomicU64,
    pub idle: AtomicU64,
    pub refused: AtomicU64,
}

/// Starts `partial` partial-frame attackers and one keeper of idle connections; they stop when
/// `stop` is set.
pub fn start(
    addr: SocketAddr,
    max: usize,
    partial: usize,
    stop: &Arc<AtomicBool>,
    ledger: &Arc<Ledger>,
    stats: &Arc<AttackStats>,
) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for i in 0..=partial {
        let (stop, ledger, stats) = (stop.clone(), ledger.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(0xA77A_C4E5 + i as u64);
            let attacker = Attacker {
                addr,
                ledger: &ledger,
                stats: &stats,
            };
            if i == partial {
                attacker.idle(&stop, &mut rng);
            } else {
                while !stop.load(Ordering::Relaxed) {
                    attacker.partial_frame(max, &stop, &mut rng);
                }
            }
        }));
    }
    threads
}

struct Attacker<'a> {
    addr: SocketAddr,
    ledger: &'a Ledger,
    stats: &'a AttackStats,
}

impl Attacker<'_> {
    fn connect(&self) -> Option<TcpStream> {
        match TcpStream::connect(self.addr) {
            Ok(s) => {
                if let Ok(local) = s.local_addr() {
                    self.ledger.attacker(local);
                }
                Some(s)
            }
            Err(_) => {
                // The listener is being restarted.
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
                None
            }
        }
    }

    /// Announces a frame of up to (or over) the maximum, sends a little of it slowly, then
    /// closes, resets, or simply goes away.
    fn partial_frame(&self, max: usize, stop: &AtomicBool, rng: &mut Rng) {
        let Some(mut s) = self.connect() else {
            return;
        };
        self.stats.partial.fetch_add(1, Ordering::Relaxed);
        let len = match rng.below(4) {
            0 => u32::MAX,
            1 => (max + 1 + rng.below(1000) as usize) as u32,
            _ => (max / 2 + rng.below(max as u64 / 2) as usize) as u32,
        };
        let mut sent = s.write_all(&len.to_be_bytes()).is_ok();
        for _ in 0..rng.below(40) {
            if !sent || stop.load(Ordering::Relaxed) {
                break;
            }
            let piece: Vec<u8> = (0..1 + rng.below(256))
                .map(|_| rng.next_u64() as u8)
                .collect();
            sent = s.write_all(&piece).is_ok();
            std::thread::sleep(Duration::from_millis(5 + rng.below(45)));
        }
        go_away(s, rng);
    }

    /// Holds up to `IDLE` silent connections, replacing one now and then.
    fn idle(&self, stop: &AtomicBool, rng: &mut Rng) {
        let mut held: Vec<TcpStream> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if held.len() < IDLE {
                if let Some(s) = self.connect() {
                    self.stats.idle.fetch_add(1, Ordering::Relaxed);
                    held.push(s);
                }
            }
            if !held.is_empty() && rng.below(4) == 0 {
                let s = held.swap_remove(rng.below(held.len() as u64) as usize);
                go_away(s, rng);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for s in held {
            go_away(s, rng);
        }
    }
}

/// Closes with a FIN, or with a reset (SO_LINGER 0).
fn go_away(s: TcpStream, rng: &mut Rng) {
    if rng.below(2) == 0 {
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    }
    drop(s);
}
