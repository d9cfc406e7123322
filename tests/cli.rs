//! The `buffstreams` command line tool, driven as a user would: `listen` and `send` against each
//! other with every framing, protobuf printing, echo, every kind of error, `probe`, `bench`,
//! and Ctrl-C. Loopback only; every child is killed if it outlives its time limit.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use buffstreams::{Framing, Writer, WriterConfig};
use common::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_buffstreams");

/// The longest any child may run.
const LIMIT: Duration = Duration::from_secs(30);

/// A running `buffstreams`: its stdout arrives line by line; killed when dropped.
struct Running {
    child: Child,
    /// Standard input, when it is kept open.
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a child ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    /// The stdout lines not taken with [`Running::line`].
    stdout: Vec<String>,
    stderr: String,
}

impl Running {
    /// Starts `buffstreams ARGS`; `stdin` is written to its standard input, then closed.
    fn spawn(args: &[&str], stdin: Option<Vec<u8>>) -> Running {
        let mut running = Running::start(args, stdin.is_some());
        if let (Some(input), Some(mut pipe)) = (stdin, running.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input); // closed on drop: end of input
            });
        }
        running
    }

    /// Starts `buffstreams ARGS`, with a pipe to its standard input or none.
    fn start(args: &[&str], piped: bool) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn buffstreams");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Like `spawn`, with `input` written to standard input, which then stays open (until the
    /// `Running` is dropped).
    fn spawn_typing(args: &[&str], input: &[u8]) -> Running {
        let mut running = Running::start(args, true);
        let pipe = running.stdin.as_mut().expect("stdin");
        pipe.write_all(input)
            .and_then(|()| pipe.flush())
            .expect("type");
        running
    }

    /// The next stdout line, waiting at most `LIMIT`.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .expect("a line from buffstreams in time")
    }

    /// Waits for the exit (killing the child and failing after `LIMIT`).
    fn finish(mut self) -> Outcome {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("buffstreams did not exit within {LIMIT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Outcome {
            code: status.code(),
            stdout: self.lines.iter().collect(),
            stderr,
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal named `name` (`INT`, `STOP`, …).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `buffstreams ARGS` to its end.
fn run(args: &[&str], stdin: Option<Vec<u8>>) -> Outcome {
    Running::spawn(args, stdin).finish()
}

/// Starts `buffstreams listen 127.0.0.1:0 ARGS` and reads the address from its first line.
fn listen(args: &[&str]) -> (Running, String) {
    let mut all = vec!["listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let running = Running::spawn(&all, None);
    let first = running.line();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (running, addr)
}

/// An error exit: code 1 and one `error: …` line, no panic.
fn assert_one_line_error(outcome: &Outcome, expected: &str) {
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    let error = lines.last().copied().unwrap_or_default();
    assert!(error.starts_with("error: "), "{outcome:?}");
    assert!(error.contains(expected), "{expected:?} not in {error:?}");
    assert!(
        !outcome.stderr.contains("panicked") && !outcome.stderr.contains("backtrace"),
        "{outcome:?}"
    );
}

/// `send --generate N --size S` into `listen --count N --print len` with `framing`.
fn round_trip(framing: &str, size: usize) {
    let n = "300";
    let (listener, addr) = listen(&["--framing", framing, "--count", n, "--print", "len"]);
    let size = size.to_string();
    let send = run(
        &[
            "send",
            &addr,
            "--framing",
            framing,
            "--generate",
            n,
            "--size",
            &size,
            "--conns",
            "2",
        ],
        None,
    );
    assert_eq!(send.code, Some(0), "{send:?}");
    assert!(send.stderr.contains("sent 300 messages"), "{send:?}");
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert_eq!(got.stdout.len(), 300, "{got:?}");
    assert!(got.stdout.iter().all(|line| *line == size), "{got:?}");
    assert!(got.stderr.contains("received 300 messages"), "{got:?}");
}

#[test]
fn round_trip_u16be() {
    round_trip("u16be", 1000);
}

#[test]
fn round_trip_u16le() {
    round_trip("u16le", 1000);
}

#[test]
fn round_trip_u32be() {
    round_trip("u32be", 1000);
}

#[test]
fn round_trip_u32le() {
    round_trip("u32le", 1000);
}

#[test]
fn round_trip_u64be() {
    round_trip("u64be", 1000);
}

#[test]
fn round_trip_u64le() {
    round_trip("u64le", 1000);
}

#[test]
fn round_trip_varint() {
    round_trip("varint", 1000);
}

#[test]
fn round_trip_buffstreams_go_header() {
    round_trip("buffstreams:1024", 1000);
}

#[test]
fn round_trip_newline_delimited() {
    round_trip("delim:\\n", 1000);
}

#[test]
fn round_trip_nul_delimited() {
    // Generated messages hold digits: a digit delimiter must be avoided too.
    round_trip("delim:0", 1000);
    round_trip("delim:48", 100);
}

#[test]
fn stdin_lines_print_as_text() {
    let (listener, addr) = listen(&["--framing", "varint", "--count", "5", "--print", "text"]);
    let input = "hello\r\nwörld\ntab\there\n\nlast".as_bytes().to_vec();
    let send = run(
        &["send", &addr, "--framing", "varint", "--stdin-lines"],
        Some(input),
    );
    assert_eq!(send.code, Some(0), "{send:?}");
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert_eq!(got.stdout, ["hello", "wörld", "tab\\there", "", "last"]);
}

#[test]
fn typed_lines_go_out_at_once_and_ctrl_c_stops_send() {
    let (listener, addr) = listen(&["--print", "text"]);
    let send = Running::spawn_typing(&["send", &addr, "--stdin-lines"], b"typed\n");
    // Standard input is still open: the line was sent without waiting for more.
    assert_eq!(listener.line(), "typed");
    send.interrupt();
    let out = send.finish();
    assert_eq!(out.code, Some(130), "{out:?}");
    assert!(out.stderr.contains("sent 1 messages"), "{out:?}");
    assert!(
        out.stderr.contains("interrupted: stopped after 1 messages"),
        "{out:?}"
    );
    listener.interrupt();
    assert_eq!(listener.finish().code, Some(0));
}

#[test]
fn a_file_is_one_message_or_its_lines() {
    let path = std::env::temp_dir().join(format!("buffstreams-cli-{}.txt", std::process::id()));
    std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
    let file = path.to_string_lossy().to_string();
    let (listener, addr) = listen(&["--count", "4", "--print", "text"]);
    let whole = run(&["send", &addr, "--file", &file], None);
    let lines = run(&["send", &addr, "--file", &file, "--lines"], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(whole.code, Some(0), "{whole:?}");
    assert_eq!(lines.code, Some(0), "{lines:?}");
    let got = listener.finish();
    assert_eq!(got.stdout, ["one\\ntwo\\nthree\\n", "one", "two", "three"]);
}

#[test]
fn rate_paces_messages() {
    let (listener, addr) = listen(&["--count", "10", "--print", "len"]);
    let started = Instant::now();
    let send = run(
        &[
            "send",
            &addr,
            "--generate",
            "10",
            "--size",
            "4",
            "--rate",
            "50/s",
            "--conns",
            "2",
        ],
        None,
    );
    let took = started.elapsed();
    assert_eq!(send.code, Some(0), "{send:?}");
    // 10 messages at 50/s: the last one is due 9 x 20 ms after the first.
    assert!(took >= Duration::from_millis(180), "{took:?}");
    assert_eq!(listener.finish().stdout, ["4"; 10]);
}

#[test]
fn protobuf_fields_are_decoded() {
    // { 1: 150, 2: "testing", 3: { 1: 1 }, 4: fixed32 1.0f, 5: [1, 2, 300] packed }
    let mut msg = vec![0x08, 0x96, 0x01, 0x12, 0x07];
    msg.extend_from_slice(b"testing");
    msg.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01, 0x25]);
    msg.extend_from_slice(&1.0f32.to_le_bytes());
    msg.extend_from_slice(&[0x2a, 0x04, 0x01, 0x02, 0xac, 0x02]);
    let (listener, addr) = listen(&["--count", "2", "--print", "protobuf"]);
    let writer = Writer::dial(WriterConfig::new(addr)).unwrap();
    writer.write(&msg).unwrap();
    writer.write(&[0x08]).unwrap(); // truncated: not a message
    writer.close().unwrap();
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    let expected = [
        "# message 1: 27 bytes",
        "1 (varint): 150",
        "2 (len): \"testing\"",
        "3 (len) {",
        "  1 (varint): 1",
        "}",
        "4 (fixed32): 0x3f800000 (float 1)",
        "5 (len): bytes [01 02 ac 02] (4 bytes) packed varints? [1, 2, 300]",
        "# message 2: 1 bytes",
        "(not a protobuf message: truncated varint at byte 1) 08",
    ];
    assert_eq!(got.stdout, expected);
}

#[test]
fn echo_sends_every_message_back() {
    let (listener, addr) = listen(&["--echo", "--count", "50", "--print", "none"]);
    let echoes = Arc::new(AtomicU64::new(0));
    let counter = echoes.clone();
    let writer = Writer::dial(WriterConfig::new(addr).framing(Framing::U32Be).on_message(
        move |msg, _conn| {
            assert_eq!(msg.len(), 7);
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
    ))
    .unwrap();
    for i in 0..50u8 {
        writer.write(&[i; 7]).unwrap();
    }
    assert!(wait_until(LIMIT, || echoes.load(Ordering::Relaxed) == 50));
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    let _ = writer.close();
    assert_eq!(echoes.load(Ordering::Relaxed), 50);
}

#[test]
fn listen_and_send_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("bs-cli-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let address = format!("unix:{}", path.display());
    let running = Running::spawn(
        &["listen", &address, "--count", "20", "--print", "len"],
        None,
    );
    let first = running.line();
    assert!(
        first.starts_with(&format!("listening on {address} ")),
        "{first:?}"
    );
    let send = run(&["send", &address, "--generate", "20", "--size", "9"], None);
    assert_eq!(send.code, Some(0), "{send:?}");
    let got = running.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert_eq!(got.stdout, vec!["9"; 20], "{got:?}");
    assert!(
        !path.exists(),
        "the socket file is removed when listen exits"
    );
    let missing = run(&["send", &address, "--generate", "1", "--size", "5"], None);
    assert_one_line_error(&missing, &format!("cannot connect to {address}"));
}

#[test]
fn a_bad_address_is_a_one_line_error() {
    for addr in ["not-an-address", "127.0.0.1:99999"] {
        let send = run(&["send", addr, "--generate", "1", "--size", "5"], None);
        assert_one_line_error(&send, "cannot resolve address");
    }
    let listen = run(&["listen", "300.0.0.1:5"], None);
    assert_one_line_error(&listen, "cannot resolve listen address");
}

#[test]
fn a_closed_port_is_a_one_line_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port(); // the listener is gone: nothing listens on it now
    let addr = format!("127.0.0.1:{port}");
    let send = run(&["send", &addr, "--generate", "1", "--size", "5"], None);
    assert_one_line_error(&send, &format!("cannot connect to {addr}"));
    assert!(send.stderr.contains("refused"), "{send:?}");
}

#[test]
fn a_bad_framing_is_a_usage_error() {
    for framing in ["u33", "delim:300", "buffstreams:0"] {
        let out = run(&["listen", "127.0.0.1:0", "--framing", framing], None);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("invalid value"), "{out:?}");
        assert!(out.stderr.contains(framing), "{out:?}");
    }
    let out = run(
        &["send", "127.0.0.1:1", "--framing", "u32", "--stdin-lines"],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("expected one of u32be, u32le"),
        "{out:?}"
    );
    // Options that contradict each other are usage errors too.
    let out = run(
        &[
            "send",
            "127.0.0.1:1",
            "--framing",
            "u16be",
            "--max",
            "70000",
            "--stdin-lines",
        ],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("over what u16be can announce"),
        "{out:?}"
    );
}

#[test]
fn a_message_over_max_is_refused_after_the_ones_before_it() {
    let (listener, addr) = listen(&["--max", "100", "--count", "1", "--print", "text"]);
    let input = format!("short\n{}\nnever\n", "x".repeat(200)).into_bytes();
    let send = run(
        &["send", &addr, "--max", "100", "--stdin-lines"],
        Some(input),
    );
    assert_one_line_error(
        &send,
        "message 2 is 200 bytes, over the maximum message size of 100 (--max)",
    );
    let got = listener.finish();
    assert_eq!(got.stdout, ["short"], "{got:?}");
    // Generated messages are checked before anything is dialed.
    let send = run(
        &[
            "send",
            "127.0.0.1:1",
            "--max",
            "100",
            "--generate",
            "1",
            "--size",
            "101",
        ],
        None,
    );
    assert_one_line_error(&send, "over the maximum message size of 100");
}

#[test]
fn probe_names_the_kernel_and_the_auto_choice() {
    let out = run(&["probe"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let text = out.stdout.join("\n");
    assert!(text.contains(release.trim()), "{text}");
    assert!(text.contains("Backend::Auto chooses: "), "{text}");
    assert!(text.contains("seccomp:"), "{text}");
}

#[test]
fn bench_prints_a_summary() {
    let out = run(
        &["bench", "--secs", "1", "--conns", "2", "--size", "64"],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.stdout.last().cloned().unwrap_or_default();
    assert!(summary.starts_with("bench: "), "{out:?}");
    assert!(summary.contains("msgs/s"), "{out:?}");
    assert!(summary.contains("MB/s"), "{out:?}");
    assert!(summary.contains("ns CPU per message"), "{out:?}");
}

#[test]
fn bench_runs_over_a_unix_socket() {
    let out = run(
        &[
            "bench", "--secs", "1", "--conns", "2", "--size", "64", "--unix",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("-> unix:@buffstreams-bench-"),
        "{out:?}"
    );
    let summary = out.stdout.last().cloned().unwrap_or_default();
    assert!(summary.starts_with("bench: "), "{out:?}");
    assert!(summary.contains("msgs/s"), "{out:?}");
}

#[test]
fn ctrl_c_stops_listen_and_bench_with_their_totals() {
    let (listener, addr) = listen(&["--print", "len"]);
    let send = run(&["send", &addr, "--generate", "10", "--size", "3"], None);
    assert_eq!(send.code, Some(0), "{send:?}");
    for _ in 0..10 {
        assert_eq!(listener.line(), "3");
    }
    listener.interrupt();
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert!(
        got.stderr
            .contains("interrupted: received 10 messages (30 bytes) on 1 connection(s)"),
        "{got:?}"
    );

    let bench = Running::spawn(&["bench", "--secs", "60", "--conns", "1"], None);
    std::thread::sleep(Duration::from_millis(700));
    bench.interrupt();
    let started = Instant::now();
    let out = bench.finish();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.concat().contains("(interrupted)"), "{out:?}");
}

/// A port nothing listens on now (a listener bound it and let it go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Starts `buffstreams ARGS` (a `listen` on a fixed address) and waits for its first line,
/// starting it again while the address is not free yet (a killed listener's port).
fn listen_at(args: &[&str]) -> Running {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = Running::spawn(args, None);
        match running.lines.recv_timeout(LIMIT) {
            Ok(first) => {
                assert!(first.starts_with("listening on "), "{first:?}");
                return running;
            }
            Err(_) if Instant::now() < deadline => {
                // Exited without its first line: the bind failed; try again.
                let out = running.finish();
                assert_eq!(out.code, Some(1), "{out:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => panic!("listen did not start: {:?}", running.finish()),
        }
    }
}

/// The number after `what` in `text` (`re-sent 12` gives 12 for `re-sent `).
fn number_after(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} not in {text:?}"));
    let digits: String = text[at + what.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {what:?} in {text:?}"))
}

#[test]
fn acked_send_and_listen_deliver_and_acknowledge_everything() {
    let (listener, addr) = listen(&["--acked", "--count", "300", "--print", "len"]);
    let started = Instant::now();
    let send = run(
        &[
            "send",
            &addr,
            "--acked",
            "--generate",
            "300",
            "--size",
            "40",
            "--conns",
            "2",
        ],
        None,
    );
    assert_eq!(send.code, Some(0), "{send:?}");
    assert!(send.stderr.contains("sent 300 messages"), "{send:?}");
    assert!(
        send.stderr
            .contains("acknowledged 300 of 300 messages, re-sent 0"),
        "{send:?}"
    );
    // Nothing waited for a timeout.
    assert!(started.elapsed() < Duration::from_secs(10), "{send:?}");
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert_eq!(got.stdout, vec!["40"; 300], "{got:?}");
    assert!(
        got.stderr
            .contains("received 300 messages (12000 bytes) on 2 connection(s)"),
        "{got:?}"
    );
    assert!(
        got.stderr
            .contains("0 duplicate(s) dropped, 0 possible duplicate(s) flagged"),
        "{got:?}"
    );
}

/// `send --acked --generate n … extra` while its listener (`listen --acked --print text` on a
/// fixed port) is killed (SIGKILL) after printing 500 messages, and another takes the port.
/// With `pause`, the first listener is stopped (SIGSTOP) 300 ms before the kill, so that the
/// messages sent meanwhile are surely unacknowledged. Checks that send exits 0 having re-sent
/// some, that the two listeners printed every message between them, and that a message both
/// printed was flagged by the second.
fn kill_listener_mid_stream(n: u64, extra: &[&str], pause: bool) {
    let addr = format!("127.0.0.1:{}", free_port());
    let args = ["listen", &addr, "--acked", "--print", "text"];
    let first = listen_at(&args);
    let count = n.to_string();
    let mut send_args = vec![
        "send",
        &addr,
        "--acked",
        "--generate",
        &count,
        "--size",
        "11",
    ];
    send_args.extend_from_slice(extra);
    let send = Running::spawn(&send_args, None);
    let mut printed: Vec<String> = (0..500).map(|_| first.line()).collect();
    if pause {
        first.signal("STOP");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut first = first;
    first.child.kill().expect("kill -9");
    let first = first.finish();
    printed.extend(first.stdout);
    assert!((printed.len() as u64) < n, "killed mid-stream");
    let second = listen_at(&args);

    let sent = send.finish();
    assert_eq!(sent.code, Some(0), "{sent:?}");
    assert!(
        sent.stderr
            .contains(&format!("acknowledged {n} of {n} messages")),
        "{sent:?}"
    );
    let resent = number_after(&sent.stderr, "re-sent ");
    assert!(resent > 0, "the unacknowledged ones were re-sent: {sent:?}");

    second.interrupt();
    let second = second.finish();
    assert_eq!(second.code, Some(0), "{second:?}");
    // A line is the message's number (10 digits and a space), then a tab and `dup` if the
    // listener flagged it as a possible duplicate.
    let parse = |line: &str| -> (u64, bool) {
        let (text, dup) = match line.strip_suffix("\tdup") {
            Some(text) => (text, true),
            None => (line, false),
        };
        assert_eq!(text.len(), 11, "{line:?}");
        (text[..10].parse().expect("a message number"), dup)
    };
    let before: Vec<(u64, bool)> = printed.iter().map(|l| parse(l)).collect();
    let after: Vec<(u64, bool)> = second.stdout.iter().map(|l| parse(l)).collect();
    assert!(
        before.iter().all(|(_, dup)| !dup),
        "the first listener flags nothing"
    );
    let seen_before: HashSet<u64> = before.iter().map(|(i, _)| *i).collect();
    let mut all = seen_before.clone();
    all.extend(after.iter().map(|(i, _)| *i));
    let missing: Vec<u64> = (0..n).filter(|i| !all.contains(i)).take(10).collect();
    assert!(missing.is_empty(), "never printed: {missing:?}…");
    // A message both printed was re-sent after the restart, and the second flagged it.
    for (i, dup) in &after {
        assert!(
            !seen_before.contains(i) || *dup,
            "{i} printed twice, not flagged"
        );
    }
    let flagged = after.iter().filter(|(_, dup)| *dup).count() as u64;
    assert!(
        second
            .stderr
            .contains(&format!("{flagged} possible duplicate(s) flagged")),
        "{second:?}"
    );
    assert!(flagged <= resent, "flagged {flagged}, re-sent {resent}");
}

#[test]
fn acked_send_rides_out_a_killed_listener_and_reports_what_it_re_sent() {
    // 2 s of messages at 2k/s; the listener is stopped, then killed, a quarter in.
    kill_listener_mid_stream(4000, &["--rate", "2k/s"], true);
}

/// The same, sent as fast as the listener acknowledges (the writer ahead by its whole
/// unacknowledged bound) and killed without the pause. (It found a library bug: a direct send
/// from the writer's thread racing the connection's end put newer frames first.)
#[test]
fn acked_send_rides_out_a_listener_killed_mid_flood() {
    kill_listener_mid_stream(300_000, &[], false);
}

#[test]
fn acked_send_to_a_plain_listener_fails_soon() {
    let (listener, addr) = listen(&["--print", "len"]);
    let started = Instant::now();
    let send = run(
        &[
            "send",
            &addr,
            "--acked",
            "--generate",
            "5",
            "--size",
            "8",
            "--ack-timeout",
            "20",
        ],
        None,
    );
    // The listener closes each connection at the hello; the writer notices it keeps
    // reconnecting without an acknowledgement well before the timeout.
    assert_one_line_error(
        &send,
        "connections in a row ended without an acknowledgement; is the listener a \
         `listen --acked` with the same --framing?",
    );
    assert!(
        send.stderr.contains("acknowledged 0 of 5 messages"),
        "{send:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{send:?}");
    listener.interrupt();
    let got = listener.finish();
    assert!(got.stdout.is_empty(), "{got:?}");
    assert!(got.stderr.contains("received 0 messages"), "{got:?}");
}

#[test]
fn acked_send_gives_up_after_the_ack_timeout() {
    // The listener takes 2 of the 5 messages and exits: the other 3 are never acknowledged.
    let (listener, addr) = listen(&["--acked", "--count", "2", "--print", "len"]);
    let started = Instant::now();
    let send = run(
        &[
            "send",
            &addr,
            "--acked",
            "--generate",
            "5",
            "--size",
            "8",
            "--ack-timeout",
            "1",
        ],
        None,
    );
    assert_one_line_error(
        &send,
        "3 of 5 messages were not acknowledged: no acknowledgement for 1 s (--ack-timeout)",
    );
    assert!(
        send.stderr.contains("acknowledged 2 of 5 messages"),
        "{send:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{send:?}");
    let got = listener.finish();
    assert_eq!(got.code, Some(0), "{got:?}");
    assert_eq!(got.stdout, ["8", "8"], "{got:?}");
}

#[test]
fn acked_refuses_u16_and_delimited_framings() {
    for framing in ["u16be", "u16le", "delim:10"] {
        let out = run(
            &["listen", "127.0.0.1:0", "--acked", "--framing", framing],
            None,
        );
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("error: --acked cannot run on {framing} framing")),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "refused before binding: {out:?}");
        // send refuses before dialing: nothing listens on port 1.
        let out = run(
            &[
                "send",
                "127.0.0.1:1",
                "--acked",
                "--framing",
                framing,
                "--generate",
                "1",
                "--size",
                "4",
            ],
            None,
        );
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr
                .contains(&format!("error: --acked cannot run on {framing} framing")),
            "{out:?}"
        );
    }
    // --ack-timeout means nothing without --acked.
    let out = run(
        &[
            "send",
            "127.0.0.1:1",
            "--ack-timeout",
            "5",
            "--generate",
            "1",
            "--size",
            "4",
        ],
        None,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
}

/// TLS: `listen --tls-cert/--tls-key [--tls-client-ca]` against `send --tls-ca [--tls-cert
/// --tls-key]`, with certificates made for the test (tests/common/tls.rs).
#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use common::tls::{PemFiles, Pki};

    /// A temporary directory holding the test PKI's PEM files, removed when dropped.
    struct Certs {
        dir: std::path::PathBuf,
        files: PemFiles,
    }

    impl Certs {
        fn new(name: &str) -> Certs {
            let dir = std::env::temp_dir()
                .join(format!("buffstreams-cli-tls-{name}-{}", std::process::id()));
            let files = Pki::new().write_pem(&dir);
            Certs { dir, files }
        }
    }

    impl Drop for Certs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn path(p: &std::path::Path) -> String {
        p.to_string_lossy().into_owned()
    }

    /// `listen` with the server certificate (and with `mtls`, the client CA).
    fn listen_tls(certs: &Certs, mtls: bool, args: &[&str]) -> (Running, String) {
        let f = &certs.files;
        let (cert, key, ca) = (path(&f.server_cert), path(&f.server_key), path(&f.ca));
        let mut all = vec!["--tls-cert", &cert, "--tls-key", &key];
        if mtls {
            all.extend(["--tls-client-ca", &ca]);
        }
        all.extend_from_slice(args);
        listen(&all)
    }

    /// `send --generate n --size 33 --tls-ca CA` to `addr`, with the client certificate if
    /// `identity`, plus `extra`.
    fn send_tls(certs: &Certs, addr: &str, n: &str, identity: bool, extra: &[&str]) -> Outcome {
        let f = &certs.files;
        let (ca, cert, key) = (path(&f.ca), path(&f.client_cert), path(&f.client_key));
        let mut all = vec![
            "send",
            addr,
            "--framing",
            "varint",
            "--generate",
            n,
            "--size",
            "33",
            "--tls-ca",
            &ca,
        ];
        if identity {
            all.extend(["--tls-cert", &cert, "--tls-key", &key]);
        }
        all.extend_from_slice(extra);
        run(&all, None)
    }

    #[test]
    fn listen_and_send_over_tls() {
        let certs = Certs::new("plain");
        let (listener, addr) = listen_tls(
            &certs,
            false,
            &["--framing", "varint", "--count", "20040", "--print", "none"],
        );
        // The server name defaults to the address's host: 127.0.0.1, an IP address the
        // server's certificate carries.
        let send = send_tls(&certs, &addr, "20000", false, &["--conns", "2"]);
        assert_eq!(send.code, Some(0), "{send:?}");
        assert!(send.stderr.contains("sent 20000 messages"), "{send:?}");
        // A DNS name given with --tls-server-name; a client certificate the listener does not
        // ask for is not sent, and does no harm.
        let named = send_tls(
            &certs,
            &addr,
            "40",
            true,
            &["--tls-server-name", "localhost"],
        );
        assert_eq!(named.code, Some(0), "{named:?}");
        let got = listener.finish();
        assert_eq!(got.code, Some(0), "{got:?}");
        assert!(
            got.stderr
                .contains("received 20040 messages (661320 bytes) on 3 connection(s)"),
            "{got:?}"
        );
        assert!(!got.stderr.contains("warning"), "{got:?}");
    }

    #[test]
    fn the_first_line_says_tls() {
        let certs = Certs::new("first-line");
        let f = &certs.files;
        let running = Running::spawn(
            &[
                "listen",
                "127.0.0.1:0",
                "--tls-cert",
                &path(&f.server_cert),
                "--tls-key",
                &path(&f.server_key),
                "--tls-client-ca",
                &path(&f.ca),
            ],
            None,
        );
        let first = running.line();
        assert!(first.ends_with(" backend, mutual TLS)"), "{first:?}");
    }

    #[test]
    fn mutual_tls_delivers_only_from_clients_with_a_certificate() {
        let certs = Certs::new("mtls");
        let (listener, addr) = listen_tls(
            &certs,
            true,
            &["--framing", "varint", "--count", "50", "--print", "len"],
        );
        // Without a client certificate the listener refuses the handshake and nothing arrives.
        // Under TLS 1.3 the client's side of the handshake is over before the server checks
        // its certificate, so send may have handed its messages to the kernel (exit 0) before
        // the refusal comes back: only the listener can tell.
        let refused = send_tls(&certs, &addr, "7", false, &[]);
        assert!(!refused.stderr.contains("panicked"), "{refused:?}");
        // With one, everything arrives: these 50 and nothing else (the 7 would come first).
        let send = send_tls(&certs, &addr, "50", true, &[]);
        assert_eq!(send.code, Some(0), "{send:?}");
        let got = listener.finish();
        assert_eq!(got.code, Some(0), "{got:?}");
        assert_eq!(got.stdout, vec!["33"; 50], "{got:?}");
        assert!(
            got.stderr.contains("TLS handshake(s) failed"),
            "the refused handshake is reported: {got:?}"
        );
    }

    #[test]
    fn a_server_name_the_certificate_lacks_is_refused() {
        let certs = Certs::new("name");
        let (listener, addr) = listen_tls(&certs, false, &["--print", "len"]);
        let send = send_tls(
            &certs,
            &addr,
            "3",
            false,
            &["--tls-server-name", "elsewhere.test"],
        );
        assert_one_line_error(&send, "TLS handshake");
        drop(listener);
    }

    #[test]
    fn bad_pem_files_are_one_line_errors() {
        let certs = Certs::new("bad-pem");
        let f = &certs.files;
        let missing = certs.dir.join("missing.pem");
        let not_pem = certs.dir.join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let (missing, not_pem) = (path(&missing), path(&not_pem));

        let out = run(
            &[
                "listen",
                "127.0.0.1:0",
                "--tls-cert",
                &missing,
                "--tls-key",
                &path(&f.server_key),
            ],
            None,
        );
        assert_one_line_error(&out, &format!("cannot read {missing}"));
        assert!(out.stdout.is_empty(), "{out:?}");

        let out = run(
            &[
                "listen",
                "127.0.0.1:0",
                "--tls-cert",
                &path(&f.server_cert),
                "--tls-key",
                &not_pem,
            ],
            None,
        );
        assert_one_line_error(&out, &format!("{not_pem} holds no private key"));

        // A key that is not the certificate's.
        let out = run(
            &[
                "listen",
                "127.0.0.1:0",
                "--tls-cert",
                &path(&f.server_cert),
                "--tls-key",
                &path(&f.client_key),
            ],
            None,
        );
        assert_one_line_error(&out, "TLS configuration refused");

        // send reports a bad file before it reads or dials anything.
        let out = run(
            &["send", "127.0.0.1:1", "--stdin-lines", "--tls-ca", &not_pem],
            Some(b"never\n".to_vec()),
        );
        assert_one_line_error(&out, &format!("{not_pem} holds no certificate"));
        let out = run(
            &[
                "send",
                "127.0.0.1:1",
                "--generate",
                "1",
                "--size",
                "1",
                "--tls-ca",
                &path(&f.ca),
                "--tls-cert",
                &path(&f.client_cert),
                "--tls-key",
                &missing,
            ],
            None,
        );
        assert_one_line_error(&out, &format!("cannot read {missing}"));
    }

    #[test]
    fn tls_flag_mistakes_are_usage_errors() {
        // --tls-key without --tls-cert; --tls-cert on send without --tls-key.
        let out = run(&["listen", "127.0.0.1:0", "--tls-key", "k.pem"], None);
        assert_eq!(out.code, Some(2), "{out:?}");
        let out = run(
            &[
                "send",
                "127.0.0.1:1",
                "--stdin-lines",
                "--tls-ca",
                "ca.pem",
                "--tls-cert",
                "c.pem",
            ],
            None,
        );
        assert_eq!(out.code, Some(2), "{out:?}");
        // A Unix socket has no host name to check the certificate against.
        let certs = Certs::new("unix-name");
        let out = run(
            &[
                "send",
                "unix:@nowhere",
                "--stdin-lines",
                "--tls-ca",
                &path(&certs.files.ca),
            ],
            None,
        );
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.contains("--tls-server-name is needed"),
            "{out:?}"
        );
    }

    #[test]
    fn bench_runs_over_tls() {
        let out = run(
            &[
                "bench", "--secs", "0.5", "--conns", "2", "--size", "64", "--tls",
            ],
            None,
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stderr.contains(" over TLS ("), "{out:?}");
        let summary = out.stdout.last().cloned().unwrap_or_default();
        assert!(summary.starts_with("bench: "), "{out:?}");
        assert!(summary.contains("msgs/s"), "{out:?}");
    }
}

/// Without the `tls` feature the TLS flags are refused with a usage error naming the feature.
#[cfg(not(feature = "tls"))]
#[test]
fn tls_flags_need_the_tls_feature() {
    for args in [
        &[
            "listen",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ][..],
        &["send", "127.0.0.1:1", "--stdin-lines", "--tls-ca", "ca.pem"][..],
        &["bench", "--secs", "0.1", "--tls"][..],
    ] {
        let out = run(args, None);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("--features tls"), "{out:?}");
    }
}
