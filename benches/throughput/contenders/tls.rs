//! The TLS contenders, run only in the TLS workloads (`Workload::admits`) and only when built
//! with `--features tls` (otherwise every trial is a SKIP):
//!
//! - `buffstreams-tls`: `buffstreams.rs`'s io_uring server and streaming client (a
//!   `BufferedWriter` per connection), every `ListenerConfig` / `WriterConfig` given `tls`;
//! - `tokio-rustls` (`tokio_tls.rs`) and `std-rustls` (`std_tls.rs`);
//! - `aes128gcm-seal`, the ceiling (`tls_ceiling.rs`): its server process seals records in
//!   memory and its client does nothing.
//!
//! All use the configurations of `tls_pki.rs` (TLS 1.3, AES-128-GCM). In `tls-handshake` the
//! client is the common handshake client (`tls_handshake.rs`), whichever the server.

#[cfg(feature = "tls")]
mod imp {
    use std::sync::Arc;

    use super::super::{std_tls, tokio_tls};
    use super::super::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};
    use crate::buffstreams::{self, Backend};
    use crate::plan::Contender;
    use crate::{tls_ceiling, tls_pki};

    fn not_tls(contender: Contender) -> StartError {
        StartError::Failed(format!("{} is not a TLS contender", contender.name()))
    }

    pub fn server(contender: Contender, args: &ServerArgs) -> Result<ServerHandle, StartError> {
        match contender {
            Contender::BuffstreamsTls => {
                let config = Arc::new(tls_pki::server_config().map_err(StartError::Failed)?);
                buffstreams::server_with(Backend::Uring, args, move |cfg| cfg.tls(config))
            }
            Contender::TokioRustls => tokio_tls::server(args),
            Contender::StdRustls => std_tls::server(args),
            Contender::SealCeiling => tls_ceiling::server(args),
            other => Err(not_tls(other)),
        }
    }

    pub fn client(contender: Contender, args: &ClientArgs) -> Result<ClientHandle, StartError> {
        match contender {
            Contender::BuffstreamsTls => {
                let config = Arc::new(tls_pki::client_config());
                buffstreams::client_with(Backend::Uring, args, move |cfg| {
                    cfg.tls(Arc::clone(&config), tls_pki::server_name())
                })
            }
            Contender::TokioRustls => tokio_tls::client(args),
            Contender::StdRustls => std_tls::client(args),
            // The ceiling is measured in the server process.
            Contender::SealCeiling => Ok(ClientHandle { keep: None }),
            other => Err(not_tls(other)),
        }
    }
}

#[cfg(feature = "tls")]
pub use imp::{client, server};

#[cfg(not(feature = "tls"))]
mod unavailable {
    use super::super::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};
    use crate::plan::Contender;

    fn skip() -> StartError {
        StartError::Unavailable("built without --features tls".into())
    }

    pub fn server(_: Contender, _: &ServerArgs) -> Result<ServerHandle, StartError> {
        Err(skip())
    }

    pub fn client(_: Contender, _: &ClientArgs) -> Result<ClientHandle, StartError> {
        Err(skip())
    }
}

#[cfg(not(feature = "tls"))]
pub use unavailable::{client, server};
