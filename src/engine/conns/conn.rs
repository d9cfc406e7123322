//! One connection's life in the table: received bytes to its session (pausing when the session
//! is full, resuming when it has room), sends from its queue, and closing, which waits until
//! the kernel has nothing left on the connection before the slot is freed, the unsent frames go
//! back to the queue and the session hears why.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::conns::credit::RecvCredit;
use crate::engine::conns::entry::{Entry, Opener};
use crate::engine::conns::io::{Io, Sending, MAX_SENDS_PER_CALL};
use crate::engine::conns::slab::ConnKey;
use crate::engine::conns::table::Conns;
use crate::engine::core::SendQueue;
use crate::engine::send::outbox::Outbox;
use crate::engine::session::Session;
use crate::error::{CloseReason, ConnError};

/// How long a connection that said goodbye (TLS `close_notify`) waits for its peer to close.
const LINGER: Duration = Duration::from_secs(2);

/// What a connection can do after a call: go on reading, wait for its session, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Open and reading.
    Read,
    /// Open, not reading until its session resumes it.
    Paused,
    /// Closing or gone.
    Closed,
}

impl<I: Io> Conns<I> {
    /// Adds a connected socket draining `sendq` into `session`, and starts sending what is
    /// queued (a writer's queue may hold frames from before a reconnect).
    pub(crate) fn insert(
        &mut self,
        fd: Arc<OwnedFd>,
        sendq: Arc<SendQueue>,
        session: Box<dyn Session>,
        opener: Opener,
        io: &mut I,
    ) -> ConnKey {
        let key = self.conns.insert(Entry {
            fd: fd.clone(),
            session: Some(session),
            sendq: sendq.clone(),
            out: Outbox::new(),
            opener,
            paused: false,
            credit: RecvCredit::default(),
            eof_pending: false,
            closing: None,
            close_when_flushed: false,
            said_goodbye: false,
            lingering: false,
            close_acks: Vec::new(),
            io: I::Conn::default(),
        });
        self.stats.connections += 1;
        let waiting = sendq.attach(key.to_u64(), fd);
        let opened = match self.conns.get_mut(key) {
            Some(c) => io.open(key, &c.fd, c.credit.bytes(None), &mut c.io),
            None => Ok(()),
        };
        match opened {
            Err(err) => self.close(key, io_error(err), io),
            // A writer's queue outlives its connections: a flush asked for while it was
            // detached went nowhere, so look now even if `attach` saw nothing.
            Ok(()) if waiting || opener == Opener::Writer => self.flush(key, io),
            Ok(()) => {}
        }
        let pending = self
            .conns
            .get(key)
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| s.has_pending());
        if pending {
            self.data(key, &[], io);
        }
        key
    }

    /// `bytes` arrived on `key`: they go to its session (also while paused: it holds what was
    /// in flight when reading stopped). Returns whether to go on reading.
    pub(crate) fn data(&mut self, key: ConnKey, bytes: &[u8], io: &mut I) -> Flow {
        let Some(c) = self.conns.get_mut(key) else {
            return Flow::Closed;
        };
        self.stats.recv_completions += 1;
        if c.closing.is_some() {
            return Flow::Closed;
        }
        self.stats.bytes_received += bytes.len() as u64;
        let Some(session) = c.session.as_mut() else {
            return Flow::Closed;
        };
        match session.on_data(bytes) {
            Ok(done) => {
                self.stats.messages_received += done.messages;
                if done.paused && !c.paused {
                    c.paused = true;
                    c.credit.reset();
                    io.stop_reading(key, &mut c.io);
                }
                if c.paused {
                    Flow::Paused
                } else {
                    Flow::Read
                }
            }
            Err(err) => {
                self.close(key, CloseReason::Error(Arc::new(err)), io);
                Flow::Closed
            }
        }
    }

    /// The peer closed its side of `key`: the session says whether that cut a message short.
    /// While paused this waits until the held-back bytes are delivered.
    pub(crate) fn eof(&mut self, key: ConnKey, io: &mut I) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        if c.paused {
            c.eof_pending = true;
            return;
        }
        let reason = end_of_stream(c.session.as_mut());
        self.close(key, reason, io);
    }

    /// Reading `key` failed.
    pub(crate) fn read_failed(&mut self, key: ConnKey, err: io::Error, io: &mut I) {
        self.close(key, io_error(err), io);
    }

    /// Whether `key` should be reading now (open and not paused): a backend re-arms a receive
    /// that ended only then.
    pub(crate) fn wants_read(&self, key: ConnKey) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| !c.paused && c.closing.is_none())
    }

    /// Whether `key` is open and paused (its session is full).
    pub(crate) fn is_paused(&self, key: ConnKey) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| c.paused && c.closing.is_none())
    }

    /// The session of `key` has room again: deliver what it held, then read again (or close, if
    /// the peer's EOF came while it was paused).
    pub(crate) fn resume(&mut self, key: ConnKey, io: &mut I) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !c.paused || c.closing.is_some() {
            return;
        }
        let Some(session) = c.session.as_mut() else {
            return;
        };
        let close = match session.resume() {
            Ok(done) => {
                self.stats.messages_received += done.messages;
                if done.paused {
                    return;
                }
                c.paused = false;
                c.eof_pending.then(|| end_of_stream(c.session.as_mut()))
            }
            Err(err) => Some(CloseReason::Error(Arc::new(err))),
        };
        match close {
            Some(reason) => self.close(key, reason, io),
            None => {
                let credit = credit_of(c);
                io.read(key, &c.fd, credit, &mut c.io)
            }
        }
    }

    /// How many bytes the kernel may hand `key` in its next receive (see [`super::credit`]).
    pub(crate) fn recv_credit(&self, key: ConnKey) -> u32 {
        self.conns.get(key).map_or(0, credit_of)
    }

    /// Brings every connection's receive in flight within its credit now (a listener's budget
    /// came under pressure).
    pub(crate) fn narrow_receives(&mut self, io: &mut I) {
        for key in self.conns.keys() {
            if let Some(c) = self.conns.get_mut(key) {
                if !c.paused && c.closing.is_none() {
                    let credit = credit_of(c);
                    io.narrow(key, credit, &mut c.io);
                }
            }
        }
    }

    /// A receive of `key` used all of its credit and the connection reads on: it may be handed
    /// more next time.
    pub(crate) fn credit_used_up(&mut self, key: ConnKey) {
        if let Some(c) = self.conns.get_mut(key) {
            c.credit.grow();
        }
    }

    /// Sends what is queued on `key`, unless a send is in flight or the socket is full; closes
    /// it once drained if a close was asked for.
    pub(crate) fn flush(&mut self, key: ConnKey, io: &mut I) {
        for _ in 0..MAX_SENDS_PER_CALL {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            if c.closing.is_some() || !io.can_send(&c.io) {
                return;
            }
            if c.out.is_empty() && !c.sendq.take(&mut c.out, &c.fd) {
                if !c.close_when_flushed || c.lingering {
                    return;
                }
                // A sealed connection's last words (TLS `close_notify`) go out before it closes.
                if c.said_goodbye {
                    // They are out: shut the sending side (a FIN follows them) and read on
                    // until the peer closes too, or `LINGER` passes. Closing now could leave
                    // what the peer sends meanwhile (a TLS 1.3 server's session tickets)
                    // unread, and a socket closed with unread bytes resets the connection,
                    // which can throw away what the peer had not read yet.
                    c.sendq.shut_write(&c.fd);
                    c.lingering = true;
                    let until = Instant::now() + LINGER;
                    self.lingering.push((key, until));
                    io.wake_at(until);
                    return;
                }
                c.said_goodbye = true;
                match c.sendq.goodbye(&c.fd) {
                    Some(chunk) => c.out.chunks_mut().push_back(chunk),
                    None => {
                        self.close(key, CloseReason::Local, io);
                        return;
                    }
                }
            }
            self.stats.sends += 1;
            match io.send(key, &c.fd, &mut c.out, &mut c.io) {
                Sending::Pending | Sending::Blocked => return,
                Sending::Sent(n) => self.retire(key, n),
                Sending::Failed(err) => {
                    self.close(key, io_error(err), io);
                    return;
                }
            }
        }
        // Bytes queued after the last take announced themselves, but a close waiting for the
        // drain would not be noticed: look again soon.
        if let Some(c) = self.conns.get_mut(key) {
            io.send_later(key, &mut c.io);
        }
    }

    /// A send of `key` submitted earlier ([`Sending::Pending`]) is over.
    pub(crate) fn sent(&mut self, key: ConnKey, result: io::Result<usize>, io: &mut I) {
        match result {
            Err(err) => self.close(key, io_error(err), io),
            Ok(n) => {
                self.retire(key, n);
                if matches!(self.conns.get(key), Some(c) if c.closing.is_some()) {
                    self.free_if_closed(key, io);
                } else {
                    self.flush(key, io);
                }
            }
        }
    }

    /// The kernel took `n` more bytes of `key`'s outbox: chunks it finished go back.
    fn retire(&mut self, key: ConnKey, n: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        self.stats.bytes_sent += n as u64;
        c.out.advance(n, &mut self.done);
        c.sendq.complete(&mut self.done, c.out.is_empty());
    }

    /// Closes `key` once everything queued is sent (`ack` hears when it is closed).
    pub(crate) fn close_when_flushed(&mut self, key: ConnKey, ack: Option<SyncSender<()>>) {
        if let Some(c) = self.conns.get_mut(key) {
            c.close_when_flushed = true;
            c.close_acks.extend(ack);
        }
    }

    /// Starts closing `key` (the first reason wins) and frees it once the kernel has no
    /// operation left on it.
    pub(crate) fn close(&mut self, key: ConnKey, reason: CloseReason, io: &mut I) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.closing.is_none() {
            if io.busy(&c.io) {
                io.abort(&c.fd, &mut c.io);
            }
            c.closing = Some(reason);
        }
        self.free_if_closed(key, io);
    }

    /// Frees `key` if it is closing and the kernel has nothing left on it: its socket closes,
    /// the frames the kernel did not take go back to its queue, its session hears why, and a
    /// closing listener may finish. A backend calls this after each final completion.
    pub(crate) fn free_if_closed(&mut self, key: ConnKey, io: &mut I) {
        let ready = matches!(
            self.conns.get(key),
            Some(c) if c.closing.is_some() && !io.busy(&c.io)
        );
        if !ready {
            return;
        }
        let Some(mut c) = self.conns.remove(key) else {
            return;
        };
        if c.lingering {
            self.lingering.retain(|l| l.0 != key);
        }
        io.release(key, &c.fd, &mut c.io);
        let reason = c.closing.take().unwrap_or(CloseReason::Local);
        let err = self.stats.count_close(&reason);
        let reconnectable = c.opener == Opener::Writer;
        c.sendq.detach(&mut c.out, err, reconnectable, Some(&c.fd));
        drop(c.fd);
        if let Some(session) = c.session.take() {
            session.on_close(&reason);
        }
        for ack in c.close_acks.drain(..) {
            let _ = ack.send(());
        }
        if let Opener::Listener(slot) = c.opener {
            self.conn_left(slot, io);
        }
    }

    /// Closes every connection `slot` accepted.
    pub(super) fn close_accepted_by(&mut self, slot: u32, io: &mut I) {
        let theirs: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.opener == Opener::Listener(slot))
            .map(|(key, _)| key)
            .collect();
        for key in theirs {
            self.close(key, CloseReason::Local, io);
        }
    }
}

/// The credit of `c`'s next receive: its own, capped by what its session asks for.
fn credit_of<X>(c: &Entry<X>) -> u32 {
    c.credit
        .bytes(c.session.as_ref().and_then(|s| s.recv_credit()))
}

fn io_error(err: io::Error) -> CloseReason {
    CloseReason::Error(Arc::new(ConnError::Io(err)))
}

/// The close reason of a stream that ended: an error if it cut a message short.
fn end_of_stream(session: Option<&mut Box<dyn Session>>) -> CloseReason {
    match session.map(|s| s.on_eof()) {
        Some(Err(err)) => CloseReason::Error(Arc::new(err)),
        _ => CloseReason::PeerClosed,
    }
}
