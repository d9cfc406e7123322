//! The common client of `tls-handshake`: blocking std + rustls, `conns` worker threads (all on
//! the client's CPU), each one connection at a time: connect, a full TLS 1.3 handshake
//! (resumption is off, `tls_pki::client_config`), one `size`-byte frame, close_notify,
//! half-close, wait for the server to close. The server counts the frame, which it can read
//! only once its side of the handshake is done, so its count is of completed handshakes.
//! Waiting for the server's close keeps at most `conns` connections in flight (see
//! `std_net::churn`). The first connection of each run says on stderr what was negotiated.
//!
//! The client does not check the server's certificate (see `tls_pki.rs`): the figure is the
//! server's.

#[cfg(feature = "tls")]
mod imp {
    use std::io::{self, Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::sync::{Arc, Once};

    use buffstreams::tls::rustls::{ClientConfig, ClientConnection};

    use crate::contenders::{is_disconnect, spawn, ClientHandle, StartError};
    use crate::{stats, tls_pki, wire};

    pub fn start(
        addr: SocketAddr,
        size: usize,
        workers: usize,
    ) -> Result<ClientHandle, StartError> {
        let config = Arc::new(tls_pki::client_config());
        let frame = Arc::new(wire::frame(size));
        let told = Arc::new(Once::new());
        for _ in 0..workers {
            let (config, frame, told) = (config.clone(), frame.clone(), told.clone());
            spawn("tls-handshaker", move || loop {
                if let Err(e) = handshake(addr, &config, &frame, &told) {
                    stats::client_error(e);
                    return;
                }
            })?;
        }
        Ok(ClientHandle { keep: None })
    }

    fn handshake(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        frame: &[u8],
        told: &Once,
    ) -> io::Result<()> {
        let mut sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        let mut conn = ClientConnection::new(Arc::clone(config), tls_pki::server_name())
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        told.call_once(|| {
            let version = conn.protocol_version().map(|v| format!("{v:?}"));
            let suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            let group = conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()));
            let [version, suite, group] = [version, suite, group].map(Option::unwrap_or_default);
            eprintln!("handshakes negotiate {version}, {suite}, key exchange {group}");
        });
        conn.writer().write_all(frame)?;
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        sock.shutdown(Shutdown::Write)?;
        // Until the server closes; what it sends (session tickets, its close_notify) is dropped.
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(feature = "tls")]
pub use imp::start;

#[cfg(not(feature = "tls"))]
pub fn start(
    _: std::net::SocketAddr,
    _: usize,
    _: usize,
) -> Result<crate::contenders::ClientHandle, crate::contenders::StartError> {
    Err(crate::contenders::StartError::Unavailable(
        "built without --features tls".into(),
    ))
}
