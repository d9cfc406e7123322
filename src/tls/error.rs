//! What can go wrong with TLS: on a connection ([`TlsError`], inside
//! [`ConnError::Tls`](crate::ConnError::Tls) and [`DialError::Tls`](crate::DialError::Tls)),
//! and loading certificates and keys ([`PemError`]).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a TLS handshake or a TLS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake failed: a bad or untrusted certificate, a name that does not match, no
    /// client certificate where one is required, no common protocol, bytes that are not TLS
    /// (a plaintext client), or an alert from the peer. rustls's error says which.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] rustls::Error),
    /// The handshake did not finish within the configured time.
    #[error("TLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer closed the connection before the handshake finished.
    #[error("the peer closed the connection during the TLS handshake")]
    HandshakeEof,
    /// The socket failed during the handshake.
    #[error("socket error during the TLS handshake: {0}")]
    HandshakeIo(#[source] io::Error),
    /// After the handshake: a record that does not decrypt or is too large, or an alert from the
    /// peer (rustls's error says which).
    #[error("TLS error: {0}")]
    Protocol(#[source] rustls::Error),
    /// The peer closed the connection without `close_notify` inside a record or a frame: what
    /// it sent last may have been cut off by an attacker.
    #[error("the connection ended inside a TLS record or a frame without close_notify")]
    Truncated,
    /// This side's record sequence numbers ran out (after 2^64 records, or the cipher's limit
    /// with key updates off).
    #[error("the TLS connection cannot encrypt any more records")]
    Exhausted,
    /// The connection can no longer send (this side already sent `close_notify`).
    #[error("the TLS connection no longer sends")]
    NotWritable,
}

impl TlsError {
    /// Whether trying again cannot help: the peer's certificate or identity was refused, or
    /// the peer refused ours. A writer gives up at once on such a failure (its messages go to
    /// `on_failed`) instead of redialing under its retry policy.
    pub fn is_permanent(&self) -> bool {
        match self {
            TlsError::Handshake(e) => matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(
                        rustls::AlertDescription::BadCertificate
                            | rustls::AlertDescription::UnknownCA
                            | rustls::AlertDescription::CertificateRequired
                            | rustls::AlertDescription::CertificateExpired
                            | rustls::AlertDescription::CertificateUnknown
                            | rustls::AlertDescription::AccessDenied
                            | rustls::AlertDescription::UnsupportedCertificate
                    )
            ),
            _ => false,
        }
    }
}

/// Why loading a certificate, a key or a CA bundle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{path} is not valid PEM: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file holds no item of the kind asked for.
    #[error("{path} holds no {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// rustls refused the certificates or key (a key that does not match the certificate, an
    /// unsupported key type, a CA certificate it cannot parse).
    #[error("TLS configuration refused: {0}")]
    Config(#[source] rustls::Error),
    /// The client certificate verifier could not be built from the CA bundle.
    #[error("client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}
