//! Bad input in acknowledged mode: each case closes that one connection with a typed error
//! (`ConnError::Acked`), nothing panics, and a good writer streaming meanwhile loses nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::wait_until;
use buffstreams::{
    AckError, CloseReason, ConnError, Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig,
};

const MAGIC: [u8; 8] = [0xff, 0xff, 0xff, 0xff, b'B', b'S', b'A', b'K'];

fn hello(session: [u8; 16], first_seq: u64, first_new: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&session);
    b.extend_from_slice(&first_seq.to_be_bytes());
    b.extend_from_slice(&first_new.to_be_bytes());
    b
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut b = (payload.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(payload);
    b
}

/// An acknowledged listener recording delivered payloads and every close reason.
struct Watched {
    listener: Listener,
    closes: Arc<Mutex<Vec<String>>>,
    delivered: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Watched {
    fn start() -> Watched {
        let closes = Arc::new(Mutex::new(Vec::new()));
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let (c, d) = (closes.clone(), delivered.clone());
        let listener = Listener::bind(
            ListenerConfig::new("127.0.0.1:0", move |msg, _| {
                d.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(msg.to_vec());
                Ok(())
            })
            .on_close(move |_, reason, _| {
                let text = match reason {
                    CloseReason::Error(err) => match &**err {
                        ConnError::Acked(e) => format!("acked: {e:?}"),
                        other => format!("error: {other}"),
                    },
                    other => format!("{other:?}"),
                };
                c.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            })
            .cores(1)
            .acked(true),
        )
        .expect("bind");
        Watched {
            listener,
            closes,
            delivered,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Sends `bytes` on a new connection and waits for the listener to close it; returns the
    /// close reason.
    fn close_reason_for(&self, bytes: &[u8], then_eof: bool) -> String {
        let before = self.closes.lock().unwrap().len();
        let mut s = TcpStream::connect(self.addr()).expect("connect");
        s.write_all(bytes).expect("write");
        if then_eof {
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }
        assert!(
            wait_until(Duration::from_secs(5), || self.closes.lock().unwrap().len()
                > before),
            "the listener did not close the connection: {:?}",
            self.closes.lock().unwrap()
        );
        self.closes.lock().unwrap()[before].clone()
    }
}

#[test]
fn bad_hellos_close_their_connection_with_a_typed_error_and_touch_no_other() {
    let w = Watched::start();
    // A good writer streams throughout.
    let writer = Writer::dial(WriterConfig::new(w.addr().to_string()).acked(true)).expect("dial");
    let good = |from: u64| {
        for i in from..from + 1000 {
            writer.write(&i.to_be_bytes()).expect("write");
        }
    };
    good(0);
    let mut wrong_magic = hello([1; 16], 1, 1);
    wrong_magic[5] = b'X';
    assert_eq!(
        w.close_reason_for(&wrong_magic, false),
        "acked: PlainWriter"
    );
    good(1000);
    let mut version = hello([2; 16], 1, 1);
    version[8] = 2;
    assert_eq!(
        w.close_reason_for(&version, false),
        "acked: UnsupportedVersion(2)"
    );
    let mut flags = hello([3; 16], 1, 1);
    flags[9] = 1;
    assert!(w
        .close_reason_for(&flags, false)
        .starts_with("acked: BadHello"));
    assert!(w
        .close_reason_for(&hello([4; 16], 0, 0), false)
        .starts_with("acked: BadHello"));
    assert!(w
        .close_reason_for(&hello([5; 16], 5, 4), false)
        .starts_with("acked: BadHello"));
    // Cut inside the hello.
    assert!(w
        .close_reason_for(&hello([6; 16], 1, 1)[..20], true)
        .starts_with("acked: BadHello"));
    // A plain client: its first bytes are a frame header.
    assert_eq!(
        w.close_reason_for(&frame(b"plain"), false),
        "acked: PlainWriter"
    );
    good(2000);
    // A plain Writer too.
    let plain = Writer::dial(WriterConfig::new(w.addr().to_string()).retry(RetryPolicy::never()))
        .expect("dial");
    let before = w.closes.lock().unwrap().len();
    let _ = plain.write(b"plain message");
    let _ = plain.flush();
    assert!(wait_until(Duration::from_secs(5), || w
        .closes
        .lock()
        .unwrap()
        .iter()
        .skip(before)
        .any(|c| c == "acked: PlainWriter")));
    writer.flush_acked().expect("the good writer is untouched");
    let delivered = w.delivered.lock().unwrap();
    assert_eq!(
        delivered.len(),
        3000,
        "only the good writer's messages, all of them"
    );
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, m)| m[..] == (i as u64).to_be_bytes()));
}

#[test]
fn a_gap_and_a_session_taken_over_are_refused() {
    let w = Watched::start();
    // Session 7 delivers messages 1..=3.
    let mut a = TcpStream::connect(w.addr()).expect("connect");
    let mut bytes = hello([7; 16], 1, 1);
    for p in [b"m1", b"m2", b"m3"] {
        bytes.extend(frame(p));
    }
    a.write_all(&bytes).expect("write");
    assert!(wait_until(Duration::from_secs(5), || w
        .delivered
        .lock()
        .unwrap()
        .len()
        == 3));
    // Another connection of session 7 takes it over, resuming at 3 (3 is dropped: delivered).
    let mut b = TcpStream::connect(w.addr()).expect("connect");
    let mut bytes = hello([7; 16], 3, 4);
    bytes.extend(frame(b"m3"));
    bytes.extend(frame(b"m4"));
    b.write_all(&bytes).expect("write");
    assert!(wait_until(Duration::from_secs(5), || w
        .delivered
        .lock()
        .unwrap()
        .len()
        == 4));
    // The replaced connection delivers nothing more: it is closed.
    let before = w.closes.lock().unwrap().len();
    a.write_all(&frame(b"late")).expect("write");
    assert!(wait_until(Duration::from_secs(5), || w
        .closes
        .lock()
        .unwrap()
        .len()
        > before));
    assert_eq!(w.closes.lock().unwrap()[before], "acked: Superseded");
    // A resume after a gap (message 5 was never delivered).
    let reason = w.close_reason_for(&hello([7; 16], 6, 6), false);
    assert!(reason.starts_with("acked: Gap"), "{reason}");
    let delivered = w.delivered.lock().unwrap();
    assert_eq!(
        *delivered,
        [&b"m1"[..], b"m2", b"m3", b"m4"].map(|m| m.to_vec()),
        "exactly once"
    );
    assert_eq!(w.listener.stats().duplicates_dropped, 1);
}

/// A fake listener: accepts one connection, reads the hello, answers with `reply`, reads
/// `frames` frames, then writes `after`; returns whether the writer closed the connection
/// within 5 s.
fn fake_listener(
    reply: Vec<u8>,
    frames: usize,
    after: Vec<u8>,
) -> (SocketAddr, std::thread::JoinHandle<bool>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut h = [0u8; 44];
        s.read_exact(&mut h).expect("hello");
        assert_eq!(h[..8], MAGIC);
        s.write_all(&reply).expect("reply");
        for _ in 0..frames {
            // The writer may close on the reply already (a plain listener's frame).
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return true;
            }
            let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut p).is_err() {
                return true;
            }
        }
        if s.write_all(&after).is_err() {
            return true;
        }
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    });
    (addr, t)
}

fn reply(known: bool, delivered: u64) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[1, u8::from(known), 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&delivered.to_be_bytes());
    b
}

fn ack(seq: u64) -> Vec<u8> {
    let mut p = vec![1u8];
    p.extend_from_slice(&seq.to_be_bytes());
    frame(&p)
}

#[test]
fn a_writer_closes_on_bad_acks_and_bad_replies() {
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("an ack beyond what was sent", reply(false, 0), ack(50)),
        (
            "an ack going backwards",
            reply(false, 0),
            [ack(5), ack(3)].concat(),
        ),
        ("an unknown tag", reply(false, 0), frame(&[9, 1, 2])),
        ("a short ack", reply(false, 0), frame(&[1, 0, 0])),
        ("a reply beyond what was sent", reply(true, 99), Vec::new()),
        (
            "no reply: a plain listener's frame",
            frame(b"hello, plain here......"),
            Vec::new(),
        ),
    ];
    for (what, reply, after) in cases {
        let (addr, fake) = fake_listener(reply, 10, after);
        let writer = Writer::dial(
            WriterConfig::new(addr.to_string())
                .acked(true)
                .retry(RetryPolicy::never()),
        )
        .expect("dial");
        for i in 0..10u64 {
            // Fails once the writer has closed on a bad reply (a permanent failure).
            let _ = writer.write(&i.to_be_bytes());
        }
        assert!(fake.join().expect("fake listener"), "{what}: not closed");
        assert!(
            wait_until(Duration::from_secs(5), || !writer.is_connected()),
            "{what}: the writer still thinks it is connected"
        );
    }
}

#[test]
fn an_acked_writer_at_a_plain_listener_delivers_nothing() {
    let delivered = Arc::new(Mutex::new(0usize));
    let d = delivered.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |_, _| {
            *d.lock().unwrap() += 1;
            Ok(())
        })
        .cores(1),
    )
    .expect("bind");
    let writer = Writer::dial(
        WriterConfig::new(listener.local_addr().to_string())
            .acked(true)
            .retry(RetryPolicy::never()),
    )
    .expect("dial");
    for i in 0..100u64 {
        let _ = writer.write(&i.to_be_bytes());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let w = writer.clone();
    std::thread::spawn(move || tx.send(w.flush_acked()));
    let flushed = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("flush_acked returns");
    assert!(
        matches!(
            flushed,
            Err(buffstreams::WriteError::Reconnect(
                buffstreams::DialError::Acked(AckError::NoReplies(_))
            ))
        ),
        "a plain listener closes every connection on the hello: {flushed:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || listener
        .stats()
        .conn_errors
        >= 1));
    assert_eq!(*delivered.lock().unwrap(), 0, "the hello is no message");
    // Plain mode has no acknowledgements to wait for.
    let plain = Writer::dial(WriterConfig::new(listener.local_addr().to_string())).expect("dial");
    assert!(matches!(
        plain.flush_acked(),
        Err(buffstreams::WriteError::NotAcked)
    ));
    // A framing that cannot carry the mode is refused up front.
    assert!(matches!(
        Writer::dial(
            WriterConfig::new(listener.local_addr().to_string())
                .acked(true)
                .framing(buffstreams::Framing::U16Be)
        ),
        Err(buffstreams::DialError::Acked(AckError::Framing(_)))
    ));
}

/// The session table is bounded and expires: at its bound a new session takes the place of the
/// one left ownerless longest ago, with every session owned it is refused, and a session whose
/// connection closed is forgotten after its time to live (its next hello finds it unknown).
#[test]
fn the_session_table_is_bounded_and_expires() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |_, _| Ok(()))
            .on_close(move |_, reason, _| {
                if let CloseReason::Error(err) = reason {
                    if let ConnError::Acked(e) = &**err {
                        c.lock().unwrap_or_else(|e| e.into_inner()).push(e.clone());
                    }
                }
            })
            .cores(1)
            .acked(true)
            .ack_sessions(2, Duration::from_millis(300)),
    )
    .expect("bind");
    let addr = listener.local_addr();
    // Says hello for `session` and returns the connection and the reply's status byte.
    let open = |session: u8| -> (TcpStream, Option<u8>) {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(&hello([session; 16], 1, 1)).expect("hello");
        let mut r = [0u8; 24];
        let status = s.read_exact(&mut r).ok().map(|()| r[9]);
        (s, status)
    };
    let (a, status) = open(1);
    assert_eq!(status, Some(0), "a new session is unknown");
    let (_b, _) = open(2);
    // Both owned: a third session has no room.
    let (_, refused) = open(3);
    assert_eq!(refused, None, "refused without a reply");
    assert!(wait_until(Duration::from_secs(5), || closes
        .lock()
        .unwrap()
        .contains(&AckError::TableFull)));
    // Session 1's connection closes: it may be replaced by a new session at once.
    drop(a);
    assert!(wait_until(Duration::from_secs(5), || listener
        .stats()
        .connections
        == 1));
    let (_c, status) = open(3);
    assert_eq!(status, Some(0));
    assert_eq!(listener.stats().ack_sessions, 2);
}

#[test]
fn a_session_is_forgotten_after_its_time_to_live() {
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |_, _| Ok(()))
            .cores(1)
            .acked(true)
            .ack_sessions(100, Duration::from_millis(300)),
    )
    .expect("bind");
    let addr = listener.local_addr();
    let status = |session: u8| -> Option<u8> {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(&hello([session; 16], 1, 1)).expect("hello");
        let mut r = [0u8; 24];
        s.read_exact(&mut r).ok().map(|()| r[9])
    };
    assert_eq!(status(1), Some(0), "new");
    assert!(wait_until(Duration::from_secs(5), || listener
        .stats()
        .connections
        == 0));
    assert_eq!(status(1), Some(1), "known while its time to live runs");
    assert!(wait_until(Duration::from_secs(5), || listener
        .stats()
        .connections
        == 0));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        status(2),
        Some(0),
        "another session's hello sweeps the table"
    );
    assert_eq!(status(1), Some(0), "expired: unknown again");
}

/// A session whose connection closed is known to its next connection, with what was delivered.
#[test]
fn a_known_session_is_answered_with_what_was_delivered() {
    let w = Watched::start();
    let mut a = TcpStream::connect(w.addr()).expect("connect");
    a.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut bytes = hello([9; 16], 1, 1);
    for p in [b"x1", b"x2"] {
        bytes.extend(frame(p));
    }
    a.write_all(&bytes).expect("write");
    // The reply, then an ack of 2 (a short batch is acknowledged at once).
    let mut r = [0u8; 24 + 4 + 9];
    a.read_exact(&mut r).expect("reply and ack");
    assert_eq!(
        r[..10],
        [0xff, 0xff, 0xff, 0xff, b'B', b'S', b'A', b'K', 1, 0]
    );
    assert_eq!(r[24..28], 9u32.to_be_bytes());
    assert_eq!(r[28], 1, "an ack");
    assert_eq!(r[29..37], 2u64.to_be_bytes());
    drop(a);
    let mut b = TcpStream::connect(w.addr()).expect("connect");
    b.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    b.write_all(&hello([9; 16], 3, 3)).expect("hello");
    let mut r = [0u8; 24];
    b.read_exact(&mut r).expect("reply");
    assert_eq!(r[9], 1, "known");
    assert_eq!(r[16..24], 2u64.to_be_bytes(), "2 delivered");
}
