//! Acknowledged delivery across a listener restart: a listener process is killed (SIGKILL)
//! mid-stream and another takes its port. Every message is delivered at least once; the only
//! duplicates are messages that were not acknowledged at the kill, and the new process flags
//! each of them as a possible duplicate.
//!
//! The listener processes are this test binary run again: `listener_process` does its work
//! only when `BUFFSTREAMS_ACKED_CHILD` names a port and an output file.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::wait_until;
use buffstreams::{Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};

const CHILD_ENV: &str = "BUFFSTREAMS_ACKED_CHILD";

/// The listener process: appends `seq dup` per message to the file, unbuffered (a killed
/// process loses nothing it wrote), then sleeps until killed.
#[test]
fn listener_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    crate::common::init_tracing();
    let (port, path) = spec.split_once(' ').expect("port and path");
    let file = Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("output file"),
    );
    let config = ListenerConfig::new(format!("127.0.0.1:{port}"), move |msg, conn| {
        let seq = u64::from_be_bytes(msg[..8].try_into().expect("8 bytes"));
        let line = format!("{seq} {}\n", u8::from(conn.possible_duplicate()));
        file.lock()
            .unwrap()
            .write_all(line.as_bytes())
            .expect("write");
        Ok(())
    })
    .cores(1)
    .acked(true);
    // The killed process's port may take a moment to be free (as for any restarted service).
    let deadline = Instant::now() + Duration::from_secs(10);
    let _listener = loop {
        match Listener::bind(config.clone()) {
            Ok(listener) => break listener,
            Err(err) if Instant::now() < deadline => {
                eprintln!("bind: {err}; again");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("bind: {err}"),
        }
    };
    std::fs::write(format!("{path}.ready"), b"").expect("ready file");
    std::thread::sleep(Duration::from_secs(120));
}

/// Kills the child on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(port: u16, out: &std::path::Path) -> Proc {
    let child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "restart::listener_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{port} {}", out.display()))
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(out.with_extension("log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("spawn listener process");
    let ready = format!("{}.ready", out.display());
    assert!(
        wait_until(Duration::from_secs(20), || std::path::Path::new(&ready)
            .exists()),
        "the listener process did not start"
    );
    Proc(child)
}

/// `seq -> dup flags` per delivery, from a child's output.
fn deliveries(path: &std::path::Path) -> Vec<(u64, bool)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (seq, dup) = l.split_once(' ')?;
            Some((seq.parse().ok()?, dup == "1"))
        })
        .collect()
}

#[test]
fn a_killed_listener_loses_nothing_and_flags_every_duplicate() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    crate::common::init_tracing();
    let dir = std::env::temp_dir().join(format!("buffstreams-acked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (first_out, second_out) = (dir.join("first"), dir.join("second"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let first = spawn(port, &first_out);
    let writer = Writer::dial(
        WriterConfig::new(format!("127.0.0.1:{port}"))
            .acked(true)
            .max_unacked_bytes(256 << 10)
            .retry(RetryPolicy::forever()),
    )
    .expect("dial");
    let n = 60_000u64;
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (writer.clone(), done.clone());
    let sender = std::thread::spawn(move || {
        for seq in 1..=n {
            let mut msg = [0u8; 24];
            msg[..8].copy_from_slice(&seq.to_be_bytes());
            w.write(&msg).expect("write");
        }
        w.flush_acked().expect("flush_acked");
        d.store(true, Ordering::Relaxed);
    });
    // Kill the first listener mid-stream.
    assert!(wait_until(Duration::from_secs(30), || writer
        .acked_stats()
        .is_some_and(|s| s.acked >= n / 4)));
    let acked_before_kill = writer.acked_stats().expect("acked").acked;
    let mut first = first;
    first.0.kill().expect("kill -9");
    let _ = first.0.wait();
    let at_kill = writer.acked_stats().expect("acked");
    assert!(at_kill.acked < n, "killed mid-stream");
    let started = Instant::now();
    let second = spawn(port, &second_out);
    eprintln!("second listener up after {:?}", started.elapsed());
    assert!(
        wait_until(Duration::from_secs(60), || done.load(Ordering::Relaxed)),
        "not all acknowledged after the restart: {:?}",
        writer.acked_stats()
    );
    sender.join().expect("writer thread");
    drop(second);
    let stats = writer.acked_stats().expect("acked");

    let first = deliveries(&first_out);
    let second = deliveries(&second_out);
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (seq, _) in first.iter().chain(&second) {
        *seen.entry(*seq).or_default() += 1;
    }
    // Every message at least once.
    let missing: Vec<u64> = (1..=n).filter(|s| !seen.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "lost: {:?}…",
        &missing[..missing.len().min(10)]
    );
    // Each process delivered each message at most once.
    for (name, list) in [("first", &first), ("second", &second)] {
        let mut seqs: Vec<u64> = list.iter().map(|(s, _)| *s).collect();
        let len = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            len,
            "the {name} process delivered a message twice"
        );
    }
    // Duplicates: only messages unacknowledged at the kill, each flagged by the second process.
    let flagged: HashMap<u64, bool> = second.iter().copied().collect();
    let dups: Vec<u64> = seen
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&s, _)| s)
        .collect();
    for &seq in &dups {
        assert!(
            seq > acked_before_kill,
            "message {seq} was acknowledged, yet delivered again"
        );
        assert!(flagged[&seq], "duplicate {seq} not flagged");
    }
    assert!(second.iter().all(|(s, dup)| !dup || *s > acked_before_kill));
    let flagged_count = second.iter().filter(|(_, d)| *d).count();
    eprintln!(
        "killed at {} acknowledged of {n}; {} duplicates (all flagged), {} flagged, {} re-sent; \
         restart to done in {:?}",
        at_kill.acked,
        dups.len(),
        flagged_count,
        stats.resent,
        started.elapsed()
    );
    assert!(stats.resent > 0, "the unacknowledged window was re-sent");
}
