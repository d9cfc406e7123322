//! A sealed queue's chunks (a TLS connection's): each is sealed by the [`Seal`] of the
//! connection it is about to be sent on, by the thread that sends it (the core, or a producer
//! in a direct send), after the queue's lock is let go, so that the crypto work of a writer
//! that sends from its own thread stays on that thread.
//!
//! The sealer belongs to one socket. A chunk is sealed only for the socket it is sent on: a
//! producer whose connection was replaced meanwhile seals nothing (the new connection's
//! record numbers must start with the first chunk sent on it), and its send then fails on the
//! old socket. If a chunk cannot be sealed, the socket is shut down before anything unsealed
//! could reach it: its sends fail, the connection closes, and the chunks go back to the queue,
//! to be sealed anew for the next connection or handed back.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, MutexGuard};

use super::owner::Take;
use super::{QueueCore, Sealer, SendQueue};
use crate::engine::send::chunk::Chunk;
use crate::engine::send::traits::Seal;

impl<C: QueueCore> SendQueue<C> {
    fn sealer(&self) -> MutexGuard<'_, Sealer> {
        // Sealing changes nothing of the queue's: a panic inside it leaves the lock usable.
        self.sealer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether every byte of this queue is sealed before it is sent.
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// The connection on `fd` is about to be attached: `seal` seals what is sent on it.
    pub(crate) fn set_sealer(&self, fd: Arc<OwnedFd>, seal: Box<dyn Seal>) {
        *self.sealer() = Some((fd, seal));
    }

    /// The connection on `fd` is gone: its sealer goes with it (unless another took its place).
    pub(super) fn drop_sealer(&self, fd: Option<&Arc<OwnedFd>>) {
        let mut sealer = self.sealer();
        let same = match (sealer.as_ref(), fd) {
            (Some((now, _)), Some(fd)) => Arc::ptr_eq(now, fd),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if same {
            *sealer = None;
        }
    }

    /// Core: a clean close of the connection on `fd`, everything sent: a chunk holding its
    /// sealer's last words, sealed, for the core to send (`None` on a queue that is not
    /// sealed, if there are none, or while a producer is sending). The core owns the sends
    /// until this chunk's send completes (`complete`).
    pub(crate) fn goodbye(&self, fd: &Arc<OwnedFd>) -> Option<Chunk> {
        if !self.sealed {
            return None;
        }
        {
            let mut ctl = self.lock();
            if ctl.owner.core_looks() == Take::Wait {
                return None;
            }
            ctl.owner.core_took(true);
        }
        let mut sealer = self.sealer();
        let (own, seal) = sealer.as_mut()?;
        if !Arc::ptr_eq(own, fd) {
            return None;
        }
        let mut chunk = self.core.pool().get(0);
        let said = chunk.seal(|_, wire| match seal.goodbye(wire) {
            true => Ok(()),
            false => Err(()),
        });
        match said {
            Ok(()) => Some(chunk),
            Err(()) => {
                self.core.pool().put(chunk);
                None
            }
        }
    }

    /// Core: the connection on `fd` said goodbye: its sending side is shut (the kernel sends
    /// a FIN after the last bytes), while it goes on reading until the peer closes too.
    pub(crate) fn shut_write(&self, fd: &OwnedFd) {
        // SAFETY: `fd` is an open socket borrowed for the call; shutdown changes only the
        // connection's state.
        let _ = syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR));
    }

    /// Seals, in order, the chunks of `chunks` not sealed yet, for a send on `fd`; nothing to
    /// do on a queue that is not sealed. `false` if one could not be: `fd` is then shut down,
    /// so that nothing unsealed is ever sent on it.
    pub(super) fn seal_for(&self, chunks: &mut VecDeque<Chunk>, fd: &Arc<OwnedFd>) -> bool {
        if !self.sealed {
            return true;
        }
        let mut sealer = self.sealer();
        let ok = match sealer.as_mut() {
            Some((own, seal)) if Arc::ptr_eq(own, fd) => chunks
                .iter_mut()
                .filter(|c| !c.is_sealed() && !c.unsent().is_empty())
                .try_for_each(|c| c.seal(|plain, wire| seal.seal(plain, wire)))
                .map_err(|err| {
                    tracing::warn!(%err, "sealing outgoing bytes failed; closing the connection");
                })
                .is_ok(),
            _ => false,
        };
        drop(sealer);
        if !ok {
            // SAFETY: `fd` is an open socket, kept alive by the caller's reference; shutdown
            // only changes the connection's state (the descriptor stays open and owned).
            let _ = syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR));
        }
        ok
    }
}
