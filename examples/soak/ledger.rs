//! The soak's messages and its accounts: what each stream wrote, what the listener received on
//! which connection, what came back as failed, and how connections ended.
//!
//! A message is `stream (u32 LE) | seq (u64 LE) | checksum (u64 LE) | payload`; its size and
//! payload follow from `(stream, seq)`, so nothing written needs to be kept.
//!
//! Acknowledged mode adds what the listener says of each delivery (whether it was flagged as a
//! possible duplicate) and which listener lifetime (epoch: one bound `Listener`) delivered it,
//! so that the report can tell the duplicates acknowledged delivery allows (re-sent across a
//! listener rebind, flagged) from those it does not.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use buffstreams::{AckError, CloseReason, ConnError};
use bytes::Bytes;

const HEADER: usize = 20;
/// The largest message the soak writes.
pub const MAX_MESSAGE: usize = 64 * 1024;

fn mix(stream: u32, seq: u64) -> u64 {
    let mut z = (u64::from(stream) << 40 ^ seq).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The size of message `seq` of `stream`: log-uniform from 24 bytes to 64 KiB.
pub fn message_len(stream: u32, seq: u64) -> usize {
    let h = mix(stream, seq);
    let bits = 2 + h % 15;
    HEADER + 4 + ((h >> 8) % (1 << bits)) as usize % (MAX_MESSAGE - HEADER - 4)
}

fn checksum(stream: u32, seq: u64, payload: &[u8]) -> u64 {
    let mut h = mix(stream, seq) ^ payload.len() as u64;
    for word in payload.chunks(8) {
        let mut w = [0u8; 8];
        w[..word.len()].copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(29);
    }
    h
}

/// Builds message `seq` of `stream` in `buf`.
pub fn message(stream: u32, seq: u64, buf: &mut Vec<u8>) {
    let len = message_len(stream, seq);
    buf.resize(len, 0);
    let mut x = mix(stream, seq) | 1;
    for word in buf[HEADER..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    let sum = checksum(stream, seq, &buf[HEADER..]);
    buf[..4].copy_from_slice(&stream.to_le_bytes());
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12..20].copy_from_slice(&sum.to_le_bytes());
}

/// `(stream, seq)` of an intact message.
fn parse(msg: &[u8]) -> Option<(u32, u64)> {
    let stream = u32::from_le_bytes(msg.get(..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(msg.get(4..12)?.try_into().ok()?);
    let sum = u64::from_le_bytes(msg.get(12..20)?.try_into().ok()?);
    let intact = msg.len() == message_len(stream, seq) && sum == checksum(stream, seq, &msg[20..]);
    intact.then_some((stream, seq))
}

/// Received messages of one stream on one connection.
struct Run {
    first: u64,
    last: u64,
    count: u64,
    /// Received with a sequence at or below an earlier one on this connection.
    reordered: u64,
    /// The listener lifetime the connection belongs to.
    epoch: u64,
    /// When the run began, in the order of all runs' beginnings.
    order: u64,
}

const HANDED_BACK: u8 = 0x80;

#[derive(Default)]
struct Accounts {
    /// Per stream, per sequence: times received (low 7 bits) and `HANDED_BACK`.
    seen: Vec<Vec<u8>>,
    runs: HashMap<(u32, u64), Run>,
    handed_back_twice: u64,
    /// Runs begun so far (gives each its `order`).
    runs_begun: u64,
    /// Deliveries flagged as possible duplicates (acknowledged mode), and those of them, and
    /// of the unflagged ones, that brought a message received before.
    flagged: u64,
    flagged_duplicates: u64,
    unflagged_duplicates: u64,
    /// Messages both received and handed back, by who handed them back.
    back_by_close: HashSet<(u32, u64)>,
}

/// Everything the soak checks, shared by the handler, the hooks and the end.
#[derive(Default)]
pub struct Ledger {
    accounts: Mutex<Accounts>,
    corrupt: AtomicU64,
    /// Attackers' addresses, with how many of their connections the listener has yet to see
    /// end: an attacker's reset frees its port at once, so the next connection may have the
    /// same address before the listener saw the first one end.
    attackers: Mutex<HashMap<SocketAddr, u32>>,
    /// Writer connections that ended cleanly (EOF between frames) or not; attackers' ends;
    /// ends of connections without a peer address (reset as they were accepted: attackers as a
    /// rule, writers perhaps).
    ends: [AtomicU64; 4],
    /// Attackers' connections (and those without a peer address) an acknowledged listener
    /// closed as plain peers (no hello).
    attackers_refused_as_plain: AtomicU64,
    /// Writer connections' ends by the writer's address: whether clean.
    clean_by_peer: Mutex<HashMap<SocketAddr, bool>>,
    /// Writer connections' unclean ends by kind of reason.
    unclean_reasons: Mutex<HashMap<String, u64>>,
    /// Per writer generation: the address of its only connection, if it kept its first one.
    kept: Mutex<HashMap<u64, Option<SocketAddr>>>,
}

/// The totals over all streams.
#[derive(Debug, Default)]
pub struct Report {
    pub written: u64,
    pub received: u64,
    pub handed_back: u64,
    /// Neither received nor handed back.
    pub lost: u64,
    pub lost_bytes: u64,
    /// Lost, or handed back, from inside one connection's range of one stream: TCP loses
    /// nothing there, and a writer hands back only what follows the last frame it sent.
    pub lost_inside_a_connection: u64,
    pub handed_back_inside_a_connection: u64,
    /// Lost from a writer that kept its first connection and closed it cleanly: nothing can be
    /// lost there unreported.
    pub lost_from_clean_writers: u64,
    pub clean_writers: u64,
    pub writers: u64,
    /// The most framed bytes lost in a row on one stream.
    pub largest_gap_bytes: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub received_and_handed_back: u64,
    pub corrupt: u64,
    pub clean_ends: u64,
    pub unclean_ends: u64,
    pub attacker_ends: u64,
    pub unknown_ends: u64,
    pub attackers_refused_as_plain: u64,
    /// Acknowledged mode: deliveries flagged `possible_duplicate`; duplicates that were
    /// flagged (allowed) and unflagged (not allowed).
    pub flagged: u64,
    pub flagged_duplicates: u64,
    pub unflagged_duplicates: u64,
    /// Acknowledged mode: messages received more than once by one listener (exactly once
    /// there).
    pub duplicated_in_one_lifetime: u64,
    /// Acknowledged mode: breaks in one stream's order within one listener lifetime and one
    /// writer: its connections' runs, in the order they began, must continue one another.
    pub out_of_order_in_one_lifetime: u64,
    /// Sequences missing inside one connection's run (whatever other connections brought).
    pub holes_in_runs: u64,
    /// Messages handed back twice.
    pub handed_back_twice: u64,
    /// Of `received_and_handed_back`: those handed back by a writer's close (not
    /// acknowledged in time, delivered all the same), the rest through `on_failed`.
    pub received_and_handed_back_by_close: u64,
}

impl Ledger {
    pub fn new(streams: usize) -> Ledger {
        let ledger = Ledger::default();
        ledger.accounts.lock().unwrap().seen = vec![Vec::new(); streams];
        ledger
    }

    /// A message arrived on connection `conn` of the listener of lifetime `epoch`; `flagged`:
    /// the listener flagged it as a possible duplicate (acknowledged mode).
    pub fn received(&self, msg: &[u8], conn: u64, epoch: u64, flagged: bool) {
        let Some((stream, seq)) = parse(msg) else {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut accounts = self.accounts.lock().unwrap();
        let Some(seen) = accounts.seen.get_mut(stream as usize) else {
            drop(accounts);
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if seen.len() <= seq as usize {
            seen.resize(seq as usize + 1, 0);
        }
        let slot = &mut seen[seq as usize];
        let before = *slot & 0x7f;
        *slot = (*slot & HANDED_BACK) | (before + 1).min(0x7f);
        accounts.flagged += u64::from(flagged);
        if before > 0 {
            if flagged {
                accounts.flagged_duplicates += 1;
            } else {
                accounts.unflagged_duplicates += 1;
            }
        }
        let Accounts {
            runs, runs_begun, ..
        } = &mut *accounts;
        let run = runs.entry((stream, conn)).or_insert_with(|| {
            *runs_begun += 1;
            Run {
                first: seq,
                last: seq,
                count: 0,
                reordered: 0,
                epoch,
                order: *runs_begun,
            }
        });
        if run.count > 0 && seq <= run.last {
            run.reordered += 1;
        }
        run.last = run.last.max(seq);
        run.count += 1;
    }

    /// Messages came back from `on_failed` or (`by_close`) a writer's `close`.
    pub fn handed_back(&self, messages: &[Bytes], by_close: bool) {
        let mut accounts = self.accounts.lock().unwrap();
        for msg in messages {
            let Some((stream, seq)) = parse(msg) else {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Some(seen) = accounts.seen.get_mut(stream as usize) else {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if seen.len() <= seq as usize {
                seen.resize(seq as usize + 1, 0);
            }
            let twice = seen[seq as usize] & HANDED_BACK != 0;
            seen[seq as usize] |= HANDED_BACK;
            accounts.handed_back_twice += u64::from(twice);
            if by_close {
                accounts.back_by_close.insert((stream, seq));
            }
        }
    }

    /// An attacker's socket: its end is not a writer connection's.
    pub fn attacker(&self, local: SocketAddr) {
        *self.attackers.lock().unwrap().entry(local).or_default() += 1;
    }

    /// The listener's `on_close`.
    pub fn closed(&self, peer: SocketAddr, reason: &CloseReason) {
        let attacker = {
            let mut attackers = self.attackers.lock().unwrap();
            match attackers.get_mut(&peer) {
                Some(1) => attackers.remove(&peer).is_some(),
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => false,
            }
        };
        let plain = matches!(reason, CloseReason::Error(err)
            if matches!(**err, ConnError::Acked(AckError::PlainWriter)));
        let which = if peer.port() == 0 || attacker {
            if plain {
                self.attackers_refused_as_plain
                    .fetch_add(1, Ordering::Relaxed);
            }
            if attacker {
                2
            } else {
                3
            }
        } else {
            let clean = matches!(reason, CloseReason::PeerClosed);
            self.clean_by_peer.lock().unwrap().insert(peer, clean);
            if !clean {
                *self
                    .unclean_reasons
                    .lock()
                    .unwrap()
                    .entry(reason_kind(reason))
                    .or_default() += 1;
            }
            usize::from(!clean)
        };
        self.ends[which].fetch_add(1, Ordering::Relaxed);
    }

    /// Writer connections' unclean ends by kind of reason, most frequent first.
    pub fn unclean_reasons(&self) -> Vec<(String, u64)> {
        let mut reasons: Vec<_> = self
            .unclean_reasons
            .lock()
            .unwrap()
            .iter()
            .map(|(kind, &n)| (kind.clone(), n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        reasons
    }

    /// A writer generation was closed; `kept` is the address of its only connection, if it
    /// never reconnected.
    pub fn writer_closed(&self, generation: u64, kept: Option<SocketAddr>) {
        self.kept.lock().unwrap().insert(generation, kept);
    }

    /// Writer generations that kept one connection, which the listener saw end cleanly.
    fn clean_generations(&self) -> HashSet<u64> {
        let clean_by_peer = self.clean_by_peer.lock().unwrap();
        let kept = self.kept.lock().unwrap();
        kept.iter()
            .filter(|(_, peer)| peer.is_some_and(|p| clean_by_peer.get(&p) == Some(&true)))
            .map(|(&generation, _)| generation)
            .collect()
    }

    /// The accounts, given how many messages each stream wrote (sequences `0..written`) and,
    /// per stream, from which sequence on each writer generation took its messages.
    pub fn report(&self, written: &[u64], generations: &[Vec<(u64, u64)>]) -> Report {
        let clean = self.clean_generations();
        let accounts = self.accounts.lock().unwrap();
        let ends = |i: usize| self.ends[i].load(Ordering::Relaxed);
        let mut r = Report {
            corrupt: self.corrupt.load(Ordering::Relaxed),
            duplicated: accounts.handed_back_twice,
            clean_ends: ends(0),
            unclean_ends: ends(1),
            attacker_ends: ends(2),
            unknown_ends: ends(3),
            attackers_refused_as_plain: self.attackers_refused_as_plain.load(Ordering::Relaxed),
            flagged: accounts.flagged,
            flagged_duplicates: accounts.flagged_duplicates,
            unflagged_duplicates: accounts.unflagged_duplicates,
            handed_back_twice: accounts.handed_back_twice,
            clean_writers: clean.len() as u64,
            writers: self.kept.lock().unwrap().len() as u64,
            ..Report::default()
        };
        for (stream, (&n, seen)) in written.iter().zip(&accounts.seen).enumerate() {
            let mut taken_by = generations[stream].iter().peekable();
            let mut generation = None;
            r.written += n;
            // Anything received or handed back beyond what was written is corrupt.
            r.corrupt += seen.iter().skip(n as usize).filter(|&&s| s != 0).count() as u64;
            let mut gap = 0;
            for seq in 0..n {
                while let Some(&(_, g)) = taken_by.next_if(|&&(from, _)| from <= seq) {
                    generation = Some(g);
                }
                let s = seen.get(seq as usize).copied().unwrap_or(0);
                let times = u64::from(s & 0x7f);
                let back = s & HANDED_BACK != 0;
                r.received += times.min(1);
                r.duplicated += times.saturating_sub(1);
                r.handed_back += u64::from(back);
                if back && times > 0 {
                    r.received_and_handed_back += 1;
                    if accounts.back_by_close.contains(&(stream as u32, seq)) {
                        r.received_and_handed_back_by_close += 1;
                    }
                }
                if times == 0 && !back {
                    let bytes = 4 + message_len(stream as u32, seq) as u64;
                    r.lost += 1;
                    r.lost_bytes += bytes;
                    if generation.is_some_and(|g| clean.contains(&g)) {
                        r.lost_from_clean_writers += 1;
                    }
                    gap += bytes;
                    r.largest_gap_bytes = r.largest_gap_bytes.max(gap);
                } else {
                    gap = 0;
                }
            }
        }
        // Per stream, listener lifetime and writer generation: the runs, to check below.
        let mut lifetimes: HashMap<(u32, u64), Vec<(&Run, u64)>> = HashMap::new();
        for (&(stream, _), run) in &accounts.runs {
            r.reordered += run.reordered;
            // A run without reordering holds `count` distinct sequences from `first` to `last`.
            if run.reordered == 0 {
                r.holes_in_runs += run.last - run.first + 1 - run.count;
            }
            let seen = &accounts.seen[stream as usize];
            for seq in run.first..=run.last {
                match seen.get(seq as usize) {
                    Some(&s) if s & 0x7f > 0 => {}
                    Some(&s) if s & HANDED_BACK != 0 => r.handed_back_inside_a_connection += 1,
                    _ => r.lost_inside_a_connection += 1,
                }
            }
            // The writer generation that took the run's first message.
            let taken_by = &generations[stream as usize];
            let at = taken_by.partition_point(|&(from, _)| from <= run.first);
            let generation = at.checked_sub(1).map_or(u64::MAX, |i| taken_by[i].1);
            lifetimes
                .entry((stream, run.epoch))
                .or_default()
                .push((run, generation));
        }
        for runs in lifetimes.values_mut() {
            // One listener delivers each message once: the runs' ranges do not overlap (with
            // no holes and no reordering inside runs, an overlap is a message delivered twice).
            runs.sort_by_key(|(run, _)| (run.first, run.order));
            for pair in runs.windows(2) {
                let (a, b) = (pair[0].0, pair[1].0);
                if b.first <= a.last {
                    r.duplicated_in_one_lifetime += a.last.min(b.last) - b.first + 1;
                }
            }
            // One writer's connections to one listener: each run, in the order they began,
            // takes up where the one before ended (the listener dropped what it had already).
            runs.sort_by_key(|&(run, generation)| (generation, run.order));
            for pair in runs.windows(2) {
                let ((a, ga), (b, gb)) = (pair[0], pair[1]);
                if ga == gb && b.first != a.last + 1 {
                    r.out_of_order_in_one_lifetime += 1;
                }
            }
        }
        r
    }
}

/// A close reason without its figures ("closed locally", "io error: Connection reset by peer
/// (os error N)"): ends grouped by kind.
fn reason_kind(reason: &CloseReason) -> String {
    let mut kind = String::new();
    for c in reason.to_string().chars() {
        if !c.is_ascii_digit() {
            kind.push(c);
        } else if !kind.ends_with('N') {
            kind.push('N');
        }
    }
    kind
}
