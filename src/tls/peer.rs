//! [`TlsPeer`]: what a finished handshake says about the other end, on
//! [`ConnInfo::tls`](crate::ConnInfo).

use rustls::pki_types::CertificateDer;

use crate::tls::records::Records;

/// What a TLS handshake established about the peer, fixed for the connection's life: a handler
/// (or a close hook) can authorise by it.
///
/// ```no_run
/// # use buffstreams::{Listener, ListenerConfig};
/// # fn config() -> std::sync::Arc<buffstreams::tls::rustls::ServerConfig> { unimplemented!() }
/// let listener = Listener::bind(ListenerConfig::new("0.0.0.0:5031", |msg, conn| {
///     // Under mutual TLS the client's verified chain is here, end-entity certificate first.
///     let trusted = conn.info().tls.as_ref().is_some_and(|tls| !tls.certificates.is_empty());
///     if !trusted {
///         return Err("no client certificate".into());
///     }
///     Ok(())
/// }).tls(config()))?;
/// # Ok::<(), buffstreams::ListenError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TlsPeer {
    /// The peer's certificate chain as it sent it (DER, end-entity certificate first), verified
    /// by the configuration's verifier; empty if the peer sent none (a client when client
    /// certificates are not asked for).
    pub certificates: Vec<CertificateDer<'static>>,
    /// The protocol version, e.g. `"TLSv1_3"`.
    pub protocol: String,
    /// The cipher suite, e.g. `"TLS13_AES_128_GCM_SHA256"`.
    pub cipher_suite: String,
    /// The application protocol agreed by ALPN, if any.
    pub alpn: Option<Vec<u8>>,
}

impl TlsPeer {
    /// What `conn`'s finished handshake says.
    pub(crate) fn of<C: Records>(conn: &C) -> TlsPeer {
        let common = conn.common();
        TlsPeer {
            certificates: common
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            protocol: common
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: common
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            alpn: common.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}
