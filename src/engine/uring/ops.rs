//! What the io_uring core submits: the operations the connection table asks for (multishot
//! receive and accept, sends, cancels; a lone reply goes out by a direct syscall instead), the
//! standing wake-up read and the timer, and the submission queue with its overflow backlog.
//! Every SQE built here points only at memory that outlives its completion (see
//! [`Ring::push`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::engine::conns::credit::UNLIMITED;
use crate::engine::conns::{ConnKey, Io, Sending};
use crate::engine::send::direct;
use crate::engine::send::outbox::{Outbox, Span};
use crate::engine::session::TICK;

// user_data: the operation in the top byte, then the connection key (56 bits) or the
// listener's slot.
pub(super) const OP_ACCEPT: u64 = 1;
pub(super) const OP_RECV: u64 = 2;
pub(super) const OP_SEND: u64 = 3;
pub(super) const OP_WAKE: u64 = 4;
pub(super) const OP_CANCEL: u64 = 5;
pub(super) const OP_TIMER: u64 = 6;

/// The `user_data` of operation `op` on `target` (a key's bits or a listener slot).
pub(super) fn user_data(op: u64, target: u64) -> u64 {
    (op << 56) | (target & ((1 << 56) - 1))
}

/// Whether a direct send's error only means "not now" (the ring's send waits instead).
fn is_retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The timer's longest wait: a tick, an accept retry or a deadline is never missed by more.
const TIMER_PERIOD: Duration = TICK;

/// A connection's operations in flight.
#[derive(Default)]
pub(crate) struct RecvSend {
    recv_armed: bool,
    send_armed: bool,
    /// A direct send found the socket's buffer full: the next send goes through the ring (which
    /// waits for room) until one completes.
    socket_full: bool,
    /// The multishot receive was cancelled by a pause and its final completion has not arrived:
    /// an `ECANCELED` then is ours, even if the session resumed meanwhile.
    recv_cancelled: bool,
    /// What the receive armed may still deliver ([`UNLIMITED`] if it has no limit): its end
    /// with data means the credit ran out.
    recv_left: u32,
}

impl RecvSend {
    /// The receive ended (its final completion); returns whether a pause had cancelled it.
    pub(super) fn recv_ended(&mut self) -> bool {
        self.recv_armed = false;
        std::mem::take(&mut self.recv_cancelled)
    }

    /// Whether the receive armed was given a byte limit.
    pub(super) fn recv_limited(&self) -> bool {
        self.recv_left != UNLIMITED
    }

    /// The receive delivered `bytes` more.
    pub(super) fn received(&mut self, bytes: u32) {
        if self.recv_left != UNLIMITED {
            self.recv_left = self.recv_left.saturating_sub(bytes);
        }
    }

    /// Whether the receive was cancelled by a pause (and has not ended yet).
    pub(super) fn recv_cancelled(&self) -> bool {
        self.recv_cancelled
    }

    /// The send's completion arrived.
    pub(super) fn send_ended(&mut self) {
        self.send_armed = false;
        self.socket_full = false;
    }
}

/// A listener's multishot accept.
#[derive(Default)]
pub(crate) struct Accepting {
    armed: bool,
}

impl Accepting {
    /// The accept ended (its final completion).
    pub(super) fn ended(&mut self) {
        self.armed = false;
    }
}

/// The ring and what its operations point at. Field order is drop order: the ring goes before
/// the memory it may still read or write.
pub(crate) struct Ring {
    pub(super) ring: IoUring,
    wake_buf: Box<u64>,
    timer_spec: Box<types::Timespec>,
    /// SQEs that did not fit in the submission queue, in order.
    backlog: Vec<squeue::Entry>,
    /// The buffer ring's group, for receives.
    group: u16,
    /// The size of the buffer ring's buffers: a credit below it also caps each receive.
    buf_size: u32,
    /// Multishot receives take a byte limit (`sqe->optlen`, Linux 6.17+); cleared when the
    /// kernel refuses one (older kernels reject the field with `EINVAL`).
    pub(super) recv_limits: bool,
    /// Operations submitted whose final completion has not arrived.
    pub(super) ops: usize,
    pub(super) wake_armed: bool,
    timer_armed: bool,
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
            wake_buf: Box::new(0),
            timer_spec: Box::new(types::Timespec::from(TIMER_PERIOD)),
            backlog: Vec::new(),
            group,
            buf_size,
            recv_limits: true,
            ops: 0,
            wake_armed: false,
            timer_armed: false,
            withdrawn: false,
            later: Vec::new(),
            lone_turn: false,
        }
    }

    /// Drops the ring but leaks the memory its operations point at (operations are still in
    /// flight at the end).
    pub(super) fn leak_memory(self) {
        let Ring {
            ring,
            wake_buf,
            timer_spec,
            ..
        } = self;
        drop(ring);
        std::mem::forget(wake_buf);
        std::mem::forget(timer_spec);
    }

    /// Whether SQEs wait in the backlog.
    pub(super) fn backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Queues an SQE (into the backlog if the submission queue is full), counting it in flight.
    pub(super) fn push(&mut self, sqe: squeue::Entry) {
        self.ops += 1;
        if !self.backlog.is_empty() {
            self.backlog.push(sqe);
            return;
        }
        // SAFETY: every SQE built in this module points only at memory that stays alive and
        // unmoved until the final completion for that SQE is reaped, or is leaked in the
        // driver's teardown if it never arrives: a connection's outbox in the table (its boxed
        // msghdr, iovec array and chunks, heap memory that does not move with the table's slots,
        // changed only between sends), `wake_buf` and `timer_spec` (boxes owned here, dropped
        // after the ring). Cancels and timeouts removals point at nothing.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.backlog.push(sqe);
        }
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
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(types::Fd(fd), buf.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0));
        self.wake_armed = true;
        self.push(sqe);
    }

    /// The timer fired (its completion arrived).
    pub(super) fn timer_fired(&mut self) {
        self.timer_armed = false;
    }

    /// Withdraws the wake-up read and the timer: everything is closed and the loop ends once
    /// their final completions are in.
    pub(super) fn withdraw(&mut self) {
        self.withdrawn = true;
        if self.wake_armed {
            self.push(
                opcode::AsyncCancel::new(user_data(OP_WAKE, 0))
                    .build()
                    .user_data(user_data(OP_CANCEL, 0)),
            );
        }
        if self.timer_armed {
            self.push(
                opcode::TimeoutRemove::new(user_data(OP_TIMER, 0))
                    .build()
                    .user_data(user_data(OP_CANCEL, 0)),
            );
        }
    }

    /// Cancels every operation (the loop is ending).
    pub(super) fn cancel_all(&mut self) {
        self.push(
            opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(user_data(OP_CANCEL, 0)),
        );
    }

    /// Cancels the multishot receive of `key`, if armed and not cancelled yet. Completions
    /// already posted still arrive and go to the session, which holds them if it stopped;
    /// nothing in the socket is lost. Its final completion (`ECANCELED`) re-arms it if the
    /// connection still reads.
    fn cancel_recv(&mut self, key: ConnKey, state: &mut RecvSend) {
        if state.recv_armed && !state.recv_cancelled {
            state.recv_cancelled = true;
            self.push(
                opcode::AsyncCancel::new(user_data(OP_RECV, key.to_u64()))
                    .build()
                    .user_data(user_data(OP_CANCEL, key.to_u64())),
            );
        }
    }

    /// Arms the multishot receive of `key`, ending once it has delivered `credit` bytes (see
    /// `conns::credit`), where the kernel supports that.
    fn arm_recv(&mut self, key: ConnKey, fd: &OwnedFd, credit: u32, state: &mut RecvSend) {
        if state.recv_armed {
            return;
        }
        state.recv_armed = true;
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
        self.push(sqe.user_data(user_data(OP_RECV, key.to_u64())));
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

    fn narrow(&mut self, key: ConnKey, credit: u32, state: &mut RecvSend) {
        // A receive that may still deliver more than `credit` (or has no limit) is cancelled;
        // its final completion re-arms it within the credit.
        if self.recv_limits && state.recv_left > credit {
            self.cancel_recv(key, state);
        }
    }

    fn stop_reading(&mut self, key: ConnKey, state: &mut RecvSend) {
        self.cancel_recv(key, state);
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
        }
        .user_data(user_data(OP_SEND, key.to_u64()));
        state.send_armed = true;
        self.push(sqe);
        Sending::Pending
    }

    fn send_later(&mut self, key: ConnKey, _state: &mut RecvSend) {
        self.later.push(key);
    }

    fn busy(&self, state: &RecvSend) -> bool {
        state.recv_armed || state.send_armed
    }

    fn abort(&mut self, fd: &OwnedFd, _state: &mut RecvSend) {
        // SAFETY: no pointer; `fd` is a socket the table owns, open while borrowed. It ends the
        // multishot receive (EOF) and any pending send (EPIPE), so their final completions
        // arrive and the slot can go. A failure (not connected) leaves nothing to end.
        let _ = syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR));
    }

    fn release(&mut self, _key: ConnKey, _fd: &OwnedFd, _state: &mut RecvSend) {}

    fn listen(&mut self, slot: u32, fd: &OwnedFd, state: &mut Accepting) -> io::Result<()> {
        if !state.armed {
            state.armed = true;
            let sqe = opcode::AcceptMulti::new(types::Fd(fd.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(OP_ACCEPT, u64::from(slot)));
            self.push(sqe);
        }
        Ok(())
    }

    fn stop_listening(&mut self, slot: u32, state: &mut Accepting) {
        if state.armed {
            self.push(
                opcode::AsyncCancel::new(user_data(OP_ACCEPT, u64::from(slot)))
                    .build()
                    .user_data(user_data(OP_CANCEL, u64::from(slot))),
            );
        }
    }

    fn listener_busy(&self, state: &Accepting) -> bool {
        state.armed
    }

    fn release_listener(&mut self, _slot: u32, _fd: &OwnedFd, _state: &mut Accepting) {}

    fn wake_at(&mut self, at: Instant) {
        if self.timer_armed || self.withdrawn {
            return;
        }
        self.timer_armed = true;
        let wait = at
            .saturating_duration_since(Instant::now())
            .min(TIMER_PERIOD);
        *self.timer_spec = types::Timespec::from(wait);
        let sqe = opcode::Timeout::new(&*self.timer_spec)
            .build()
            .user_data(user_data(OP_TIMER, 0));
        self.push(sqe);
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
