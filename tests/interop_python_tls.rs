//! Interop over TLS with Python's standard `ssl` module and `google.protobuf`
//! (`serialize_length_prefixed` / `parse_length_prefixed`, `Framing::Varint`), both
//! directions, with and without mutual TLS: counts and order-sensitive digests must match, and
//! a client without a certificate is refused by a server that requires one (nothing of what it
//! sent is delivered). The Python side is tests/interop/tls_peer.py; the certificates are made
//! for the test (tests/common/tls.rs) and written as PEM files to a temporary directory.
//!
//! Python is found as in tests/interop_python.rs: `BUFFSTREAMS_PYTHON` (default `python3`)
//! with `protobuf` >= 5.28; without it the tests print why and pass, unless
//! `BUFFSTREAMS_REQUIRE_INTEROP` is set. Every wait is bounded, and every Python process is
//! killed if it outlives the test.
#![cfg(feature = "tls")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::tls::rustls::pki_types::CertificateDer;
use buffstreams::{Backend, Framing, Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::tls::{localhost, PemFiles, Pki};
use common::{runtime_on, wait_until, BACKENDS};
use prost::Message;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/tls_peer.py");
const N: usize = 5_000;

/// The longest any wait (for a line, for an exit, for messages) may take.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, prost::Message)]
struct BytesValue {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

// value, fnv and chain: as in tests/interop_python.rs and tests/interop/protobuf_peer.py.
fn value(i: usize) -> Vec<u8> {
    (0..(i * 7) % 300)
        .map(|k| ((i * 31 + k) % 256) as u8)
        .collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn chain(acc: u64, data: &[u8]) -> u64 {
    acc.wrapping_mul(0x0100_0000_01b3).wrapping_add(fnv(data))
}

/// The Python to run, or `None` (with the reason printed) if it lacks `ssl` or
/// `google.protobuf.proto`.
fn python() -> Option<String> {
    let python = std::env::var("BUFFSTREAMS_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args([
            "-c",
            "import ssl; from google.protobuf import proto, wrappers_pb2",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why =
        format!("{python} has no ssl module or no google.protobuf >= 5.28 (pip install protobuf)");
    if std::env::var_os("BUFFSTREAMS_REQUIRE_INTEROP").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// A line `WORD N DIGEST` as (count, digest).
fn parse(line: &str) -> (usize, u64) {
    let mut words = line.split_whitespace().skip(1);
    let n = words.next().and_then(|w| w.parse().ok()).expect("a count");
    let digest = words.next().and_then(|w| w.parse().ok()).expect("a digest");
    (n, digest)
}

/// The test PKI's PEM files in a temporary directory, removed when dropped.
struct Certs {
    pki: Pki,
    dir: PathBuf,
    files: PemFiles,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir =
            std::env::temp_dir().join(format!("buffstreams-py-tls-{name}-{}", std::process::id()));
        let pki = Pki::new();
        let files = pki.write_pem(&dir);
        Certs { pki, dir, files }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A running tls_peer.py: its stdout line by line; killed when dropped.
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
            .expect("a line from tls_peer.py in time")
    }

    /// Waits for a successful exit, at most `LIMIT`.
    fn finish(mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(status.success(), "tls_peer.py exited with {status}");
                    return;
                }
                None if Instant::now() >= deadline => panic!("tls_peer.py did not exit in time"),
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

/// The client certificate chain a connection presented, and its protocol.
type ClientSeen = Option<(Vec<CertificateDer<'static>>, String)>;

/// A TLS listener on `backend` counting and digesting the BytesValue messages it gets, and
/// noting the client certificate chain the connection presented, and its protocol.
struct TlsListener {
    listener: Listener,
    got: Arc<Mutex<(usize, u64)>>,
    client: Arc<Mutex<ClientSeen>>,
}

impl TlsListener {
    fn bind(certs: &Certs, backend: Backend, mtls: bool) -> TlsListener {
        let got = Arc::new(Mutex::new((0usize, 0u64)));
        let client = Arc::new(Mutex::new(None));
        let (g, c) = (got.clone(), client.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |payload, conn| {
                let msg = BytesValue::decode(payload)?;
                let tls = conn.info().tls.expect("a TLS connection");
                *c.lock().unwrap() = Some((tls.certificates.clone(), tls.protocol.clone()));
                let mut g = g.lock().unwrap();
                *g = (g.0 + 1, chain(g.1, &msg.value));
                Ok(())
            })
            .framing(Framing::Varint)
            .runtime(runtime_on(backend, 1))
            .tls(certs.pki.server(mtls))
            .handshake_timeout(Duration::from_secs(10)),
        )
        .unwrap();
        TlsListener {
            listener,
            got,
            client,
        }
    }

    fn port(&self) -> String {
        self.listener.local_addr().port().to_string()
    }
}

/// `tls_peer.py send 127.0.0.1 PORT n --ca CA` plus `extra`.
fn send_args(certs: &Certs, port: &str, n: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["send", "127.0.0.1", port, &n.to_string(), "--ca"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(path(&certs.files.ca));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn python_writes_buffstreams_reads(mtls: bool) {
    let Some(python) = python() else { return };
    let certs = Certs::new(if mtls { "in-mtls" } else { "in" });
    let (cert, key) = (
        path(&certs.files.client_cert),
        path(&certs.files.client_key),
    );
    for backend in BACKENDS {
        let listener = TlsListener::bind(&certs, backend, mtls);
        // The server's name: its IP address (the host dialed) without mutual TLS, its DNS name
        // with it; both are in its certificate.
        let mut extra = vec![];
        if mtls {
            extra = vec!["--server-name", "localhost", "--cert", &cert, "--key", &key];
        }
        let peer = Peer::spawn(&python, &send_args(&certs, &listener.port(), N, &extra));
        let line = peer.line();
        assert!(
            line.starts_with("sent "),
            "{backend:?}: python said {line:?}"
        );
        let sent = parse(&line);
        assert_eq!(sent.0, N);
        peer.finish();
        assert!(
            wait_until(LIMIT, || *listener.got.lock().unwrap() == sent),
            "{backend:?}: got {:?}, python sent {sent:?}",
            listener.got.lock().unwrap()
        );
        let (chain, protocol) = listener
            .client
            .lock()
            .unwrap()
            .clone()
            .expect("a connection");
        assert!(protocol.contains("TLSv1_3"), "{backend:?}: {protocol}");
        // OpenSSL sends the client certificate, and the CA it chains to as well.
        match mtls {
            true => assert_eq!(chain.first(), Some(&certs.pki.client.cert), "{backend:?}"),
            false => assert!(
                chain.is_empty(),
                "{backend:?}: {} certificates",
                chain.len()
            ),
        }
        assert_eq!(listener.listener.stats().handshake_failures, 0);
        listener.listener.close();
    }
}

#[test]
fn python_writes_buffstreams_reads_over_tls() {
    python_writes_buffstreams_reads(false);
}

#[test]
fn python_writes_buffstreams_reads_over_mutual_tls() {
    python_writes_buffstreams_reads(true);
}

#[test]
fn python_without_a_client_certificate_is_refused_by_a_mutual_tls_listener() {
    let Some(python) = python() else { return };
    let certs = Certs::new("in-refused");
    for backend in BACKENDS {
        let listener = TlsListener::bind(&certs, backend, true);
        // Under TLS 1.3 Python's side of the handshake ends before the listener checks the
        // (missing) certificate: it may write, then learns of the refusal (--probe waits).
        let peer = Peer::spawn(
            &python,
            &send_args(&certs, &listener.port(), 50, &["--probe", "10"]),
        );
        let mut line = peer.line();
        if line.starts_with("sent ") {
            line = peer.line();
        }
        assert!(
            line.starts_with("refused"),
            "{backend:?}: python was not refused: {line:?}"
        );
        peer.finish();
        assert!(
            wait_until(LIMIT, || listener.listener.stats().handshake_failures >= 1),
            "{backend:?}: no failed handshake counted"
        );
        assert_eq!(listener.listener.stats().handshake_failures, 1);
        // The connection never became the listener's: nothing was delivered.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(*listener.got.lock().unwrap(), (0, 0), "{backend:?}");
        assert_eq!(listener.listener.stats().messages_received, 0);
        listener.listener.close();
    }
}

/// Starts `tls_peer.py recv` (requiring a client certificate from the CA with `mtls`, sending
/// `tickets` TLS 1.3 session tickets after the handshake) and returns it with the port it
/// listens on.
fn python_server(python: &str, certs: &Certs, mtls: bool, tickets: u32) -> (Peer, String) {
    let f = &certs.files;
    let mut args = vec![
        "recv".to_string(),
        "--cert".into(),
        path(&f.server_cert),
        "--key".into(),
        path(&f.server_key),
        "--tickets".into(),
        tickets.to_string(),
    ];
    if mtls {
        args.extend(["--client-ca".to_string(), path(&f.ca)]);
    }
    let peer = Peer::spawn(python, &args);
    let first = peer.line();
    let port = first
        .strip_prefix("port ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .trim()
        .to_string();
    (peer, port)
}

/// The writer dials, writes N messages and closes at once; Python must read them all.
///
/// With `tickets`, Python (OpenSSL) sends TLS 1.3 session tickets after the handshake, as
/// servers do by default. If they reach the writer's socket after its connection stopped
/// reading, a close at once would reset the connection (Linux does that to a socket closed
/// with unread bytes) and lose what the writer's kernel had not sent yet; the writer's clean
/// close sends `close_notify` and lingers until the peer closes instead.
fn buffstreams_writes_python_reads(mtls: bool, tickets: u32) {
    let Some(python) = python() else { return };
    let certs = Certs::new(match (mtls, tickets) {
        (true, _) => "out-mtls",
        (false, 0) => "out",
        (false, _) => "out-tickets",
    });
    for backend in BACKENDS {
        let (peer, port) = python_server(&python, &certs, mtls, tickets);
        let writer = Writer::dial(
            WriterConfig::new(format!("127.0.0.1:{port}"))
                .framing(Framing::Varint)
                .runtime(runtime_on(backend, 1))
                .tls(certs.pki.client(mtls), localhost())
                .handshake_timeout(Duration::from_secs(10)),
        )
        .unwrap();
        let server = writer.conn_info().and_then(|i| i.tls).expect("TlsPeer");
        assert!(!server.certificates.is_empty(), "the server's chain");
        let mut acc = 0;
        let mut batch = writer.buffered();
        for i in 0..N {
            let v = value(i);
            acc = chain(acc, &v);
            batch
                .write(&BytesValue { value: v }.encode_to_vec())
                .unwrap();
        }
        batch.flush().unwrap();
        drop(batch);
        writer.close().unwrap();
        let last = peer.line();
        assert!(
            last.starts_with("received "),
            "{backend:?}: python said {last:?}"
        );
        assert_eq!(parse(&last), (N, acc), "{backend:?}");
        peer.finish();
    }
}

#[test]
fn buffstreams_writes_python_reads_over_tls() {
    buffstreams_writes_python_reads(false, 0);
}

#[test]
fn buffstreams_writes_python_reads_over_mutual_tls() {
    buffstreams_writes_python_reads(true, 0);
}

#[test]
fn buffstreams_writes_python_reads_with_session_tickets() {
    for _ in 0..5 {
        buffstreams_writes_python_reads(false, 2);
    }
}

#[test]
fn a_writer_without_a_client_certificate_is_refused_by_python() {
    let Some(python) = python() else { return };
    let certs = Certs::new("out-refused");
    for backend in BACKENDS {
        let (peer, port) = python_server(&python, &certs, true, 0);
        // Under TLS 1.3 the writer's side of the handshake ends before Python checks the
        // (missing) certificate, so the dial itself may succeed; Python refuses the connection
        // and reads nothing. The writer does not redial (Python takes one connection only).
        let dialed = Writer::dial(
            WriterConfig::new(format!("127.0.0.1:{port}"))
                .framing(Framing::Varint)
                .runtime(runtime_on(backend, 1))
                .retry(RetryPolicy::never())
                .tls(certs.pki.client(false), localhost())
                .handshake_timeout(Duration::from_secs(10)),
        );
        if let Ok(writer) = dialed {
            for i in 0..50 {
                let _ = writer.write(&BytesValue { value: value(i) }.encode_to_vec());
            }
            let _ = writer.close_timeout(Duration::from_secs(2));
        }
        let line = peer.line();
        assert!(
            line.starts_with("refused"),
            "{backend:?}: python did not refuse the writer: {line:?}"
        );
        assert!(
            line.to_ascii_uppercase().contains("CERTIFICATE"),
            "{backend:?}: {line:?}"
        );
        peer.finish();
    }
}
