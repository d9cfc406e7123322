//! The TLS settings a listener and a writer keep (set through `ListenerConfig::tls` and
//! `WriterConfig::tls`).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

/// The default [`handshake_timeout`](crate::ListenerConfig::handshake_timeout): 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`max_handshakes`](crate::ListenerConfig::max_handshakes) in progress per
/// listener: 1024.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// The default [`handshake_nice`](crate::ListenerConfig::handshake_nice): 10.
pub const DEFAULT_HANDSHAKE_NICE: i32 = 10;

/// A listener's TLS.
#[derive(Clone)]
pub(crate) struct ListenerTls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) handshake_nice: i32,
}

/// A writer's TLS.
#[derive(Clone)]
pub(crate) struct WriterTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
    pub(crate) handshake_timeout: Duration,
}
