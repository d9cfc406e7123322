//! TLS and mutual TLS (the `tls` feature), through rustls 0.23 with the aws-lc-rs provider.
//!
//! Give a listener a [`rustls::ServerConfig`] with
//! [`ListenerConfig::tls`](crate::ListenerConfig::tls) and a writer a [`rustls::ClientConfig`]
//! and the server's name with [`WriterConfig::tls`](crate::WriterConfig::tls); everything else
//! (framings, replies, channels, reconnects, the [`Manager`](crate::Manager), both backends)
//! works as without TLS. [`server_config`] and [`client_config`] build the common
//! configurations from PEM files.
//!
//! - **Handshakes** never run on a core. A writer's runs on the thread that dials. A listener's
//!   run on its handshake thread, at most
//!   [`max_handshakes`](crate::ListenerConfig::max_handshakes) at a time (more are closed at
//!   once) and each within [`handshake_timeout`](crate::ListenerConfig::handshake_timeout)
//!   (10 s by default). A finished connection then goes to the core that accepted it.
//! - **Sending**: frames are written into send memory as on a plain connection, and each 16 KiB
//!   chunk is sealed into one record by the thread that sends it: a `BufferedWriter` flushing
//!   from its own thread encrypts there, not on the core. A chunk counts as sent only once its
//!   whole record was taken by the kernel, so after a reconnect (a new TLS session) the frames
//!   of a record the peer may not have received whole are sealed again and re-sent, never
//!   duplicated inside a connection and never lost silently.
//! - **Receiving**: records are opened on the core and their plaintext goes to the frame decoder
//!   with the same limits (partial-frame budget, frame and idle timeouts) as on a plain
//!   connection.
//! - **Identity**: [`ConnInfo::tls`](crate::ConnInfo) holds the [`TlsPeer`]: the peer's verified
//!   certificate chain under mutual TLS (and the server's, on a writer), the protocol and the
//!   cipher suite.
//! - **Errors**: a bad handshake, a bad record, an alert or a truncation closes that one
//!   connection with [`ConnError::Tls`](crate::ConnError::Tls); a writer whose server is
//!   refused (an untrusted, expired or wrong-name certificate) gives up at once and hands its
//!   messages to `on_failed` with the reason.
//!
//! kTLS is not used: this crate's test machines have no kernel `tls` module
//! ([`probe`](crate::probe) says whether a kernel has it).

mod config;
mod error;
pub(crate) mod handshake;
mod peer;
mod pem;
pub(crate) mod records;
pub(crate) mod server;
pub(crate) mod session;

pub(crate) use config::{ListenerTls, WriterTls};
pub use config::{DEFAULT_HANDSHAKE_NICE, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HANDSHAKES};
pub use error::{PemError, TlsError};
pub use peer::TlsPeer;
pub use pem::{client_config, load_certs, load_private_key, load_roots, server_config};
/// The rustls this crate is built with, for its configuration types.
pub use rustls;
/// A server's name, as a writer checks it against the server's certificate.
pub use rustls::pki_types::ServerName;
