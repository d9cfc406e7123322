//! `tokio-rustls`: `tokio-ct` over TLS. tokio-rustls streams on a current-thread runtime,
//! under the same loops as `tokio_codec.rs`: the server counts frames through a
//! `LengthDelimitedCodec` `FramedRead` of 64 KiB; the streaming client feeds ~64 KiB of frames
//! into a 64 KiB `FramedWrite`, then flushes (rustls seals what it is given in records of up
//! to 16 KiB). A connection's handshake runs in its task, on the runtime's thread.

use std::io;
use std::sync::Arc;

use ::tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tokio_codec::{self, Flavor};
use super::{client_streams, is_disconnect, listen, ClientArgs, ClientHandle};
use super::{ServerArgs, ServerHandle, StartError};
use crate::plan::Workload;
use crate::{stats, tls_pki};

/// Counts frames (no TLS workload echoes).
pub fn server(_args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let config = tls_pki::server_config().map_err(StartError::Failed)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = listen()?;
    listener.set_nonblocking(true)?;
    let rt = tokio_codec::runtime(Flavor::CurrentThread, 1)?;
    tokio_codec::run_detached("tokio-rustls-server", rt, async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return eprintln!("listener: {e}"),
        };
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            ::tokio::spawn(async move {
                if let Err(e) = serve(acceptor, stream).await {
                    if !is_disconnect(&e) && !tokio_codec::is_cut_frame(&e) {
                        eprintln!("connection: {e}");
                    }
                }
            });
        }
    })?;
    Ok(ServerHandle { addr, keep: None })
}

async fn serve(acceptor: TlsAcceptor, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    tokio_codec::serve_count(acceptor.accept(stream).await?).await
}

/// The streaming client of `tls`.
pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
    if args.workload != Workload::Tls {
        return Err(StartError::Failed(format!(
            "tokio-rustls has no {} client",
            args.workload.name()
        )));
    }
    let rt = tokio_codec::runtime(Flavor::CurrentThread, 1)?;
    let connector = TlsConnector::from(Arc::new(tls_pki::client_config()));
    let streams = client_streams(args)?;
    for s in &streams {
        s.set_nonblocking(true)?;
    }
    let size = args.size;
    tokio_codec::run_detached("tokio-rustls-client", rt, async move {
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| ::tokio::spawn(stream_conn(connector.clone(), s, size)))
            .collect();
        for task in tasks {
            match task.await {
                Ok(Err(e)) => stats::client_error(e),
                Err(e) => stats::client_error(e),
                Ok(Ok(())) => {}
            }
        }
    })?;
    Ok(ClientHandle { keep: None })
}

async fn stream_conn(
    connector: TlsConnector,
    stream: std::net::TcpStream,
    size: usize,
) -> io::Result<()> {
    let stream = TcpStream::from_std(stream)?;
    let tls = connector.connect(tls_pki::server_name(), stream).await?;
    tokio_codec::stream_conn(tls, size).await
}
