//! The headers that crash the Go BuffStreams reader, replayed at a listener speaking its
//! format (`Framing::BuffStreams`, 4096 maximum: 3-byte headers): each connection closes with a
//! typed error, and a good stream on the same core keeps flowing, on both backends.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    CloseReason, ConnError, FrameError, Framing, Listener, ListenerConfig, Writer, WriterConfig,
};
use common::{runtime_on, wait_until, BACKENDS};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What the reader must say about a header.
type Expect = fn(&FrameError) -> bool;

#[test]
fn go_crash_headers_close_one_connection_each() {
    for backend in BACKENDS {
        let closed: Arc<Mutex<HashMap<SocketAddr, CloseReason>>> = Arc::default();
        let good = Arc::new(AtomicU64::new(0));
        let (c, g) = (closed.clone(), good.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                if msg == b"good" {
                    g.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
            .framing(Framing::BuffStreams)
            .max_message_size(4096)
            .runtime(runtime_on(backend, 1))
            .on_close(move |info, reason, _| {
                c.lock().unwrap().insert(info.peer, reason.clone());
            }),
        )
        .unwrap();
        let addr = listener.local_addr();
        let writer = Writer::dial(
            WriterConfig::new(addr.to_string())
                .framing(Framing::BuffStreams)
                .max_message_size(4096),
        )
        .unwrap();

        // (header, what the reader must say): 824000 announces 4097 bytes (over the maximum),
        // 010000 is zigzag -1, 808080 never ends its varint, and 904e0000 is a 5000-byte
        // header written for a 65536 maximum (4 bytes), read as 3.
        let cases: [(&str, Expect); 4] = [
            ("824000", |e| {
                matches!(e, FrameError::TooLarge { len: 4097, .. })
            }),
            ("010000", |e| {
                matches!(e, FrameError::NegativeLength { len: -1 })
            }),
            ("808080", |e| {
                matches!(e, FrameError::UnterminatedLength { .. })
            }),
            ("904e0000", |e| {
                matches!(e, FrameError::TooLarge { len: 5000, .. })
            }),
        ];
        for (header, expected) in cases {
            writer.write(b"good").unwrap();
            let mut bad = TcpStream::connect(addr).unwrap();
            bad.write_all(&hex(header)).unwrap();
            bad.write_all(&[0x55; 64]).unwrap();
            let peer = bad.local_addr().unwrap();
            assert!(
                wait_until(Duration::from_secs(5), || closed
                    .lock()
                    .unwrap()
                    .contains_key(&peer)),
                "{backend:?} {header}: not closed"
            );
            let reason = closed.lock().unwrap()[&peer].clone();
            let ok = matches!(&reason, CloseReason::Error(e)
                if matches!(&**e, ConnError::Frame(f) if expected(f)));
            assert!(ok, "{backend:?} {header}: {reason:?}");
        }
        // A small frame written for a 65536 maximum (4-byte header) misframes the stream; the
        // listener survives whatever that connection turns into.
        let mut misframed = TcpStream::connect(addr).unwrap();
        misframed.write_all(&hex("06000000616263")).unwrap();
        drop(misframed);

        let before = good.load(Ordering::Relaxed);
        for _ in 0..1000 {
            writer.write(b"good").unwrap();
        }
        writer.flush().unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || good.load(Ordering::Relaxed)
                >= before + 1000),
            "{backend:?}: the good stream stalled"
        );
        assert!(listener.runtime().stats()[0].conn_errors >= 4);
        writer.close().unwrap();
        listener.close();
    }
}
