//! A TLS connection once its handshake is done: [`TlsSession`] opens received records and hands
//! their plaintext to the framed session inside it; [`TlsSeal`] seals the engine's send memory
//! into records, on whichever thread sends it (see the engine's `Seal`). They share the rustls
//! connection under one lock, taken by the core while it opens records and by the sending thread
//! while it seals a chunk.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::engine::handle::{Delivered, Seal, Session};
use crate::error::{CloseReason, ConnError};
use crate::tls::error::TlsError;
use crate::tls::records::{self, Records, TlsState, MAX_RECORD};

/// The rustls connection of one TLS connection, shared by its session and its sealer.
pub(crate) type Shared<C> = Arc<Mutex<TlsState<C>>>;

fn lock<C>(shared: &Shared<C>) -> MutexGuard<'_, TlsState<C>> {
    // rustls keeps its state consistent across a panic in our callback (it is not inside a
    // rustls call then): the lock stays usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seals what the engine sends on one TLS connection.
pub(crate) struct TlsSeal<C>(pub(crate) Shared<C>);

impl<C: Records> Seal for TlsSeal<C> {
    fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), ConnError> {
        records::seal(&mut lock(&self.0), plain, wire).map_err(ConnError::Tls)
    }

    fn goodbye(&mut self, wire: &mut Vec<u8>) -> bool {
        records::close_notify(&mut lock(&self.0), wire)
    }
}

/// See the module docs. `inner` is the framed session (decoder, delivery, limits): the
/// partial-frame budget and the frame timeout apply to the plaintext as on a plain connection.
pub(crate) struct TlsSession<C> {
    shared: Shared<C>,
    /// Received bytes not yet opened: at most one record cut short (plus what one receive
    /// brought).
    incoming: Vec<u8>,
    inner: Box<dyn Session>,
    /// Records already opened during the handshake may wait inside rustls: look at once.
    fresh: bool,
}

impl<C: Records> TlsSession<C> {
    /// The session of a connection whose handshake `shared` finished; `leftover` is what the
    /// handshake read past its end.
    pub(crate) fn new(shared: Shared<C>, leftover: Vec<u8>, inner: Box<dyn Session>) -> Self {
        TlsSession {
            shared,
            incoming: leftover,
            inner,
            fresh: true,
        }
    }

    fn open(&mut self) -> Result<Delivered, ConnError> {
        let mut done = Delivered::default();
        let inner = &mut self.inner;
        let opened = records::open(&mut lock(&self.shared), &mut self.incoming, |plain| {
            let d = inner.on_data(plain)?;
            done.messages += d.messages;
            done.paused |= d.paused;
            Ok::<(), ConnError>(())
        })?;
        self.incoming.drain(..opened.consumed);
        if self.incoming.len() > 2 * MAX_RECORD {
            // rustls refuses an oversized record header before this; a bound all the same.
            return Err(ConnError::Tls(TlsError::Protocol(rustls::Error::General(
                "record larger than the TLS maximum".into(),
            ))));
        }
        Ok(done)
    }
}

impl<C: Records> Session for TlsSession<C> {
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError> {
        self.fresh = false;
        self.incoming.extend_from_slice(data);
        self.open()
    }

    fn has_pending(&self) -> bool {
        self.fresh
    }

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        self.inner.resume()
    }

    fn recv_credit(&self) -> Option<usize> {
        self.inner.recv_credit()
    }

    fn on_eof(&mut self) -> Result<(), ConnError> {
        let clean = lock(&self.shared).peer_closed;
        let cut_record = !self.incoming.is_empty();
        match self.inner.on_eof() {
            Ok(()) if !cut_record || clean => Ok(()),
            Err(err) if clean => Err(err),
            _ => Err(ConnError::Tls(TlsError::Truncated)),
        }
    }

    fn on_tick(&mut self, now: Instant) -> Option<CloseReason> {
        self.inner.on_tick(now)
    }

    fn on_close(self: Box<Self>, reason: &CloseReason) {
        self.inner.on_close(reason);
    }
}
