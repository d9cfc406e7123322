//! Loading certificates, keys and CA bundles from PEM files, and the common configurations
//! built from them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::tls::error::PemError;

fn malformed(path: &Path, err: impl std::fmt::Display) -> PemError {
    PemError::Malformed {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (a chain: end-entity certificate first), in order.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let path = path.as_ref();
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(path, e))?;
    if certs.is_empty() {
        return Err(PemError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, PemError> {
    let path = path.as_ref();
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::Empty {
            path: path.to_path_buf(),
            what: "private key",
        },
        e => malformed(path, e),
    })
}

/// A root store holding every certificate of a PEM CA bundle.
pub fn load_roots(path: impl AsRef<Path>) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(PemError::Config)?;
    }
    Ok(roots)
}

/// A server configuration from PEM files: the certificate chain and its key, and, for mutual
/// TLS, the CA bundle client certificates must chain to (clients without one are refused).
///
/// ```no_run
/// use buffstreams::{Listener, ListenerConfig};
/// let tls = buffstreams::tls::server_config("cert.pem", "key.pem", Some("clients-ca.pem"))?;
/// let listener = Listener::bind(ListenerConfig::new("0.0.0.0:5031", |_msg, _conn| Ok(())).tls(tls))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn server_config(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
    client_ca: Option<impl AsRef<Path>>,
) -> Result<Arc<ServerConfig>, PemError> {
    let chain = load_certs(cert)?;
    let key = load_private_key(key)?;
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(load_roots(ca)?))
                .build()
                .map_err(PemError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(PemError::Config)?;
    Ok(Arc::new(config))
}

/// A client configuration from PEM files: the CA bundle the server's certificate must chain
/// to and, for mutual TLS, this client's certificate chain and key.
///
/// ```no_run
/// use buffstreams::{Writer, WriterConfig};
/// let tls = buffstreams::tls::client_config("ca.pem", None::<(&str, &str)>)?;
/// let name = "server.example".try_into()?;
/// let writer = Writer::dial(WriterConfig::new("10.0.0.7:5031").tls(tls, name))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client_config(
    ca: impl AsRef<Path>,
    identity: Option<(impl AsRef<Path>, impl AsRef<Path>)>,
) -> Result<Arc<ClientConfig>, PemError> {
    let builder = ClientConfig::builder().with_root_certificates(load_roots(ca)?);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)
            .map_err(PemError::Config)?,
    };
    Ok(Arc::new(config))
}
