//! Test certificates, made at test time (no private key is committed): a CA, a server
//! certificate for `localhost` and 127.0.0.1, a client certificate, and the bad ones (another
//! CA's, an expired one, one for another name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use buffstreams::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use buffstreams::tls::rustls::server::WebPkiClientVerifier;
use buffstreams::tls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).expect("key")
    }
}

/// A CA and what it signed.
pub struct Pki {
    pub ca: Leaf,
    pub server: Leaf,
    pub client: Leaf,
    /// Signed by the CA, for another name.
    pub wrong_name: Leaf,
    /// Signed by the CA, expired.
    pub expired: Leaf,
    /// Another CA, and a server and client certificate it signed.
    pub other_ca: Leaf,
    pub rogue_server: Leaf,
    pub rogue_client: Leaf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair, Leaf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("ca");
    let leaf = Leaf {
        cert: cert.der().clone(),
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    (cert, key, leaf)
}

fn leaf(
    names: &[&str],
    client: bool,
    expired: bool,
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![match client {
        true => ExtendedKeyUsagePurpose::ClientAuth,
        false => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer, issuer_key).expect("sign");
    Leaf {
        cert: cert.der().clone(),
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

impl Pki {
    pub fn new() -> Pki {
        let (ca_cert, ca_key, ca) = make_ca("buffstreams test CA");
        let (other_cert, other_key, other_ca) = make_ca("another CA");
        let server_names = ["localhost", "127.0.0.1"];
        Pki {
            server: leaf(&server_names, false, false, &ca_cert, &ca_key),
            client: leaf(&["client.test"], true, false, &ca_cert, &ca_key),
            wrong_name: leaf(&["elsewhere.test"], false, false, &ca_cert, &ca_key),
            expired: leaf(&server_names, false, true, &ca_cert, &ca_key),
            rogue_server: leaf(&server_names, false, false, &other_cert, &other_key),
            rogue_client: leaf(&["client.test"], true, false, &other_cert, &other_key),
            ca,
            other_ca,
        }
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert.clone()).expect("root");
        Arc::new(roots)
    }

    /// A server presenting `cert`; with `mtls`, client certificates from the CA are required.
    pub fn server_with(&self, cert: &Leaf, mtls: bool) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder();
        let builder = match mtls {
            true => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder(self.roots())
                    .build()
                    .expect("verifier"),
            ),
            false => builder.with_no_client_auth(),
        };
        Arc::new(
            builder
                .with_single_cert(vec![cert.cert.clone(), self.ca.cert.clone()], cert.key())
                .expect("server config"),
        )
    }

    pub fn server(&self, mtls: bool) -> Arc<ServerConfig> {
        self.server_with(&self.server, mtls)
    }

    /// A client trusting the CA, presenting `identity` if given.
    pub fn client_with(&self, identity: Option<&Leaf>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder().with_root_certificates(self.roots());
        Arc::new(match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert.clone()], id.key())
                .expect("client config"),
        })
    }

    pub fn client(&self, mtls: bool) -> Arc<ClientConfig> {
        self.client_with(mtls.then_some(&self.client))
    }

    /// Writes every certificate and key as PEM files into `dir`.
    pub fn write_pem(&self, dir: &Path) -> PemFiles {
        std::fs::create_dir_all(dir).expect("dir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        PemFiles {
            ca: write("ca.pem", &self.ca.cert_pem),
            server_cert: write(
                "server.pem",
                &format!("{}{}", self.server.cert_pem, self.ca.cert_pem),
            ),
            server_key: write("server.key", &self.server.key_pem),
            client_cert: write("client.pem", &self.client.cert_pem),
            client_key: write("client.key", &self.client.key_pem),
        }
    }
}

/// Paths of [`Pki::write_pem`]'s files.
pub struct PemFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}
