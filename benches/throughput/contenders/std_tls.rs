//! `std-rustls`: `std` over TLS. Blocking `std::net`, a thread per connection, each side a
//! `rustls::StreamOwned` under `std_net.rs`'s loops: the server reads frames through a 64 KiB
//! `BufReader` (`std_net::read_frame`), the client writes them through a 64 KiB `BufWriter`
//! (`std_net::stream_conn`), so rustls seals each ~64 KiB flush in records of up to 16 KiB.
//! A connection's handshake runs on its first read or write, on its own thread.

use std::io::{self, BufReader};
use std::net::TcpStream;
use std::sync::Arc;

use buffstreams::tls::rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::{connect_all, is_disconnect, listen, spawn, std_net, ClientArgs, ClientHandle};
use super::{ServerArgs, ServerHandle, StartError};
use crate::plan::Workload;
use crate::wire::{BUF, HEADER};
use crate::{stats, tls_pki};

/// Counts frames (no TLS workload echoes).
pub fn server(_args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let config = Arc::new(tls_pki::server_config().map_err(StartError::Failed)?);
    let (listener, addr) = listen()?;
    spawn("std-rustls-accept", move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let config = Arc::clone(&config);
            let spawned = spawn("std-rustls-conn", move || {
                if let Err(e) = serve(stream, config) {
                    if !is_disconnect(&e) {
                        eprintln!("connection: {e}");
                    }
                }
            });
            if let Err(e) = spawned {
                eprintln!("spawn: {e}");
            }
        }
    })?;
    Ok(ServerHandle { addr, keep: None })
}

fn serve(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut reader = BufReader::with_capacity(BUF, StreamOwned::new(conn, stream));
    let (mut header, mut payload) = ([0u8; HEADER], Vec::new());
    while let Some(len) = std_net::read_frame(&mut reader, &mut header, &mut payload)? {
        stats::count(1, len as u64);
    }
    Ok(())
}

/// The streaming client of `tls`.
pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
    if args.workload != Workload::Tls {
        return Err(StartError::Failed(format!(
            "std-rustls has no {} client",
            args.workload.name()
        )));
    }
    let config = Arc::new(tls_pki::client_config());
    for stream in connect_all(args.addr, args.conns)? {
        let conn = ClientConnection::new(Arc::clone(&config), tls_pki::server_name())
            .map_err(|e| StartError::Failed(e.to_string()))?;
        let size = args.size;
        spawn("std-rustls-stream", move || {
            if let Err(e) = std_net::stream_conn(StreamOwned::new(conn, stream), size) {
                stats::client_error(e);
            }
        })?;
    }
    Ok(ClientHandle { keep: None })
}
