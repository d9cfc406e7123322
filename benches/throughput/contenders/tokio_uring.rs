//! `tokio-uring-adapter`: this crate's `tokio-uring` feature, `FramedStream` over a
//! `tokio_uring` TCP stream (u32 big-endian framing), one task per connection on one
//! `tokio_uring` thread. Servers count frames (or echo them, flushing once no further request
//! is buffered); streaming clients feed ~64 KiB of frames, then flush. Built only with
//! `--features tokio-uring` (otherwise every trial is a SKIP).

#[cfg(feature = "tokio-uring")]
mod imp {
    use std::io;
    use std::time::Instant;

    use buffstreams::frame::Codec;
    use buffstreams::tokio_uring::{FramedError, FramedStream};
    use buffstreams::Framing;

    use super::super::{client_streams, listen, spawn, ClientArgs, ClientHandle};
    use super::super::{ServerArgs, ServerHandle, StartError};
    use crate::plan::Workload;
    use crate::stats;
    use crate::wire::{self, BUF, HEADER, MAX_FRAME};

    fn codec() -> Codec {
        Codec::new(Framing::U32Be, MAX_FRAME).expect("a u32 header holds MAX_FRAME")
    }

    /// Whether an error is the bench tearing connections down.
    fn is_teardown(e: &FramedError) -> bool {
        match e {
            FramedError::Io(e) => super::super::is_disconnect(e),
            FramedError::Frame(buffstreams::FrameError::Truncated { .. }) => true,
            _ => false,
        }
    }

    fn report(result: Result<(), FramedError>, client: bool) {
        match result {
            Err(e) if !is_teardown(&e) && client => {
                stats::client_error(io::Error::other(e.to_string()))
            }
            Err(e) if !is_teardown(&e) => eprintln!("connection: {e}"),
            _ => {}
        }
    }

    pub fn server(args: &ServerArgs) -> Result<ServerHandle, StartError> {
        let (listener, addr) = listen()?;
        let echo = args.echo;
        spawn("tokio-uring-server", move || {
            tokio_uring::start(async move {
                let listener = tokio_uring::net::TcpListener::from_std(listener);
                loop {
                    let stream = match listener.accept().await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            eprintln!("accept: {e}");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    tokio_uring::spawn(async move {
                        let framed = FramedStream::new(stream, codec());
                        report(serve(framed, echo).await, false);
                    });
                }
            })
        })?;
        Ok(ServerHandle { addr, keep: None })
    }

    async fn serve(mut framed: FramedStream, echo: bool) -> Result<(), FramedError> {
        while let Some(msg) = framed.read_message().await? {
            stats::count(1, msg.len() as u64);
            if echo {
                // One request at a time per connection in ping-pong: answer at once.
                framed.write_message(&msg).await?;
            }
        }
        Ok(())
    }

    pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
        let (workload, size, addr) = (args.workload, args.size, args.addr);
        let streams = client_streams(args)?;
        let workers = args.conns;
        spawn("tokio-uring-client", move || {
            tokio_uring::start(async move {
                let mut tasks = Vec::new();
                for _ in 0..if workload == Workload::Churn {
                    workers
                } else {
                    0
                } {
                    tasks.push(tokio_uring::spawn(churn(addr, size)));
                }
                for s in streams {
                    let framed =
                        FramedStream::new(tokio_uring::net::TcpStream::from_std(s), codec());
                    tasks.push(match workload {
                        Workload::Pingpong => tokio_uring::spawn(pingpong(framed, size)),
                        _ => tokio_uring::spawn(stream(framed, size)),
                    });
                }
                for task in tasks {
                    if let Ok(result) = task.await {
                        report(result, true);
                    }
                }
            })
        })?;
        Ok(ClientHandle { keep: None })
    }

    async fn stream(mut framed: FramedStream, size: usize) -> Result<(), FramedError> {
        let payload = wire::payload(size);
        let batch = (BUF / (size + HEADER)).max(1);
        loop {
            for _ in 0..batch {
                framed.feed_message(&payload).await?;
            }
            framed.flush().await?;
        }
    }

    async fn pingpong(mut framed: FramedStream, size: usize) -> Result<(), FramedError> {
        let payload = wire::payload(size);
        loop {
            let start = Instant::now();
            framed.write_message(&payload).await?;
            match framed.read_message().await? {
                Some(reply) if reply.len() == size => stats::record_rtt(start.elapsed()),
                _ => return Err(io::Error::from(io::ErrorKind::InvalidData).into()),
            }
        }
    }

    async fn churn(addr: std::net::SocketAddr, size: usize) -> Result<(), FramedError> {
        let payload = wire::payload(size);
        loop {
            let stream = tokio_uring::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut framed = FramedStream::new(stream, codec());
            framed.write_message(&payload).await?;
            framed.get_ref().shutdown(std::net::Shutdown::Write)?;
            // Until the server closes (EOF); it sends nothing.
            if framed.read_message().await?.is_some() {
                return Err(io::Error::from(io::ErrorKind::InvalidData).into());
            }
        }
    }
}

#[cfg(feature = "tokio-uring")]
pub use imp::{client, server};

#[cfg(not(feature = "tokio-uring"))]
mod unavailable {
    use super::super::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};

    fn skip() -> StartError {
        StartError::Unavailable("built without --features tokio-uring".into())
    }

    pub fn server(_: &ServerArgs) -> Result<ServerHandle, StartError> {
        Err(skip())
    }

    pub fn client(_: &ClientArgs) -> Result<ClientHandle, StartError> {
        Err(skip())
    }
}

#[cfg(not(feature = "tokio-uring"))]
pub use unavailable::{client, server};
