//! Interop with Python's `google.protobuf` (`serialize_length_prefixed` /
//! `parse_length_prefixed`) over loopback, both directions, on `Framing::Varint`: counts and
//! order-sensitive digests must match.
//!
//! Needs a Python with `protobuf` >= 5.28: `BUFFSTREAMS_PYTHON` names it (default `python3`).
//! Without one the tests print why and pass, unless `BUFFSTREAMS_REQUIRE_INTEROP=1` (CI sets
//! it, after installing protobuf into a virtual environment), which makes that a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{Framing, Listener, ListenerConfig, Writer, WriterConfig};
use common::{runtime_on, wait_until, BACKENDS};
use prost::Message;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/protobuf_peer.py"
);
const N: usize = 20_000;

#[derive(Clone, PartialEq, prost::Message)]
struct BytesValue {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

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

/// The Python to run, or `None` (with the reason printed) if it lacks `google.protobuf.proto`.
fn python() -> Option<String> {
    let python = std::env::var("BUFFSTREAMS_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "from google.protobuf import proto, wrappers_pb2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let why = format!("{python} has no google.protobuf >= 5.28 (pip install protobuf)");
    if std::env::var_os("BUFFSTREAMS_REQUIRE_INTEROP").is_some() {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// The last line of the peer's output, as (count, digest).
fn parse(line: &str) -> (usize, u64) {
    let mut words = line.split_whitespace().skip(1);
    let n = words.next().and_then(|w| w.parse().ok()).expect("a count");
    let digest = words.next().and_then(|w| w.parse().ok()).expect("a digest");
    (n, digest)
}

#[test]
fn python_writes_buffstreams_reads() {
    let Some(python) = python() else { return };
    for backend in BACKENDS {
        let got = Arc::new(Mutex::new((0usize, 0u64)));
        let g = got.clone();
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |payload, _| {
                let msg = BytesValue::decode(payload)?;
                let mut g = g.lock().unwrap();
                *g = (g.0 + 1, chain(g.1, &msg.value));
                Ok(())
            })
            .framing(Framing::Varint)
            .runtime(runtime_on(backend, 1)),
        )
        .unwrap();
        let addr = listener.local_addr();
        let out = Command::new(&python)
            .args([
                SCRIPT,
                "send",
                "127.0.0.1",
                &addr.port().to_string(),
                &N.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent = parse(String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(sent.0, N);
        assert!(
            wait_until(Duration::from_secs(10), || *got.lock().unwrap() == sent),
            "{backend:?}: got {:?}, python sent {sent:?}",
            got.lock().unwrap()
        );
        listener.close();
    }
}

#[test]
fn buffstreams_writes_python_reads() {
    let Some(python) = python() else { return };
    let mut child = Command::new(&python)
        .args([SCRIPT, "recv"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first.trim_start_matches("port ").trim().to_string();
    let writer = Writer::dial(
        WriterConfig::new(format!("127.0.0.1:{port}"))
            .framing(Framing::Varint)
            .runtime(runtime_on(BACKENDS[0], 1)),
    )
    .unwrap();
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
    let last = lines.next().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(parse(&last), (N, acc));
}
