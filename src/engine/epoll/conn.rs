//! One connection on the epoll core: receive into the core's buffer, coalesced nonblocking
//! sends that resume on the writable edge, pause/resume, and closing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::engine::epoll::driver::Core;
use crate::engine::epoll::sys;
use crate::engine::send::outbox::Outbox;
use crate::engine::send::SendQueue;
use crate::engine::session::Session;
use crate::error::{CloseReason, ConnError};

/// Reads per connection per turn before it yields to the others (then it goes on the ready
/// list and is served next turn).
const MAX_READS_PER_TURN: u32 = 16;
/// Full sends per connection per call, for the same reason.
const MAX_SENDS_PER_TURN: u32 = 16;

pub(super) struct ConnSlot {
    /// Shared with the send queue while attached (for producers' direct sends).
    pub(super) fd: Arc<OwnedFd>,
    registered: bool,
    pub(super) session: Box<dyn Session>,
    pub(super) sendq: Arc<SendQueue>,
    /// The chunks being sent (what the kernel has not taken yet).
    out: Outbox,
    /// The kernel's send buffer is full: the rest goes out on the writable edge.
    pub(super) write_blocked: bool,
    /// The accepting listener's slot (`None` for a writer's connection).
    pub(super) listener: Option<u32>,
    reconnectable: bool,
    /// The session's consumer is full: nothing is read until it resumes.
    paused: bool,
    /// The peer half-closed or the socket has an error: read until EOF or the error even
    /// after a short read.
    pub(super) read_closed: bool,
    /// On the ready list.
    pub(super) queued: bool,
    /// What to do when served from the ready list.
    pub(super) want_read: bool,
    pub(super) want_send: bool,
    pub(super) close_when_flushed: bool,
    pub(super) close_acks: Vec<SyncSender<()>>,
}

impl Core {
    /// Takes ownership of a connected socket: attaches its queue, registers it (readable and
    /// writable, edge-triggered: an already readable socket reports at once) and starts sending
    /// what is queued (for a writer's connection, always looks: see below).
    pub(super) fn insert_conn(
        &mut self,
        fd: OwnedFd,
        sendq: Arc<SendQueue>,
        session: Box<dyn Session>,
        listener: Option<u32>,
        reconnectable: bool,
    ) {
        let slot = match self.free_conns.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        let fd = Arc::new(fd);
        let waiting = sendq.attach(slot, fd.clone());
        let registered = socket2::SockRef::from(&fd)
            .set_nonblocking(true)
            .and_then(|()| {
                self.poll.registry().register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(slot as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
        self.conns[slot as usize] = Some(ConnSlot {
            fd,
            registered: registered.is_ok(),
            session,
            sendq,
            out: Outbox::new(),
            write_blocked: false,
            listener,
            reconnectable,
            paused: false,
            read_closed: false,
            queued: false,
            want_read: false,
            want_send: false,
            close_when_flushed: false,
            close_acks: Vec::new(),
        });
        self.local.connections += 1;
        match registered {
            Err(err) => self.close_conn(slot, CloseReason::Error(Arc::new(ConnError::Io(err)))),
            // A writer's queue outlives its connections: a Flush sent while it was detached was
            // dropped, and it stays disarmed until the core takes from it, so take now even if
            // `attach` saw nothing (a write may land just after it).
            Ok(()) if waiting || reconnectable => self.start_send(slot),
            Ok(()) => {}
        }
    }

    /// Reads until the socket is drained (a short read, `EAGAIN`), the session pauses, or the
    /// per-turn cap (then the rest waits on the ready list).
    pub(super) fn read_pass(&mut self, slot: u32) {
        let mut reads = 0;
        loop {
            let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
                return;
            };
            if c.paused {
                return;
            }
            if reads == MAX_READS_PER_TURN {
                c.want_read = true;
                self.schedule(slot);
                return;
            }
            reads += 1;
            let close = match sys::recv(c.fd.as_fd(), &mut self.buf) {
                Ok(0) => Some(match c.session.on_eof() {
                    Ok(()) => CloseReason::PeerClosed,
                    Err(err) => CloseReason::Error(Arc::new(err)),
                }),
                Ok(n) => {
                    self.local.recv_completions += 1;
                    self.local.bytes_received += n as u64;
                    match c.session.on_data(&self.buf[..n]) {
                        Ok(done) => {
                            self.local.messages_received += done.messages;
                            if done.paused {
                                c.paused = true;
                                return;
                            }
                            if n < self.buf.len() && !c.read_closed {
                                // A short read took everything there was; data arriving
                                // after it raises a new edge.
                                return;
                            }
                            None
                        }
                        Err(err) => Some(CloseReason::Error(Arc::new(err))),
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => None,
                Err(err) => Some(CloseReason::Error(Arc::new(ConnError::Io(err)))),
            };
            if let Some(reason) = close {
                self.close_conn(slot, reason);
                return;
            }
        }
    }

    /// Sends what is queued on `slot` until the queue is empty, the kernel's buffer is full (the
    /// rest goes on the writable edge), or the per-turn cap. Closes the connection once drained
    /// if a close was asked for.
    pub(super) fn start_send(&mut self, slot: u32) {
        for _ in 0..MAX_SENDS_PER_TURN {
            let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
                return;
            };
            if c.write_blocked {
                return;
            }
            if c.out.is_empty() && !c.sendq.take(&mut c.out) {
                if c.close_when_flushed {
                    self.close_conn(slot, CloseReason::Local);
                }
                return;
            }
            let total = c.out.unsent_len();
            self.local.sends += 1;
            match sys::sendmsg(c.fd.as_fd(), &mut c.out) {
                Ok(n) => {
                    self.local.bytes_sent += n as u64;
                    c.out.advance(n, &mut self.done);
                    c.sendq.complete(&mut self.done, c.out.is_empty());
                    if n < total {
                        // A short send means the kernel's buffer is full (it set SOCK_NOSPACE,
                        // so a writable edge follows when room frees up).
                        c.write_blocked = true;
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    c.write_blocked = true;
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.close_conn(slot, CloseReason::Error(Arc::new(ConnError::Io(err))));
                    return;
                }
            }
        }
        // Bytes queued after the last take announced themselves with a Flush command, but a
        // close waiting for the drain would not be noticed: look again next turn.
        if let Some(Some(c)) = self.conns.get_mut(slot as usize) {
            c.want_send = true;
            self.schedule(slot);
        }
    }

    /// The session's consumer has room: deliver what it held, then read again (which also
    /// finds an EOF that arrived while paused).
    pub(super) fn resume_conn(&mut self, slot: u32) {
        let Some(Some(c)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !c.paused {
            return;
        }
        match c.session.resume() {
            Ok(done) => {
                self.local.messages_received += done.messages;
                if done.paused {
                    return;
                }
                c.paused = false;
                c.want_read = true;
                self.schedule(slot);
            }
            Err(err) => self.close_conn(slot, CloseReason::Error(Arc::new(err))),
        }
    }

    /// Closes `slot` now: hands the unsent part of the buffer in flight back to the queue,
    /// deregisters and closes the socket, tells the session, answers close acks, and lets a
    /// closing listener finish.
    pub(super) fn close_conn(&mut self, slot: u32, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.released.push(slot);
        if c.queued {
            self.ready.retain(|&s| s != slot);
        }
        let err = self.local.count_close(&reason);
        let ConnSlot {
            fd,
            registered,
            session,
            sendq,
            mut out,
            listener,
            reconnectable,
            close_acks,
            ..
        } = c;
        sendq.detach(&mut out, err, reconnectable);
        if registered {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        drop(fd);
        session.on_close(&reason);
        for ack in close_acks {
            let _ = ack.send(());
        }
        if let Some(l) = listener {
            if let Some(Some(listener)) = self.listeners.get_mut(l as usize) {
                listener.conns = listener.conns.saturating_sub(1);
            }
            self.maybe_finish_listener(l);
        }
    }
}
