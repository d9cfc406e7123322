//! The connection table against a fake backend: no kernel, every I/O request recorded, every
//! completion fed by hand. `Fake::sync` answers sends at once (like epoll); otherwise sends
//! complete later and operations keep a connection busy (like io_uring).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::conns::conn::Flow;
use crate::engine::conns::entry::Opener;
use crate::engine::conns::io::{Io, Sending, MAX_SENDS_PER_CALL};
use crate::engine::conns::listener_entry::ACCEPT_RETRY;
use crate::engine::conns::slab::ConnKey;
use crate::engine::conns::table::Conns;
use crate::engine::core::CoreShared;
use crate::engine::core::SendQueue;
use crate::engine::handle::Acceptor;
use crate::engine::handle::{AfterFailure, CoreHandle, SendQueueHandle};
use crate::engine::send::outbox::Outbox;
use crate::engine::session::{ConnInfo, Delivered, Session};
use crate::error::{CloseReason, ConnError};
use crate::frame::{Codec, Framing};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Open(ConnKey),
    Read(ConnKey),
    StopReading(ConnKey),
    /// A send was asked for, of this many bytes.
    Send(ConnKey, usize),
    SendLater(ConnKey),
    Abort,
    Release(ConnKey),
    Listen(u32),
    StopListening(u32),
    ReleaseListener(u32),
}

#[derive(Default)]
struct FakeConn {
    reading: bool,
    sending: bool,
}

#[derive(Default)]
struct FakeListener {
    accepting: bool,
}

#[derive(Default)]
struct Fake {
    calls: Vec<Call>,
    /// Sends complete at once, taking at most this many bytes each (like epoll).
    sync: Option<usize>,
    /// The credit of every receive armed, in order.
    credits: Vec<u32>,
    /// The credit of every narrowing asked for, in order.
    narrowed: Vec<u32>,
}

impl Fake {
    fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }
}

impl Io for Fake {
    type Conn = FakeConn;
    type Listener = FakeListener;

    fn open(
        &mut self,
        key: ConnKey,
        _fd: &OwnedFd,
        credit: u32,
        state: &mut FakeConn,
    ) -> io::Result<()> {
        self.calls.push(Call::Open(key));
        self.credits.push(credit);
        state.reading = self.sync.is_none();
        Ok(())
    }
    fn read(&mut self, key: ConnKey, _fd: &OwnedFd, credit: u32, state: &mut FakeConn) {
        self.calls.push(Call::Read(key));
        self.credits.push(credit);
        state.reading = self.sync.is_none();
    }
    fn narrow(&mut self, _key: ConnKey, credit: u32, _state: &mut FakeConn) {
        self.narrowed.push(credit);
    }
    fn stop_reading(&mut self, key: ConnKey, _state: &mut FakeConn) {
        self.calls.push(Call::StopReading(key));
    }
    fn can_send(&self, state: &FakeConn) -> bool {
        !state.sending
    }
    fn send(&mut self, key: ConnKey, _fd: &OwnedFd, out: &mut Outbox, s: &mut FakeConn) -> Sending {
        let len = out.unsent_len();
        self.calls.push(Call::Send(key, len));
        match self.sync {
            Some(most) => Sending::Sent(len.min(most)),
            None => {
                s.sending = true;
                Sending::Pending
            }
        }
    }
    fn send_later(&mut self, key: ConnKey, _state: &mut FakeConn) {
        self.calls.push(Call::SendLater(key));
    }
    fn busy(&self, state: &FakeConn) -> bool {
        state.reading || state.sending
    }
    fn abort(&mut self, _fd: &OwnedFd, _state: &mut FakeConn) {
        self.calls.push(Call::Abort);
    }
    fn release(&mut self, key: ConnKey, _fd: &OwnedFd, _state: &mut FakeConn) {
        self.calls.push(Call::Release(key));
    }
    fn listen(&mut self, slot: u32, _fd: &OwnedFd, state: &mut FakeListener) -> io::Result<()> {
        self.calls.push(Call::Listen(slot));
        state.accepting = self.sync.is_none();
        Ok(())
    }
    fn stop_listening(&mut self, slot: u32, _state: &mut FakeListener) {
        self.calls.push(Call::StopListening(slot));
    }
    fn listener_busy(&self, state: &FakeListener) -> bool {
        state.accepting
    }
    fn release_listener(&mut self, slot: u32, _fd: &OwnedFd, _state: &mut FakeListener) {
        self.calls.push(Call::ReleaseListener(slot));
    }
    fn wake_at(&mut self, _at: Instant) {}
}

/// What a fake session saw, and whether it is full.
#[derive(Default)]
struct Seen {
    data: Vec<u8>,
    full: bool,
    eof: bool,
    closed: Vec<String>,
}

struct FakeSession(Arc<Mutex<Seen>>);

impl Session for FakeSession {
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError> {
        let mut seen = self.0.lock().unwrap();
        seen.data.extend_from_slice(data);
        Ok(Delivered {
            messages: 1,
            paused: seen.full,
        })
    }
    fn resume(&mut self) -> Result<Delivered, ConnError> {
        let seen = self.0.lock().unwrap();
        Ok(Delivered {
            messages: 0,
            paused: seen.full,
        })
    }
    fn on_eof(&mut self) -> Result<(), ConnError> {
        self.0.lock().unwrap().eof = true;
        Ok(())
    }
    fn on_close(self: Box<Self>, reason: &CloseReason) {
        self.0.lock().unwrap().closed.push(reason.to_string());
    }
}

fn codec() -> Codec {
    Codec::new(Framing::U32Be, 1024).unwrap()
}

fn table() -> Conns<Fake> {
    Conns::new(Arc::new(CoreShared::new(0).unwrap()))
}

fn socket() -> OwnedFd {
    OwnedFd::from(UnixStream::pair().unwrap().0)
}

fn queue(table: &Conns<Fake>) -> Arc<SendQueue> {
    SendQueue::new(
        table.shared().clone(),
        1 << 20,
        Box::new(codec()),
        false,
        false,
    )
}

/// Queues one frame of `payload` (4-byte header).
fn push(sendq: &Arc<SendQueue>, payload: &[u8]) {
    let codec = codec();
    sendq.push(&codec.prepare(payload).unwrap(), None).unwrap();
}

/// A dialed connection on `table` with a fake session; returns its key, queue and session log.
fn dialed(table: &mut Conns<Fake>, io: &mut Fake) -> (ConnKey, Arc<SendQueue>, Arc<Mutex<Seen>>) {
    let sendq = queue(table);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let session = Box::new(FakeSession(seen.clone()));
    let key = table.insert(
        Arc::new(socket()),
        sendq.clone(),
        session,
        Opener::Writer,
        io,
    );
    (key, sendq, seen)
}

/// The fake backend's state of `key`.
fn state(table: &mut Conns<Fake>, key: ConnKey) -> &mut FakeConn {
    table.io_state(key).expect("connection present").1
}

#[test]
fn a_close_waits_for_the_operations_in_flight_and_the_first_reason_wins() {
    let (mut table, mut io) = (table(), Fake::default());
    let (key, sendq, seen) = dialed(&mut table, &mut io);
    push(&sendq, b"abcd");
    table.flush(key, &mut io);
    assert_eq!(io.take(), [Call::Open(key), Call::Send(key, 8)]);

    table.close(key, CloseReason::Local, &mut io);
    assert_eq!(
        io.take(),
        [Call::Abort],
        "the kernel is told to end both operations"
    );
    assert!(
        table.io_state(key).is_some(),
        "kept while the kernel has them"
    );
    assert!(seen.lock().unwrap().closed.is_empty());

    // The send fails (the socket was shut down): not a new close reason.
    state(&mut table, key).sending = false;
    table.sent(key, Err(io::Error::from_raw_os_error(libc::EPIPE)), &mut io);
    assert!(
        table.io_state(key).is_some(),
        "the receive is still in flight"
    );
    state(&mut table, key).reading = false;
    table.free_if_closed(key, &mut io);
    assert_eq!(io.take(), [Call::Release(key)]);
    assert!(table.io_state(key).is_none());
    assert_eq!(seen.lock().unwrap().closed, ["closed locally"]);
    assert_eq!(table.stats.connections, 0);
    // The frame the kernel never took is back in the queue, whole.
    assert_eq!(&sendq.close()[..], b"\0\0\0\x04abcd");
}

#[test]
fn a_failed_connection_resends_from_the_frame_the_kernel_was_in() {
    for (taken, left) in [
        (6, &b"\0\0\0\x04abcd\0\0\0\x04efgh"[..]),
        (10, b"\0\0\0\x04efgh"),
    ] {
        let (mut table, mut io) = (table(), Fake::default());
        let (key, sendq, _seen) = dialed(&mut table, &mut io);
        push(&sendq, b"abcd");
        push(&sendq, b"efgh");
        table.flush(key, &mut io);
        // The kernel takes part of the bytes, then the connection breaks.
        state(&mut table, key).sending = false;
        table.sent(key, Ok(taken), &mut io);
        assert_eq!(io.take().last(), Some(&Call::Send(key, 16 - taken)));
        state(&mut table, key).sending = false;
        state(&mut table, key).reading = false;
        table.sent(
            key,
            Err(io::Error::from_raw_os_error(libc::ECONNRESET)),
            &mut io,
        );
        assert!(table.io_state(key).is_none());
        assert_eq!(&sendq.close()[..], left, "after {taken} bytes were taken");
    }
}

#[test]
fn a_stale_key_never_reaches_the_connection_in_its_slot() {
    let (mut table, mut io) = (
        table(),
        Fake {
            sync: Some(usize::MAX),
            ..Fake::default()
        },
    );
    let (old, _, old_seen) = dialed(&mut table, &mut io);
    table.close(old, CloseReason::Local, &mut io);
    let (new, sendq, seen) = dialed(&mut table, &mut io);
    assert_eq!(old.slot(), new.slot(), "the slot was reused");
    io.take();

    assert_eq!(table.data(old, b"late", &mut io), Flow::Closed);
    table.eof(old, &mut io);
    table.sent(old, Err(io::Error::from_raw_os_error(libc::EPIPE)), &mut io);
    table.resume(old, &mut io);
    table.close(old, CloseReason::PeerClosed, &mut io);
    assert!(
        io.take().is_empty(),
        "nothing was asked for the new connection"
    );
    assert!(seen.lock().unwrap().data.is_empty());
    assert!(seen.lock().unwrap().closed.is_empty());
    assert_eq!(old_seen.lock().unwrap().closed.len(), 1, "told once");
    assert_eq!(table.data(new, b"mine", &mut io), Flow::Read);
    assert_eq!(seen.lock().unwrap().data, b"mine");
    // Commands find a connection through its queue, by the key attached to it.
    assert_eq!(table.attached(&sendq), Some(new));
}

#[test]
fn pausing_and_resuming_follow_the_session() {
    let (mut table, mut io) = (table(), Fake::default());
    let (key, _, seen) = dialed(&mut table, &mut io);
    io.take();
    seen.lock().unwrap().full = true;
    assert_eq!(table.data(key, b"one", &mut io), Flow::Paused);
    assert_eq!(io.take(), [Call::StopReading(key)]);
    // What was in flight when reading stopped still goes to the session, with no new request.
    assert_eq!(table.data(key, b"two", &mut io), Flow::Paused);
    assert!(io.take().is_empty());
    // Resumed while still full: nothing happens.
    table.resume(key, &mut io);
    assert!(io.take().is_empty());
    assert!(table.is_paused(key) && !table.wants_read(key));
    // The peer's EOF while paused waits for the held-back bytes.
    table.eof(key, &mut io);
    assert!(!seen.lock().unwrap().eof);
    seen.lock().unwrap().full = false;
    table.resume(key, &mut io);
    assert!(
        seen.lock().unwrap().eof,
        "the EOF is handled once delivered"
    );
    assert_eq!(io.take(), [Call::Abort], "then the connection closes");
    assert_eq!(seen.lock().unwrap().data, b"onetwo");
}

#[test]
fn receives_grow_their_credit_and_a_stop_starts_it_small_again() {
    use super::credit::{MAX_RECV_CREDIT, MIN_RECV_CREDIT};
    let (mut table, mut io) = (table(), Fake::default());
    let (key, _, seen) = dialed(&mut table, &mut io);
    assert_eq!(
        io.credits,
        [MIN_RECV_CREDIT],
        "a new connection starts small"
    );
    for _ in 0..6 {
        table.credit_used_up(key);
    }
    assert_eq!(table.recv_credit(key), MAX_RECV_CREDIT);
    seen.lock().unwrap().full = true;
    table.data(key, b"x", &mut io);
    seen.lock().unwrap().full = false;
    table.resume(key, &mut io);
    assert_eq!(
        io.credits.last(),
        Some(&MIN_RECV_CREDIT),
        "the stop reset it"
    );
    // Narrowing asks the backend to bring the receive in flight within the credit, except for
    // a stopped connection (whose receive is cancelled already).
    table.credit_used_up(key);
    table.narrow_receives(&mut io);
    assert_eq!(io.narrowed, [2 * MIN_RECV_CREDIT]);
    seen.lock().unwrap().full = true;
    table.data(key, b"y", &mut io);
    table.narrow_receives(&mut io);
    assert_eq!(io.narrowed.len(), 1, "a paused connection is left alone");
}

#[test]
fn resuming_reads_again() {
    let (mut table, mut io) = (table(), Fake::default());
    let (key, _, seen) = dialed(&mut table, &mut io);
    seen.lock().unwrap().full = true;
    table.data(key, b"x", &mut io);
    seen.lock().unwrap().full = false;
    io.take();
    table.resume(key, &mut io);
    assert_eq!(io.take(), [Call::Read(key)]);
    assert!(table.wants_read(key));
    table.resume(key, &mut io);
    assert!(io.take().is_empty(), "once");
}

#[test]
fn a_close_while_paused_waits_for_the_cancelled_receive() {
    let (mut table, mut io) = (table(), Fake::default());
    let (key, _, seen) = dialed(&mut table, &mut io);
    seen.lock().unwrap().full = true;
    table.data(key, b"x", &mut io);
    table.close(key, CloseReason::Local, &mut io);
    assert!(table.io_state(key).is_some());
    table.resume(key, &mut io);
    assert_eq!(table.data(key, b"late", &mut io), Flow::Closed);
    state(&mut table, key).reading = false;
    table.free_if_closed(key, &mut io);
    assert!(table.io_state(key).is_none());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.data, b"x", "nothing delivered once closing");
    assert_eq!(seen.closed, ["closed locally"]);
}

#[test]
fn synchronous_sends_yield_after_the_cap_and_a_flushed_close_follows_the_last() {
    let (mut table, mut io) = (
        table(),
        Fake {
            sync: Some(4),
            ..Fake::default()
        },
    );
    let (key, sendq, seen) = dialed(&mut table, &mut io);
    for _ in 0..20 {
        push(&sendq, b"abcd"); // 8 bytes each: 40 sends of 4 bytes
    }
    io.take();
    table.flush(key, &mut io);
    let calls = io.take();
    assert_eq!(calls.len() as u32, MAX_SENDS_PER_CALL + 1);
    assert_eq!(calls.last(), Some(&Call::SendLater(key)));
    let (ack, closed) = sync_channel(1);
    table.close_when_flushed(key, Some(ack));
    table.flush(key, &mut io);
    assert_eq!(
        closed.try_recv(),
        Err(TryRecvError::Empty),
        "8 sends are left"
    );
    assert!(seen.lock().unwrap().closed.is_empty());
    assert_eq!(table.stats.bytes_sent, 128);
    table.flush(key, &mut io);
    assert_eq!(closed.try_recv(), Ok(()));
    assert_eq!(table.stats.bytes_sent, 160);
    assert_eq!(seen.lock().unwrap().closed, ["closed locally"]);
}

struct FakeAcceptor(Arc<Mutex<Seen>>);

impl Acceptor for FakeAcceptor {
    fn open(
        &self,
        _info: ConnInfo,
        core: &CoreHandle,
    ) -> Option<(SendQueueHandle, Box<dyn Session>)> {
        let conn = SendQueueHandle::new(core, 1 << 20, Box::new(codec()), AfterFailure::Refuse);
        Some((conn, Box::new(FakeSession(self.0.clone()))))
    }
}

#[test]
fn a_listener_closes_after_its_connections_and_its_accept() {
    let (mut table, mut io) = (table(), Fake::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    assert!(table.add_listener(7, socket(), Arc::new(FakeAcceptor(seen.clone())), &mut io));
    let slot = table.listener_slot(7).unwrap();
    table.accepted(slot, socket(), None, &mut io);
    let conn = match io.take().as_slice() {
        [Call::Listen(s), Call::Open(key)] if *s == slot => *key,
        other => panic!("{other:?}"),
    };
    assert_eq!(table.stats.accepted, 1);

    let (ack, closed) = sync_channel(1);
    table.close_listener(slot, Some(ack), &mut io);
    assert_eq!(io.take(), [Call::StopListening(slot), Call::Abort]);
    // A connection accepted after the close started is refused.
    table.accepted(slot, socket(), None, &mut io);
    assert!(io.take().is_empty());
    state(&mut table, conn).reading = false;
    table.free_if_closed(conn, &mut io);
    assert_eq!(io.take(), [Call::Release(conn)]);
    assert_eq!(
        closed.try_recv(),
        Err(TryRecvError::Empty),
        "the accept is in flight"
    );
    table.listener_state(slot).unwrap().accepting = false;
    table.maybe_finish_listener(slot, &mut io);
    assert_eq!(io.take(), [Call::ReleaseListener(slot)]);
    assert_eq!(
        closed.try_recv(),
        Ok(()),
        "acked once the socket is released"
    );
    assert!(table.is_empty());
    assert_eq!(seen.lock().unwrap().closed, ["closed locally"]);
}

#[test]
fn a_shutdown_sends_what_is_queued_then_closes_at_the_deadline() {
    let (mut table, mut io) = (table(), Fake::default());
    let (done, sendq, seen) = dialed(&mut table, &mut io);
    let (stuck, stuck_q, stuck_seen) = dialed(&mut table, &mut io);
    let (idle, _, idle_seen) = dialed(&mut table, &mut io);
    push(&sendq, b"abcd");
    push(&stuck_q, b"efgh");
    io.take();
    let start = Instant::now();
    table.begin_shutdown(Duration::from_secs(60), &mut io);
    assert!(table.stopping());
    // The idle connection has nothing to send: it closes at once.
    assert_eq!(
        io.take(),
        [Call::Send(done, 8), Call::Send(stuck, 8), Call::Abort]
    );
    state(&mut table, idle).reading = false;
    table.free_if_closed(idle, &mut io);
    assert_eq!(io.take(), [Call::Release(idle)]);
    assert_eq!(idle_seen.lock().unwrap().closed, ["closed locally"]);
    // One send completes: its connection closes once flushed.
    state(&mut table, done).sending = false;
    table.sent(done, Ok(8), &mut io);
    assert_eq!(io.take(), [Call::Abort]);
    state(&mut table, done).reading = false;
    table.free_if_closed(done, &mut io);
    assert_eq!(io.take(), [Call::Release(done)]);
    assert_eq!(seen.lock().unwrap().closed, ["closed locally"]);
    // The other's send never completes: it is left alone until the deadline...
    let (_, next) = table.run_timers(start + Duration::from_secs(30), &mut io);
    assert!(next.is_some_and(|at| at >= start + Duration::from_secs(60)));
    assert!(io.take().is_empty());
    assert!(stuck_seen.lock().unwrap().closed.is_empty());
    // ...which closes it (the kernel is told to end its operations).
    let (due, _) = table.run_timers(start + Duration::from_secs(61), &mut io);
    assert!(due.is_empty());
    assert_eq!(io.take(), [Call::Abort], "the deadline closes what is left");
    state(&mut table, stuck).sending = false;
    table.sent(
        stuck,
        Err(io::Error::from_raw_os_error(libc::EPIPE)),
        &mut io,
    );
    state(&mut table, stuck).reading = false;
    table.free_if_closed(stuck, &mut io);
    assert_eq!(stuck_seen.lock().unwrap().closed, ["closed locally"]);
    assert!(table.is_empty());
    let (_, next) = table.run_timers(start + Duration::from_secs(62), &mut io);
    assert!(next.is_none(), "nothing left to wait for");
}

#[test]
fn an_accept_that_runs_out_of_descriptors_retries_later() {
    let (mut table, mut io) = (table(), Fake::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    table.add_listener(1, socket(), Arc::new(FakeAcceptor(seen)), &mut io);
    let slot = table.listener_slot(1).unwrap();
    table.listener_state(slot).unwrap().accepting = false;
    table.accept_failed(slot, &io::Error::from_raw_os_error(libc::EMFILE), &mut io);
    assert!(table.accepting(slot).is_none(), "paused");
    assert!(table.has_timers());
    let (due, _) = table.run_timers(Instant::now(), &mut io);
    assert!(due.is_empty(), "not yet");
    let (due, next) = table.run_timers(Instant::now() + ACCEPT_RETRY, &mut io);
    assert_eq!(due, [slot]);
    assert!(next.is_none());
    assert!(table.accepting(slot).is_some());
}
