//! Bad peers: each bad connection closes with a typed error, while a good connection on the same
//! core keeps streaming, and nothing is allocated for an announced size over the maximum.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buffstreams::{
    CloseReason, ConnError, FrameError, Framing, Listener, ListenerConfig, Writer, WriterConfig,
};
use common::wait_until;

/// Records the largest single allocation made while armed.
struct PeakAlloc;
static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

const MAX: usize = 64 * 1024;

/// The allocation probe is process-wide: run one bad-peer test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

type Closed = Arc<Mutex<HashMap<SocketAddr, CloseReason>>>;

struct Server {
    listener: Listener,
    closed: Closed,
    good: Arc<AtomicU64>,
}

/// A one-core listener (every connection shares the core) that records close reasons by peer.
fn server(framing: Framing) -> Server {
    let closed: Closed = Arc::default();
    let good = Arc::new(AtomicU64::new(0));
    let (c, g) = (closed.clone(), good.clone());
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            if msg == b"good" {
                g.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .framing(framing)
        .max_message_size(MAX)
        .cores(1)
        .on_close(move |info, reason, _unsent| {
            c.lock().unwrap().insert(info.peer, reason.clone());
        }),
    )
    .unwrap();
    Server {
        listener,
        closed,
        good,
    }
}

fn reason_for(server: &Server, peer: SocketAddr) -> CloseReason {
    assert!(
        wait_until(Duration::from_secs(5), || server
            .closed
            .lock()
            .unwrap()
            .contains_key(&peer)),
        "connection from {peer} was not closed"
    );
    server.closed.lock().unwrap()[&peer].clone()
}

fn frame_error(reason: &CloseReason) -> Option<FrameError> {
    match reason {
        CloseReason::Error(e) => match &**e {
            ConnError::Frame(f) => Some(f.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Sends `bytes` from a raw socket, keeps it open, and returns the close reason the server saw.
fn bad_peer(server: &Server, bytes: &[u8], then_shutdown: bool) -> CloseReason {
    let mut s = TcpStream::connect(server.listener.local_addr()).unwrap();
    s.write_all(bytes).unwrap();
    if then_shutdown {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let reason = reason_for(server, s.local_addr().unwrap());
    drop(s);
    reason
}

/// A good writer keeps streaming on the same core while `bad` runs; returns what it delivered
/// before and after.
fn alongside_good_stream(server: &Server, framing: Framing, bad: impl FnOnce()) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let writer = Writer::dial(
        WriterConfig::new(server.listener.local_addr().to_string())
            .framing(framing)
            .max_message_size(MAX)
            .send_queue_bytes(16 * 1024),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let w = writer.clone();
    let streamer = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            w.write(b"good").unwrap();
        }
        w.flush().unwrap();
    });
    assert!(wait_until(Duration::from_secs(5), || server
        .good
        .load(Ordering::Relaxed)
        > 1000));
    ARMED.store(true, Ordering::SeqCst);
    bad();
    ARMED.store(false, Ordering::SeqCst);
    let before = server.good.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || server
            .good
            .load(Ordering::Relaxed)
            > before + 1000),
        "the good connection stalled after the bad peers"
    );
    stop.store(true, Ordering::Relaxed);
    streamer.join().unwrap();
    writer.close().unwrap();
    let good_conn = writer.conn_info().unwrap();
    assert!(
        !server.closed.lock().unwrap().contains_key(&good_conn.local)
            || matches!(
                server.closed.lock().unwrap()[&good_conn.local],
                CloseReason::PeerClosed
            ),
        "the good connection was closed with an error"
    );
    let largest = LARGEST.swap(0, Ordering::SeqCst);
    assert!(
        largest < 4 * MAX,
        "allocated {largest} bytes for a bad peer"
    );
}

#[test]
fn fixed_header_bad_peers() {
    common::init_tracing();
    let server = server(Framing::U32Be);
    alongside_good_stream(&server, Framing::U32Be, || {
        // Announces 1 GiB (far over the 64 KiB maximum): rejected from the header alone.
        let r = bad_peer(&server, &(1u32 << 30).to_be_bytes(), false);
        assert_eq!(
            frame_error(&r),
            Some(FrameError::TooLarge {
                len: 1 << 30,
                max: MAX
            })
        );
        // One past the maximum.
        let r = bad_peer(&server, &(MAX as u32 + 1).to_be_bytes(), false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::TooLarge { .. })),
            "{r:?}"
        );
        // Truncated frame: header for 100 bytes, 40 sent, then EOF.
        let mut bytes = 100u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1; 40]);
        let r = bad_peer(&server, &bytes, true);
        assert!(
            matches!(frame_error(&r), Some(FrameError::Truncated { .. })),
            "{r:?}"
        );
        // Truncated inside the header.
        let r = bad_peer(&server, &[0, 0], true);
        assert!(
            matches!(frame_error(&r), Some(FrameError::Truncated { .. })),
            "{r:?}"
        );
        // Reset mid-frame: SO_LINGER 0 then close sends RST (once the server holds the
        // connection and part of a frame).
        let accepted = |server: &Server| server.listener.runtime().stats()[0].accepted;
        let before = accepted(&server);
        let s = TcpStream::connect(server.listener.local_addr()).unwrap();
        let peer = s.local_addr().unwrap();
        let mut bytes = 1000u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[2; 10]);
        (&s).write_all(&bytes).unwrap();
        assert!(wait_until(Duration::from_secs(5), || accepted(&server) > before));
        std::thread::sleep(Duration::from_millis(20));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        let r = reason_for(&server, peer);
        assert!(
            matches!(&r, CloseReason::Error(e) if matches!(&**e, ConnError::Io(_) | ConnError::Frame(FrameError::Truncated { .. }))),
            "{r:?}"
        );
    });
    server.listener.close();
}

#[test]
fn varint_bad_peers() {
    let server = server(Framing::Varint);
    alongside_good_stream(&server, Framing::Varint, || {
        let r = bad_peer(&server, &[0xff; 11], false);
        assert!(
            matches!(
                frame_error(&r),
                Some(
                    FrameError::UnterminatedLength { .. }
                        | FrameError::LengthOverflow
                        | FrameError::TooLarge { .. }
                )
            ),
            "{r:?}"
        );
        // A valid varint announcing 2^40 bytes.
        let r = bad_peer(&server, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20], false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::TooLarge { .. })),
            "{r:?}"
        );
    });
    server.listener.close();
}

#[test]
fn buffstreams_header_bad_peers() {
    let server = server(Framing::BuffStreams);
    // max 64 KiB: H = ceil(17 / 8) + 1 = 4 header bytes.
    alongside_good_stream(&server, Framing::BuffStreams, || {
        // zigzag(-1) = 1.
        let r = bad_peer(&server, &[0x01, 0, 0, 0], false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::NegativeLength { .. })),
            "{r:?}"
        );
        // Non-zero padding after a terminated varint.
        let r = bad_peer(&server, &[0x02, 0, 7, 0], false);
        assert_eq!(frame_error(&r), Some(FrameError::NonZeroPadding));
        // Varint that does not end inside the header.
        let r = bad_peer(&server, &[0xff, 0xff, 0xff, 0xff], false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::UnterminatedLength { .. })),
            "{r:?}"
        );
        // Over the maximum: zigzag(1 << 20) = 1 << 21.
        let r = bad_peer(&server, &[0x80, 0x80, 0x80, 0x01], false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::TooLarge { .. })),
            "{r:?}"
        );
    });
    server.listener.close();
}

#[test]
fn delimited_bad_peer() {
    let server = server(Framing::Delimited(b'\n'));
    alongside_good_stream(&server, Framing::Delimited(b'\n'), || {
        // No delimiter within the maximum.
        let r = bad_peer(&server, &vec![b'a'; MAX + 10], false);
        assert!(
            matches!(frame_error(&r), Some(FrameError::TooLarge { .. })),
            "{r:?}"
        );
    });
    server.listener.close();
}
