//! The TLS flags: `listen --tls-cert F --tls-key F [--tls-client-ca F]`, `send --tls-ca F
//! [--tls-server-name NAME] [--tls-cert F --tls-key F]` and `bench --tls` (a CA and a server
//! certificate made in memory). They exist in every build so that `--help` reads the same;
//! without the `tls` feature any of them is a usage error that names the feature.

use buffstreams::{ListenerConfig, WriterConfig};

use crate::{Failure, ListenTlsArgs, SendTlsArgs};

#[cfg(feature = "tls")]
pub use enabled::*;

#[cfg(not(feature = "tls"))]
pub use disabled::*;

/// The host part of a `HOST:PORT` address (`[::1]:5031` gives `::1`), or `None` for a Unix
/// socket address or one without a port.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn host_of(addr: &str) -> Option<&str> {
    if addr.starts_with("unix:") {
        return None;
    }
    let (host, _port) = addr.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None => host,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(feature = "tls")]
mod enabled {
    use std::sync::Arc;

    use buffstreams::tls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use buffstreams::tls::{self, ServerName};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    use super::*;

    /// `config` with `listen`'s TLS flags applied, and how the first line describes it
    /// (`None` without TLS).
    pub fn listen(
        args: &ListenTlsArgs,
        config: ListenerConfig,
    ) -> Result<(ListenerConfig, Option<&'static str>), Failure> {
        let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
            return Ok((config, None));
        };
        let server = tls::server_config(cert, key, args.tls_client_ca.as_ref())
            .map_err(|e| Failure::Run(e.to_string()))?;
        let what = match args.tls_client_ca {
            Some(_) => "mutual TLS",
            None => "TLS",
        };
        Ok((config.tls(server), Some(what)))
    }

    /// `config` with `send`'s TLS flags applied, for a writer dialing `addr`.
    pub fn send(
        args: &SendTlsArgs,
        addr: &str,
        config: WriterConfig,
    ) -> Result<WriterConfig, Failure> {
        let Some(ca) = &args.tls_ca else {
            return Ok(config);
        };
        let name = server_name(args.tls_server_name.as_deref(), addr)?;
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        let client = tls::client_config(ca, identity).map_err(|e| Failure::Run(e.to_string()))?;
        Ok(config.tls(client, name))
    }

    /// The name the server's certificate is checked against: `--tls-server-name`, else the
    /// host of `addr` (a DNS name or an IP address).
    fn server_name(given: Option<&str>, addr: &str) -> Result<ServerName<'static>, Failure> {
        let (name, from) = match given {
            Some(name) => (name, "--tls-server-name"),
            None => match host_of(addr) {
                Some(host) => (host, "the address"),
                None => {
                    return Err(Failure::Usage(format!(
                        "--tls-server-name is needed: {addr} has no host name to check the \
                         server's certificate against"
                    )))
                }
            },
        };
        ServerName::try_from(name.to_string()).map_err(|_| {
            Failure::Usage(format!(
                "{name:?} (from {from}) is not a DNS name or an IP address"
            ))
        })
    }

    /// A server and a client configuration for `bench --tls`: a CA and a server certificate
    /// for `localhost`, made in memory for this run, and the name to dial.
    fn certificates() -> Result<(Arc<ServerConfig>, Arc<ClientConfig>, ServerName<'static>), Failure>
    {
        let failed = |e: &dyn std::fmt::Display| {
            Failure::Run(format!("cannot make the bench's certificates: {e}"))
        };
        let ca_key = KeyPair::generate().map_err(|e| failed(&e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(&e))?;
        ca.distinguished_name
            .push(DnType::CommonName, "buffstreams bench CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca.self_signed(&ca_key).map_err(|e| failed(&e))?;

        let key = KeyPair::generate().map_err(|e| failed(&e))?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| failed(&e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .map_err(|e| failed(&e))?;

        let private = key
            .serialize_der()
            .try_into()
            .map_err(|e: &str| failed(&e))?;
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], private)
            .map_err(|e| failed(&e))?;
        let server = Arc::new(server);
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).map_err(|e| failed(&e))?;
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").map_err(|e| failed(&e))?;
        Ok((server, Arc::new(client), name))
    }

    /// `bench --tls`'s client side: the configuration and the name its writers dial with.
    pub struct BenchClient(Arc<ClientConfig>, ServerName<'static>);

    impl BenchClient {
        /// `config` over TLS.
        pub fn writer(&self, config: WriterConfig) -> WriterConfig {
            config.tls(self.0.clone(), self.1.clone())
        }
    }

    /// `bench`'s listener configuration, over TLS with `tls` (and then its client side).
    pub fn bench(
        tls: bool,
        listener: ListenerConfig,
    ) -> Result<(ListenerConfig, Option<BenchClient>), Failure> {
        if !tls {
            return Ok((listener, None));
        }
        let (server, client, name) = certificates()?;
        Ok((listener.tls(server), Some(BenchClient(client, name))))
    }
}

#[cfg(not(feature = "tls"))]
mod disabled {
    use super::*;

    fn not_built(flag: &str) -> Failure {
        Failure::Usage(format!(
            "{flag} needs TLS, and this buffstreams was built without it: install it with \
             `cargo install buffstreams --features tls`"
        ))
    }

    /// `config` unchanged; any TLS flag is refused.
    pub fn listen(
        args: &ListenTlsArgs,
        config: ListenerConfig,
    ) -> Result<(ListenerConfig, Option<&'static str>), Failure> {
        let given = [
            ("--tls-cert", args.tls_cert.is_some()),
            ("--tls-key", args.tls_key.is_some()),
            ("--tls-client-ca", args.tls_client_ca.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(not_built(flag)),
            None => Ok((config, None)),
        }
    }

    /// `config` unchanged; any TLS flag is refused.
    pub fn send(
        args: &SendTlsArgs,
        _addr: &str,
        config: WriterConfig,
    ) -> Result<WriterConfig, Failure> {
        let given = [
            ("--tls-ca", args.tls_ca.is_some()),
            ("--tls-server-name", args.tls_server_name.is_some()),
            ("--tls-cert", args.tls_cert.is_some()),
            ("--tls-key", args.tls_key.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(not_built(flag)),
            None => Ok(config),
        }
    }

    /// Never made: `bench --tls` is refused.
    pub enum BenchClient {}

    impl BenchClient {
        pub fn writer(&self, _config: WriterConfig) -> WriterConfig {
            match *self {}
        }
    }

    /// `listener` unchanged; `--tls` is refused.
    pub fn bench(
        tls: bool,
        listener: ListenerConfig,
    ) -> Result<(ListenerConfig, Option<BenchClient>), Failure> {
        match tls {
            true => Err(not_built("--tls")),
            false => Ok((listener, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:5031"), Some("127.0.0.1"));
        assert_eq!(host_of("example.com:443"), Some("example.com"));
        assert_eq!(host_of("[::1]:5031"), Some("::1"));
        assert_eq!(host_of("unix:/tmp/a.sock"), None);
        assert_eq!(host_of("unix:@name"), None);
        assert_eq!(host_of(":5031"), None);
        assert_eq!(host_of("nohost"), None);
    }
}
