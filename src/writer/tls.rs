//! A TLS writer: its configuration setters, and each connection's handshake (on the thread
//! that dials), after which the connection's session opens records and its sealer seals what
//! the writer sends.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::engine::handle::{ConnInfo, Seal, Session};
use crate::error::DialError;
use crate::tls::handshake::{client, Established};
use crate::tls::session::{TlsSeal, TlsSession};
use crate::tls::{WriterTls, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::writer::config::WriterConfig;
use crate::writer::shared::WriterShared;

impl WriterConfig {
    /// Speak TLS with `config` (rustls; [`tls::client_config`](crate::tls::client_config)
    /// builds one from PEM files, with a client certificate for mutual TLS), checking the
    /// server's certificate against `server_name`. Each connection handshakes on the thread
    /// that dials it, within [`handshake_timeout`](WriterConfig::handshake_timeout); a server
    /// whose certificate is refused makes the writer give up at once (queued messages go to
    /// `on_failed` with the reason) rather than redial. See [`crate::tls`].
    pub fn tls(mut self, config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        let handshake_timeout = self
            .tls
            .as_ref()
            .map_or(DEFAULT_HANDSHAKE_TIMEOUT, |t| t.handshake_timeout);
        self.tls = Some(WriterTls {
            config,
            name: server_name,
            handshake_timeout,
        });
        self
    }

    /// How long a TLS handshake may take (default 10 s; it counts as a failed attempt after
    /// that). Only with [`tls`](WriterConfig::tls) (call it first).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        if let Some(t) = &mut self.tls {
            t.handshake_timeout = timeout;
        }
        self
    }
}

impl WriterShared {
    /// With TLS: the handshake on `fd`, whose result goes on `info`.
    pub(crate) fn handshake(
        &self,
        fd: &OwnedFd,
        info: &mut ConnInfo,
    ) -> Result<Option<Established<UnbufferedClientConnection>>, DialError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let done = client(fd, &tls.config, &tls.name, tls.handshake_timeout).map_err(|source| {
            DialError::Tls {
                addr: self.addr.clone(),
                source: Box::new(source),
            }
        })?;
        info.tls = Some(Arc::new(done.peer.clone()));
        Ok(Some(done))
    }
}

/// The TLS session around a connection's framed `session`, and its sealer.
pub(crate) fn wrap(
    tls: Established<UnbufferedClientConnection>,
    session: Box<dyn Session>,
) -> (Box<dyn Session>, Option<Box<dyn Seal>>) {
    let seal: Box<dyn Seal> = Box::new(TlsSeal(tls.shared.clone()));
    let session = Box::new(TlsSession::new(tls.shared, tls.leftover, session));
    (session, Some(seal))
}
