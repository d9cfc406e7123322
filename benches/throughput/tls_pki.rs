//! The TLS workloads' certificate and rustls configurations, shared by every TLS contender,
//! the handshake client and the ceiling (built only with the `tls` feature).
//!
//! - **Protocol**: TLS 1.3 only, and AES-128-GCM (`TLS13_AES_128_GCM_SHA256`) the only
//!   cipher suite, so every contender seals with the cipher the ceiling measures
//!   (`tls_ceiling.rs`; rustls's default order would pick AES-256-GCM). Key exchange groups
//!   are the aws-lc-rs provider's defaults (X25519MLKEM768 first).
//! - **Certificate**: each server process makes its own at start, a self-signed ECDSA P-256
//!   certificate for `localhost` (rcgen); no key is written anywhere.
//! - **Clients** accept the server's certificate without checking it (`AnyServerCert`): they
//!   live in another process and have no CA to check it against. On a stream that costs
//!   nothing per message. In `tls-handshake` it is a choice: the figure is the server's
//!   handshake rate on one core, and checking a chain and the handshake signature would cost
//!   the one-core client more than signing costs the server, so the client, not the server,
//!   would set the rate. Resumption is off (`Resumption::disabled`): every handshake is full.

use std::sync::Arc;

use buffstreams::tls::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{self, cipher_suite};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// The aws-lc-rs provider with AES-128-GCM as its only cipher suite.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..aws_lc_rs::default_provider()
    })
}

/// A server configuration with a new self-signed certificate for `localhost`.
pub fn server_config() -> Result<ServerConfig, String> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
        .map_err(|e| format!("private key: {e}"))?;
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("server config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|e| format!("server config: {e}"))
}

/// A client configuration: no resumption, any server certificate accepted (see the module
/// docs).
pub fn client_config() -> ClientConfig {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the provider has a TLS 1.3 suite")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config
}

/// The name clients ask for (the servers' certificates are for it).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// Accepts any server certificate and handshake signature (see the module docs).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
