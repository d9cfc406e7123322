//! Whether a queue takes writes ([`Gate`]), and the changes its owner makes: a writer holds
//! writes while it reconnects, opens the queue again for a new connection, refuses writes once
//! it gives up, or closes it for good. The core moves it from `Open` when the connection ends
//! (`core_side.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::{QueueCore, SendQueue, CLOSED, OPEN, RECONNECTING, REFUSING};
use crate::engine::send::gate::Gate;
use crate::error::ConnError;

impl<C: QueueCore> SendQueue<C> {
    /// `Refusing` becomes `Reconnecting`: a connection is expected after all, so writes are taken
    /// again (and wait). Returns whether it was refusing.
    pub(crate) fn expect_reconnect(&self) -> bool {
        let mut ctl = self.lock();
        let ok = self
            .state
            .compare_exchange(REFUSING, RECONNECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok && ctl.error.is_none() {
            ctl.error = Some(Arc::new(ConnError::NotConnected));
        }
        self.notify(&mut ctl);
        ok
    }

    /// A queue that starts with no connection, one being expected (a background connect):
    /// `Open` becomes `Reconnecting`, with `err` as what to report until it connects.
    pub(crate) fn start_reconnecting(&self, err: Arc<ConnError>) {
        let mut ctl = self.lock();
        ctl.error = Some(err);
        let _ =
            self.state
                .compare_exchange(OPEN, RECONNECTING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether the queue takes writes now.
    pub(crate) fn gate(&self) -> Gate {
        match self.state.load(Ordering::Acquire) {
            OPEN => Gate::Open,
            CLOSED => Gate::Closed,
            RECONNECTING => Gate::Reconnecting,
            _ => Gate::Refusing(
                self.lock()
                    .error
                    .clone()
                    .unwrap_or_else(|| Arc::new(ConnError::NotConnected)),
            ),
        }
    }

    /// Waits until everything accepted so far was handed to the kernel (`Ok(true)`), or until
    /// `deadline` (`Ok(false)`). Errors with the gate when it refuses or is closed with bytes
    /// still queued.
    pub(crate) fn wait_drained(self: &Arc<Self>, deadline: Option<Instant>) -> Result<bool, Gate> {
        let mut ctl = self.lock();
        loop {
            if ctl.unsent == 0 {
                return Ok(true);
            }
            match self.state.load(Ordering::Acquire) {
                OPEN | RECONNECTING => {}
                _ => {
                    drop(ctl);
                    return Err(self.gate());
                }
            }
            if ctl.owner.is_idle() && ctl.queued > 0 {
                // Nobody is sending what is queued: send it from this thread (as
                // `BufWriter::flush` would) rather than wait for the core to be scheduled.
                // Whatever it cannot send stays for the core, which was told of it.
                let before = ctl.queued;
                ctl = self.send_direct(ctl);
                if ctl.queued < before {
                    continue;
                }
                if ctl.owner.needs_telling() {
                    // Left for the core: make sure it is told (the lock is let go meanwhile).
                    ctl = self.announce_keep(ctl);
                    continue;
                }
            }
            match self.wait(ctl, deadline) {
                Some(next) => ctl = next,
                None => return Ok(false),
            }
        }
    }

    /// A new connection is about to be attached: `Reconnecting` or `Refusing` becomes `Open`.
    pub(crate) fn reopen(&self) {
        let _ctl = self.lock();
        let _ =
            self.state
                .compare_exchange(RECONNECTING, OPEN, Ordering::AcqRel, Ordering::Acquire);
        let _ = self
            .state
            .compare_exchange(REFUSING, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// No connection is expected any more: refuse writes with `err`, and return everything
    /// queued.
    pub(crate) fn refuse(&self, err: Arc<ConnError>) -> BytesMut {
        let mut ctl = self.without_direct_send(self.lock());
        if self.state.load(Ordering::Acquire) != CLOSED {
            self.state.store(REFUSING, Ordering::Release);
            ctl.error = Some(err);
        }
        let rest = self.drain(&mut ctl);
        self.notify(&mut ctl);
        rest
    }

    /// [`SendQueue::close`], also saying whether the kernel has nothing of this queue's in
    /// flight now (nothing taken by the core and not yet sent): then closing the connection
    /// cannot hand anything back to it.
    pub(crate) fn close_idle(&self) -> (BytesMut, bool) {
        let mut ctl = self.without_direct_send(self.lock());
        self.state.store(CLOSED, Ordering::Release);
        let rest = self.drain(&mut ctl);
        let idle = ctl.unsent == 0 && ctl.owner.is_idle();
        self.notify(&mut ctl);
        (rest, idle)
    }

    /// Closes the queue for good and returns what was never handed to the kernel.
    pub(crate) fn close(&self) -> BytesMut {
        let mut ctl = self.without_direct_send(self.lock());
        self.state.store(CLOSED, Ordering::Release);
        let rest = self.drain(&mut ctl);
        self.notify(&mut ctl);
        rest
    }
}
