//! Interop of acknowledged mode (docs/acked-protocol.md) with an independent peer written from
//! that document alone, tests/interop/acked_peer.py (Python standard library only), both
//! directions:
//!
//! - a Python writer to our acked listener, plain and cutting its own connection (RST) every
//!   300 messages: each message is delivered exactly once, in order, none flagged, and Python
//!   sees everything acknowledged;
//! - the same with the handler echoing every message back: Python gets every reply (tag 0);
//! - our acked writer to a Python listener that resets each connection after 250 messages
//!   having acknowledged only half of them: the writer re-sends, numbering its frames as the
//!   protocol says (the payload holds the sequence number, Python numbers the frames), and
//!   Python delivers every message exactly once;
//! - a Python writer across a restart of our listener: every message is delivered, by the old
//!   or the new listener; the new one knows no session, so it flags what the writer had sent
//!   before, and everything delivered twice is flagged;
//! - the same where the new listener's first connection from the writer breaks at once: what
//!   the old process delivered must still be flagged on the next connection.
//!
//! Python is found as in tests/interop_python.rs: `BUFFSTREAMS_PYTHON` (default `python3`);
//! without one the tests print why and pass, unless `BUFFSTREAMS_REQUIRE_INTEROP` is set.
//! Every wait is bounded, and every Python process is killed if it outlives its test.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{runtime_on, wait_until, BACKENDS};
use buffstreams::{
    Backend, Conn, Framing, HandlerError, Listener, ListenerConfig, RetryPolicy, Writer,
    WriterConfig,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/acked_peer.py");

/// Messages per run.
const N: u64 = 2_000;

/// The longest any wait (for a line, for an exit, for acknowledgements) may take.
const LIMIT: Duration = Duration::from_secs(30);

/// The Python to run, or `None` (with the reason printed) if there is none.
fn python() -> Option<String> {
    let python = std::env::var("BUFFSTREAMS_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import select, signal, socket, struct, threading"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why = format!("no usable {python} (a Python 3 with its standard library)");
    if std::env::var_os("BUFFSTREAMS_REQUIRE_INTEROP").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// The peer's name for `framing`.
fn framing_name(framing: Framing) -> &'static str {
    match framing {
        Framing::U32Be => "u32be",
        Framing::U32Le => "u32le",
        Framing::U64Be => "u64be",
        Framing::U64Le => "u64le",
        Framing::Varint => "varint",
        other => panic!("acked_peer.py has no framing {other:?}"),
    }
}

/// A running acked_peer.py: its stdout line by line (read on a thread of its own, so the pipe
/// never fills); killed when dropped. Its stderr is the test's.
struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    fn spawn(python: &str, args: &[String]) -> Peer {
        let mut child = Command::new(python)
            .arg(SCRIPT)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// The next stdout line, waiting at most `LIMIT`.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .expect("a line from acked_peer.py in time")
    }

    /// Every line up to and including the first that starts with `DONE` (within `LIMIT` in
    /// all); fails on an `ERROR` line, an early exit or the time limit.
    fn until_done(&self) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("DONE");
                    assert!(
                        !line.starts_with("ERROR"),
                        "acked_peer.py failed: {line} (after {} lines)",
                        got.len()
                    );
                    got.push(line);
                    if done {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "acked_peer.py said no DONE in {LIMIT:?}; last lines: {:?}",
                    &got[got.len().saturating_sub(5)..]
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "acked_peer.py ended without DONE; last lines: {:?}",
                    &got[got.len().saturating_sub(5)..]
                ),
            }
        }
    }

    /// Waits for a successful exit, at most `LIMIT`.
    fn finish(mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(status.success(), "acked_peer.py exited with {status}");
                    return;
                }
                None if Instant::now() >= deadline => panic!("acked_peer.py did not exit in time"),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key=` in a `DONE k=v ...` line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// What a listener's handler saw: each message's sequence number (its payload's first 8
/// bytes, big-endian) and whether it was flagged as a possible duplicate.
type Seen = Arc<Mutex<Vec<(u64, bool)>>>;

/// An acked listener on `addr` recording into `seen`; with `echo`, writing each message back;
/// with `slow`, sleeping 1 ms per message.
fn acked_listener(
    addr: &str,
    backend: Backend,
    framing: Framing,
    seen: Seen,
    echo: bool,
    slow: bool,
) -> Listener {
    Listener::bind(
        ListenerConfig::new(
            addr,
            move |msg: &[u8], conn: &Conn| -> Result<(), HandlerError> {
                let head: [u8; 8] = msg.get(..8).ok_or("a message under 8 bytes")?.try_into()?;
                let seq = u64::from_be_bytes(head);
                seen.lock().unwrap().push((seq, conn.possible_duplicate()));
                if echo {
                    conn.write(msg)?;
                }
                if slow {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            },
        )
        .acked(true)
        .framing(framing)
        .runtime(runtime_on(backend, 1)),
    )
    .unwrap()
}

/// `acked_peer.py send 127.0.0.1:PORT --count n --size 64 --framing F` plus `extra`.
fn send_args(port: u16, n: u64, framing: Framing, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "send".into(),
        format!("127.0.0.1:{port}"),
        "--count".into(),
        n.to_string(),
        "--size".into(),
        "64".into(),
        "--framing".into(),
        framing_name(framing).into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Python writes N messages (resetting its connection every `cut_every` if set) to our acked
/// listener: each is delivered exactly once, in order, unflagged; Python saw all acknowledged.
fn python_writes_acked_listener_reads(framing: Framing, cut_every: Option<u64>, echo: bool) {
    let Some(python) = python() else { return };
    for backend in BACKENDS {
        let seen = Seen::default();
        let listener = acked_listener("127.0.0.1:0", backend, framing, seen.clone(), echo, false);
        let cut = cut_every.map(|k| k.to_string());
        let mut extra = vec![];
        if let Some(k) = &cut {
            extra.extend(["--cut-every", k.as_str()]);
        }
        if echo {
            extra.push("--expect-replies");
        }
        let peer = Peer::spawn(
            &python,
            &send_args(listener.local_addr().port(), N, framing, &extra),
        );
        let lines = peer.until_done();
        peer.finish();
        let done = lines.last().unwrap();
        assert_eq!(field(done, "sent"), N, "{backend:?}: {done}");
        assert_eq!(field(done, "acked"), N, "{backend:?}: {done}");
        if cut_every.is_some_and(|k| k < N) {
            assert!(
                field(done, "resent") > 0,
                "{backend:?}: nothing re-sent: {done}"
            );
        }
        // An ack means the handler returned: everything is recorded already.
        let got = seen.lock().unwrap().clone();
        let seqs: Vec<u64> = got.iter().map(|&(s, _)| s).collect();
        assert_eq!(
            seqs,
            (1..=N).collect::<Vec<u64>>(),
            "{backend:?}: not each message once and in order ({} delivered)",
            seqs.len()
        );
        let flagged: Vec<u64> = got.iter().filter(|m| m.1).map(|m| m.0).collect();
        assert!(
            flagged.is_empty(),
            "{backend:?}: flagged although the listener lived: {flagged:?}"
        );
        if echo {
            let replies: Vec<u64> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("REPLY "))
                .map(seq_of)
                .collect();
            assert_eq!(
                replies,
                (1..=N).collect::<Vec<u64>>(),
                "{backend:?}: replies"
            );
        }
        listener.close();
    }
}

/// The sequence number at the front of a hex payload.
fn seq_of(hex: &str) -> u64 {
    u64::from_str_radix(
        hex.get(..16)
            .unwrap_or_else(|| panic!("short payload {hex}")),
        16,
    )
    .unwrap_or_else(|e| panic!("payload {hex}: {e}"))
}

#[test]
fn python_writer_acked_listener() {
    python_writes_acked_listener_reads(Framing::U32Be, None, false);
}

#[test]
fn python_writer_resetting_every_300_acked_listener() {
    python_writes_acked_listener_reads(Framing::U32Be, Some(300), false);
}

#[test]
fn python_writer_resetting_every_300_acked_listener_varint() {
    python_writes_acked_listener_reads(Framing::Varint, Some(300), false);
}

#[test]
fn python_writer_gets_the_acked_listeners_replies() {
    python_writes_acked_listener_reads(Framing::U32Be, None, true);
}

/// Our acked writer sends N messages (each its sequence number, 8 bytes big-endian) to a
/// Python listener that resets every connection after delivering 250 messages on it, having
/// acknowledged only the first 125: the writer resumes on each new connection, and Python,
/// which lives throughout, delivers each message exactly once, numbered as its payload says.
#[test]
fn acked_writer_python_listener_resetting_every_250() {
    let Some(python) = python() else { return };
    for backend in BACKENDS {
        // "-": the port comes as the first line, "PORT P".
        let args: Vec<String> = vec![
            "listen".into(),
            "-".into(),
            "--framing".into(),
            "u32be".into(),
            "--cut-after".into(),
            "250".into(),
            "--expect".into(),
            N.to_string(),
        ];
        let peer = Peer::spawn(&python, &args);
        let first = peer.line();
        let port = first
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_string();
        let writer = Writer::dial(
            WriterConfig::new(format!("127.0.0.1:{port}"))
                .acked(true)
                // ~340 frames of 12 bytes: the writer waits for acknowledgements as well.
                .max_unacked_bytes(4 << 10)
                .retry(RetryPolicy::forever())
                .framing(Framing::U32Be)
                .runtime(runtime_on(backend, 1)),
        )
        .unwrap();
        // Writes and the wait for acknowledgements on a thread, so that the wait is bounded.
        let (tx, rx) = mpsc::channel();
        let w = writer.clone();
        std::thread::spawn(move || {
            let result = (|| {
                for seq in 1..=N {
                    w.write(&seq.to_be_bytes())?;
                }
                w.flush_acked()
            })()
            .map_err(|e| e.to_string());
            let _ = tx.send(result);
        });
        match rx.recv_timeout(LIMIT) {
            Ok(result) => result.unwrap_or_else(|e| panic!("{backend:?}: {e}")),
            Err(_) => panic!(
                "{backend:?}: not everything acknowledged in {LIMIT:?}: {:?}",
                writer.acked_stats().map(|s| (s.acked, s.resent))
            ),
        }
        let stats = writer.acked_stats().expect("an acked writer's stats");
        assert_eq!(stats.acked, N, "{backend:?}");
        assert!(
            stats.resent > 0,
            "{backend:?}: Python reset connections holding unacknowledged messages, yet \
             nothing was re-sent"
        );
        assert!(
            writer.close_timeout(LIMIT).is_ok(),
            "{backend:?}: close left messages unsent"
        );

        let lines = peer.until_done();
        peer.finish();
        let done = lines.last().unwrap();
        let mut sessions = HashSet::new();
        let mut seqs = Vec::new();
        for line in lines.iter().filter(|l| l.starts_with("MSG ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 5, "{backend:?}: {line:?}");
            sessions.insert(words[1].to_string());
            let seq: u64 = words[2].parse().unwrap();
            assert_eq!(
                words[3], "0",
                "{backend:?}: flagged although Python's listener lived: {line}"
            );
            assert_eq!(words[4].len(), 16, "{backend:?}: payload of {line}");
            assert_eq!(
                seq_of(words[4]),
                seq,
                "{backend:?}: frame numbered {seq} carries another message: {line}"
            );
            seqs.push(seq);
        }
        assert_eq!(sessions.len(), 1, "{backend:?}: one writer, one session");
        assert_eq!(
            seqs,
            (1..=N).collect::<Vec<u64>>(),
            "{backend:?}: not each message once and in order ({} delivered)",
            seqs.len()
        );
        assert_eq!(field(done, "delivered"), N, "{backend:?}: {done}");
    }
}

/// A Python writer streams to our acked listener, which closes (its handler slowed down so
/// that the stream is still going) and is bound again on the same address: a new listener
/// that knows no session. Every message is delivered by the first or the second; each
/// delivers in order and at most once; the second flags a prefix of what it delivers (the
/// messages Python had sent before), and every message both delivered is among them.
#[test]
fn python_writer_across_an_acked_listener_restart() {
    let Some(python) = python() else { return };
    const TOTAL: u64 = 3_000;
    for backend in BACKENDS {
        let before = Seen::default();
        let after = Seen::default();
        let first = acked_listener(
            "127.0.0.1:0",
            backend,
            Framing::U32Be,
            before.clone(),
            false,
            true,
        );
        let addr = first.local_addr();
        let peer = Peer::spawn(&python, &send_args(addr.port(), TOTAL, Framing::U32Be, &[]));
        assert!(
            wait_until(LIMIT, || before.lock().unwrap().len() >= 1_000),
            "{backend:?}: the first listener got {} messages",
            before.lock().unwrap().len()
        );
        first.close();
        let second = acked_listener(
            &addr.to_string(),
            backend,
            Framing::U32Be,
            after.clone(),
            false,
            false,
        );
        let lines = peer.until_done();
        peer.finish();
        let done = lines.last().unwrap();
        assert_eq!(field(done, "acked"), TOTAL, "{backend:?}: {done}");
        second.close();

        let before = before.lock().unwrap().clone();
        let after = after.lock().unwrap().clone();
        let a: Vec<u64> = before.iter().map(|m| m.0).collect();
        assert_eq!(
            a,
            (1..=a.len() as u64).collect::<Vec<u64>>(),
            "{backend:?}: the first listener, not 1, 2, ... once each"
        );
        assert!(
            before.iter().all(|m| !m.1),
            "{backend:?}: the first listener flagged a new writer's messages"
        );
        let b: Vec<u64> = after.iter().map(|m| m.0).collect();
        let b0 = *b.first().unwrap_or(&(TOTAL + 1));
        assert!(
            b0 <= a.len() as u64 + 1,
            "{backend:?}: messages {}..{b0} delivered by neither listener",
            a.len() + 1
        );
        assert_eq!(
            b,
            (b0..=TOTAL).collect::<Vec<u64>>(),
            "{backend:?}: the second listener, not {b0}..={TOTAL} once each"
        );
        let flagged = after.iter().take_while(|m| m.1).count();
        assert!(
            after[flagged..].iter().all(|m| !m.1),
            "{backend:?}: the flagged messages are not a prefix of the second listener's"
        );
        let twice = a.iter().filter(|&&s| s >= b0).count();
        assert!(
            flagged >= twice,
            "{backend:?}: {twice} messages delivered by both listeners, only the first \
             {flagged} of the second's flagged"
        );
    }
}

/// A listener restart where the new listener learns the writer's session from a connection
/// that breaks at once: everything the old listener may have delivered must still be flagged.
///
/// Python's listener (the old process) delivers all N messages but acknowledges only up to
/// 100, and is killed. Our listener is bound on its address. The Python writer resumes:
/// hello `first_seq = 101, first_new = N + 1`, and (`--reset-resumed 5`) resets that first
/// connection after 5 frames, once our reply came (so the session is in our table). Its next
/// hello finds the session known. Messages 101..=N all reached the old process, so every one
/// our listener delivers must be flagged, on whichever connection.
///
/// A first draft of the spec flagged only what that first connection delivered (at most 5);
/// the session entry now keeps the `first_new` of the hello that made it and flags below it on
/// every connection (`acked_peer.py --literal-flags` shows the old rule's gap between two
/// Python processes).
#[test]
fn acked_listener_restarted_flags_after_the_first_connection_breaks() {
    let Some(python) = python() else { return };
    for backend in BACKENDS {
        // The old process: Python, acknowledging at most message 100.
        let old = Peer::spawn(
            &python,
            &[
                "listen".to_string(),
                "-".into(),
                "--framing".into(),
                "u32be".into(),
                "--max-ack".into(),
                "100".into(),
            ],
        );
        let first = old.line();
        let port: u16 = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let writer = Peer::spawn(
            &python,
            &send_args(port, N, Framing::U32Be, &["--reset-resumed", "5"]),
        );
        // Every message reaches the old process.
        let mut old_seen = HashSet::new();
        let deadline = Instant::now() + LIMIT;
        while (old_seen.len() as u64) < N {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = old.lines.recv_timeout(left).unwrap_or_else(|e| {
                panic!("{backend:?}: old listener: {e:?}, {} seen", old_seen.len())
            });
            if let Some(rest) = line.strip_prefix("MSG ") {
                let seq: u64 = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
                old_seen.insert(seq);
            }
        }
        drop(old); // SIGKILL: no goodbye acks
        let seen = Seen::default();
        let listener = acked_listener(
            &format!("127.0.0.1:{port}"),
            backend,
            Framing::U32Be,
            seen.clone(),
            false,
            false,
        );
        let lines = writer.until_done();
        writer.finish();
        let done = lines.last().unwrap();
        assert_eq!(field(done, "acked"), N, "{backend:?}: {done}");
        listener.close();

        let got = seen.lock().unwrap().clone();
        let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
        // From the writer's last acknowledged message + 1: 101, unless the old process died
        // before its ack of 100 left.
        let b0 = *seqs.first().expect("something delivered");
        assert!(b0 <= 101, "{backend:?}: starts at {b0}");
        assert_eq!(
            seqs,
            (b0..=N).collect::<Vec<u64>>(),
            "{backend:?}: not {b0}..=N once each, in order"
        );
        let unflagged: Vec<u64> = got
            .iter()
            .filter(|m| !m.1 && old_seen.contains(&m.0))
            .map(|m| m.0)
            .collect();
        assert!(
            unflagged.is_empty(),
            "{backend:?}: {} messages the old process delivered were delivered again \
             unflagged (first {:?})",
            unflagged.len(),
            &unflagged[..unflagged.len().min(5)]
        );
    }
}
