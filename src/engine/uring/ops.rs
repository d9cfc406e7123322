//! What the io_uring core submits: the operations the connection table asks for (multishot
//! receive and accept, sends, cancels; a lone reply goes out by a direct syscall instead), the
//! standing wake-up read and the timer, and the submission queue with its overflow backlog.
//! Every SQE built here points only at memory that outlives its completion (see
//! [`Ring::push`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::armed::{Accepting, RecvSend};
use super::inflight::{InFlight, Keep, OpId, OpKind};
use crate::engine::conns::credit::UNLIMITED;
use crate::engine::conns::io::{Io, Sending};
use crate::engine::conns::slab::ConnKey;
use crate::engine::send::direct;
use crate::engine::send::outbox::{Outbox, Span};
use crate::engine::session::TICK;

/// Whether a direct send's error only means "not now" (the ring's send waits instead).
fn is_retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The timer's longest wait: a tick, an accept retry or a deadline is never missed by more.
const TIMER_PERIOD: Duration = TICK;

/// The ring and what its operations point at. Field order is drop order: the ring goes before
/// the memory it may still read or write.
pub(crate) struct Ring {
    pub(super) ring: IoUring,
    /// Every operation queued whose final completion has not arrived, with the memory the
    /// kernel may use for it: dropped after the ring, and leaking (never freeing) what live
    /// operations keep.
    pub(super) ops: InFlight,
    /// The wake-up read's buffer while no read is armed (the read's slot owns it meanwhile).
    wake_buf: Option<Box<u64>>,
    /// The timer's timespec while no timer is armed (the timer's slot owns it meanwhile).
    timer_spec: Option<Box<types::Timespec>>,
    /// SQEs that did not fit in the submission queue, in order.
    backlog: Vec<squeue::Entry>,
    /// The buffer ring's group, for receives.
    group: u16,
    /// The size of the buffer ring's buffers: a credit below it also caps each receive.
    buf_size: u32,
    /// Multishot receives take a byte limit (`sqe->optlen`, Linux 6.17+); cleared when the
    /// kernel refuses one (older kernels reject the field with `EINVAL`).
    pub(super) recv_limits: bool,
    /// The wake-up read armed.
    wake: Option<OpId>,
    /// The timer armed.
    timer: Option<OpId>,
    /// The wake-up read and the timer were withdrawn (the core is ending): no more of them.
    pub(super) withdrawn: bool,
    /// Connections to send on again next turn (see [`Io::send_later`]).
    pub(super) later: Vec<ConnKey>,
    /// This turn reaped at most one completion: a send it makes is likely a lone reply.
    pub(super) lone_turn: bool,
}

impl Ring {
    pub(super) fn new(ring: IoUring, group: u16, buf_size: u32) -> Ring {
        Ring {
            ring,
            ops: InFlight::default(),
            wake_buf: Some(Box::new(0)),
            timer_spec: Some(Box::new(types::Timespec::from(TIMER_PERIOD))),
            backlog: Vec::new(),
            group,
            buf_size,
            recv_limits: true,
            wake: None,
            timer: None,
            withdrawn: false,
            later: Vec::new(),
            lone_turn: false,
        }
    }

    /// Operations queued whose final completion has not arrived.
    pub(super) fn in_flight(&self) -> usize {
        self.ops.live()
    }

    /// Whether `user_data` is the timer's.
    pub(super) fn is_timer(&self, user_data: u64) -> bool {
        self.ops.kind(user_data) == Some(OpKind::Timer)
    }

    /// Whether SQEs wait in the backlog.
    pub(super) fn backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Queues the SQE of operation `kind` (into the backlog if the submission queue is full),
    /// in flight from now until its final completion, keeping `keep` until then.
    pub(super) fn push(&mut self, kind: OpKind, keep: Keep, sqe: squeue::Entry) -> OpId {
        let id = self.ops.start(kind, keep);
        let sqe = sqe.user_data(id.user_data());
        if !self.backlog.is_empty() {
            self.backlog.push(sqe);
            return id;
        }
        // SAFETY: every SQE built in this module points only at memory that stays alive and
        // unmoved until the final completion for that SQE is reaped, or is leaked if it never
        // arrives: a connection's outbox in the table (its boxed msghdr, iovec array and chunks,
        // heap memory that does not move with the table's slots, changed only between sends,
        // and kept while the send is armed: `Io::busy`), or what the operation's slot in `ops`
        // keeps (the wake-up buffer, the timespec). Cancels and timeout removals point at
        // nothing.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.backlog.push(sqe);
        }
        id
    }

    /// A completion for `user_data` arrived: ends its operation if it is the final one (whatever
    /// became of its connection or listener) and says which operation it was.
    pub(super) fn complete(&mut self, user_data: u64, flags: u32) -> Option<OpKind> {
        let done = self
            .ops
            .complete(user_data, io_uring::cqueue::more(flags))?;
        match done.released {
            Some(Keep::WakeBuf(buf)) => {
                self.wake = None;
                self.wake_buf = Some(buf);
            }
            Some(Keep::Timespec(spec)) => {
                self.timer = None;
                self.timer_spec = Some(spec);
            }
            Some(Keep::Nothing) | None => {}
        }
        Some(done.kind)
    }

    /// Moves the backlog into the submission queue, submitting as it fills up.
    pub(super) fn flush_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let mut moved = 0;
            {
                let mut sq = self.ring.submission();
                for sqe in &self.backlog {
                    // SAFETY: as in `push`.
                    if unsafe { sq.push(sqe) }.is_err() {
                        break;
                    }
                    moved += 1;
                }
            }
            self.backlog.drain(..moved);
            if self.backlog.is_empty() || self.ring.submit().is_err() {
                break;
            }
        }
    }

    /// Keeps a read armed on the core's wake-up eventfd.
    pub(super) fn arm_wake(&mut self, fd: std::os::fd::RawFd) {
        let Some(mut buf) = self.wake_buf.take() else {
            return; // Armed already: its slot holds the buffer.
        };
        let ptr: *mut u64 = &mut *buf;
        let sqe = opcode::Read::new(types::Fd(fd), ptr.cast(), 8).build();
        self.wake = Some(self.push(OpKind::Wake, Keep::WakeBuf(buf), sqe));
    }

    /// Withdraws the wake-up read and the timer: everything is closed and the loop ends once
    /// their final completions are in.
    pub(super) fn withdraw(&mut self) {
        self.withdrawn = true;
        if let Some(wake) = self.wake {
            let sqe = opcode::AsyncCancel::new(wake.user_data()).build();
            self.push(OpKind::Cancel, Keep::Nothing, sqe);
        }
        if let Some(timer) = self.timer {
            let sqe = opcode::TimeoutRemove::new(timer.user_data()).build();
            self.push(OpKind::Cancel, Keep::Nothing, sqe);
        }
    }

    /// Cancels every operation (the loop is ending).
    pub(super) fn cancel_all(&mut self) {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
        self.push(OpKind::Cancel, Keep::Nothing, sqe);
    }

    /// Cancels the multishot receive of `key`, if armed and not cancelled yet. Completions
    /// already posted still arrive and go to the session, which holds them if it stopped;
    /// nothing in the socket is lost. Its final completion (`ECANCELED`) re-arms it if the
    /// connection still reads.
    fn cancel_recv(&mut self, state: &mut RecvSend) {
        if let (Some(recv), false) = (state.recv, state.recv_cancelled) {
            state.recv_cancelled = true;
            let sqe = opcode::AsyncCancel::new(recv.user_data()).build();
            self.push(OpKind::Cancel, Keep::Nothing, sqe);
        }
    }

    /// Arms the multishot receive of `key`, ending once it has delivered `credit` bytes (see
    /// `conns::credit`), where the kernel supports that.
    fn arm_recv(&mut self, key: ConnKey, fd: &OwnedFd, credit: u32, state: &mut RecvSend) {
        if state.recv.is_some() {
            return;
        }
        state.recv_left = if self.recv_limits { credit } else { UNLIMITED };
        let fd = types::Fd(fd.as_raw_fd());
        let sqe = if state.recv_limited() {
            // Each receive also takes at most the credit, so the limit is exact when the credit
            // is below a buffer (0 means a whole buffer).
            let per_receive = if credit < self.buf_size { credit } else { 0 };
            let sqe = opcode::RecvMulti::new(fd, self.group)
                .len(per_receive)
                .build();
            with_optlen(sqe, credit)
        } else {
            opcode::RecvMulti::new(fd, self.group).build()
        };
        state.recv = Some(self.push(OpKind::Recv(key), Keep::Nothing, sqe));
    }
}

impl Io for Ring {
    type Conn = RecvSend;
    type Listener = Accepting;

    fn open(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        credit: u32,
        state: &mut RecvSend,
    ) -> io::Result<()> {
        self.arm_recv(key, fd, credit, state);
        Ok(())
    }

    fn read(&mut self, key: ConnKey, fd: &OwnedFd, credit: u32, state: &mut RecvSend) {
        self.arm_recv(key, fd, credit, state);
    }

    fn narrow(&mut self, _key: ConnKey, credit: u32, state: &mut RecvSend) {
        // A receive that may still deliver more than `credit` (or has no limit) is cancelled;
        // its final completion re-arms it within the credit.
        if self.recv_limits && state.recv_left > credit {
            self.cancel_recv(state);
        }
    }

    fn stop_reading(&mut self, _key: ConnKey, state: &mut RecvSend) {
        self.cancel_recv(state);
    }

    fn can_send(&self, state: &RecvSend) -> bool {
        !state.send_armed
    }

    fn send(
        &mut self,
        key: ConnKey,
        fd: &OwnedFd,
        out: &mut Outbox,
        state: &mut RecvSend,
    ) -> Sending {
        // One send over every waiting chunk, read where the producers wrote the frames: a
        // plain send for one chunk, a sendmsg over their iovecs for several. On a turn that
        // reaped a single completion (a lone request), first as a nonblocking syscall: that
        // finishes the reply at once, with no completion to wait for and no second
        // `io_uring_enter`. On busier turns every send goes by the ring, one `io_uring_enter` for
        // all: trying each (or the first of each turn) directly costs many-connection ping-pong
        // round trips, as replies trickling out one by one keep both ends from batching
        // (measured: see docs/benchmarks.md, 'send path'). A socket whose
        // buffer is full is also left to the ring, whose send waits for room.
        if self.lone_turn && !state.socket_full && self.ring.submission().is_empty() {
            match direct::send_outbox(fd, out) {
                Ok(n) if n > 0 => {
                    // Fewer bytes than asked: the buffer is full now; the rest goes by the ring.
                    state.socket_full = n < out.span_len();
                    return Sending::Sent(n);
                }
                Err(err) if !is_retry(&err) => return Sending::Failed(err),
                _ => state.socket_full = true,
            }
        }
        let fd = types::Fd(fd.as_raw_fd());
        let sqe = match out.span() {
            // A longer span (a frame over 4 GiB) is sent in parts, as a short send is.
            Span::One(ptr, len) => opcode::Send::new(fd, ptr, len.min(u32::MAX as usize) as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            Span::Many(msg) => opcode::SendMsg::new(fd, msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build(),
        };
        state.send_armed = true;
        self.push(OpKind::Send(key), Keep::Nothing, sqe);
        Sending::Pending
    }

    fn send_later(&mut self, key: ConnKey, _state: &mut RecvSend) {
        self.later.push(key);
    }

    fn busy(&self, state: &RecvSend) -> bool {
        state.recv.is_some() || state.send_armed
    }

    fn abort(&mut self, fd: &OwnedFd, _state: &mut RecvSend) {
        // SAFETY: no pointer; `fd` is a socket the table owns, open while borrowed. It ends the
        // multishot receive (EOF) and any pending send (EPIPE), so their final completions
        // arrive and the slot can go. A failure (not connected) leaves nothing to end.
        let _ = syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR));
    }

    fn release(&mut self, _key: ConnKey, _fd: &OwnedFd, _state: &mut RecvSend) {}

    fn listen(&mut self, slot: u32, fd: &OwnedFd, state: &mut Accepting) -> io::Result<()> {
        if state.armed.is_none() {
            let shared = *state.shared.get_or_insert_with(|| {
                socket2::SockRef::from(fd)
                    .local_addr()
                    .is_ok_and(|a| a.is_unix())
            });
            let sqe = match shared {
                true => {
                    opcode::Accept::new(types::Fd(fd.as_raw_fd()), ptr::null_mut(), ptr::null_mut())
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                }
                false => opcode::AcceptMulti::new(types::Fd(fd.as_raw_fd()))
                    .flags(libc::SOCK_CLOEXEC)
                    .build(),
            };
            state.armed = Some(self.push(OpKind::Accept(slot), Keep::Nothing, sqe));
        }
        Ok(())
    }

    fn stop_listening(&mut self, _slot: u32, state: &mut Accepting) {
        if let Some(accept) = state.armed {
            let sqe = opcode::AsyncCancel::new(accept.user_data()).build();
            self.push(OpKind::Cancel, Keep::Nothing, sqe);
        }
    }

    fn listener_busy(&self, state: &Accepting) -> bool {
        state.armed.is_some()
    }

    fn release_listener(&mut self, _slot: u32, _fd: &OwnedFd, _state: &mut Accepting) {}

    fn wake_at(&mut self, at: Instant) {
        if self.withdrawn {
            return;
        }
        let Some(mut spec) = self.timer_spec.take() else {
            return; // Armed already: its slot holds the timespec.
        };
        let wait = at
            .saturating_duration_since(Instant::now())
            .min(TIMER_PERIOD);
        *spec = types::Timespec::from(wait);
        let sqe = opcode::Timeout::new(&*spec).build();
        self.timer = Some(self.push(OpKind::Timer, Keep::Timespec(spec), sqe));
    }
}

/// `sqe` with its `optlen` field (offset 44 of the kernel's `struct io_uring_sqe`, shared with
/// `file_index` and `splice_fd_in`) set to `value`: for a multishot receive, the total bytes it
/// may deliver before it ends (`IORING_RECV_MSHOT_LIM`, Linux 6.17). The `io-uring` crate has
/// no setter for it.
fn with_optlen(sqe: squeue::Entry, value: u32) -> squeue::Entry {
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe` and
    // nothing else, so it has exactly that size and layout, and every byte pattern is a valid
    // SQE value (integers and unions of integers). The kernel's ABI fixes the field's offset.
    let mut bytes: [u8; 64] = unsafe { std::mem::transmute(sqe) };
    bytes[OPTLEN..OPTLEN + 4].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: as above, back to the type it came from.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}
