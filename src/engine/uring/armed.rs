//! What a connection and a listener have armed on the ring: the backend state the table keeps
//! for each (`Io::Conn`, `Io::Listener`). The ring's side is in `ops.rs`.

use super::inflight::OpId;
use crate::engine::conns::credit::UNLIMITED;

/// A connection's operations in flight.
#[derive(Default)]
pub(crate) struct RecvSend {
    /// The multishot receive armed, until its final completion.
    pub(super) recv: Option<OpId>,
    pub(super) send_armed: bool,
    /// A direct send found the socket's buffer full: the next send goes through the ring (which
    /// waits for room) until one completes.
    pub(super) socket_full: bool,
    /// The multishot receive was cancelled by a pause and its final completion has not arrived:
    /// an `ECANCELED` then is ours, even if the session resumed meanwhile.
    pub(super) recv_cancelled: bool,
    /// What the receive armed may still deliver ([`UNLIMITED`] if it has no limit): its end
    /// with data means the credit ran out.
    pub(super) recv_left: u32,
}

impl RecvSend {
    /// The receive ended (its final completion); returns whether a pause had cancelled it.
    pub(super) fn recv_ended(&mut self) -> bool {
        self.recv = None;
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

/// A listener's accept: multishot, or one connection at a time on a socket every core shares.
#[derive(Default)]
pub(crate) struct Accepting {
    /// The accept armed, until its final completion.
    pub(super) armed: Option<OpId>,
    /// Whether the socket is a Unix domain socket, which every core accepts from (found out
    /// when first armed). The kernel hands a connection to the first accept waiting on the
    /// socket, and a multishot accept stays first, so one core would get every connection;
    /// a single accept re-armed after each connection goes to the back of the line instead,
    /// and connections go round the cores.
    pub(super) shared: Option<bool>,
}

impl Accepting {
    /// The accept ended (its final completion).
    pub(super) fn ended(&mut self) {
        self.armed = None;
    }
}
