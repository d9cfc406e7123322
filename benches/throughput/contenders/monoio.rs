//! `monoio-adapter`: this crate's `monoio` feature, `FramedStream` over a monoio TCP stream
//! (u32 big-endian framing) on monoio's io_uring driver, one task per connection on one monoio
//! thread. Servers count frames (or echo them); streaming clients feed ~64 KiB of frames, then
//! flush. Built only with `--features monoio` (otherwise every trial is a SKIP). The same
//! shape as `tokio_uring.rs`, so the two adapters compare like for like.

#[cfg(feature = "monoio")]
mod imp {
    use std::io;
    use std::time::Instant;

    use buffstreams::frame::Codec;
    use buffstreams::monoio::{FramedError, FramedStream};
    use buffstreams::Framing;
    use monoio::net::TcpStream;

    use super::super::{client_streams, listen, spawn, ClientArgs, ClientHandle};
    use super::super::{ServerArgs, ServerHandle, StartError};
    use crate::plan::Workload;
    use crate::stats;
    use crate::wire::{self, BUF, HEADER, MAX_FRAME};

    type Framed = FramedStream<TcpStream>;

    /// A monoio runtime on its io_uring driver, for this thread.
    fn runtime() -> monoio::Runtime<monoio::IoUringDriver> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()
            .expect("a monoio io_uring runtime")
    }

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
        spawn("monoio-server", move || {
            runtime().block_on(async move {
                let listener =
                    monoio::net::TcpListener::from_std(listener).expect("a monoio listener");
                loop {
                    let stream = match listener.accept().await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            eprintln!("accept: {e}");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(async move {
                        let framed = FramedStream::new(stream, codec());
                        report(serve(framed, echo).await, false);
                    });
                }
            })
        })?;
        Ok(ServerHandle { addr, keep: None })
    }

    async fn serve(mut framed: Framed, echo: bool) -> Result<(), FramedError> {
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
        spawn("monoio-client", move || {
            runtime().block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..if workload == Workload::Churn {
                    workers
                } else {
                    0
                } {
                    tasks.push(monoio::spawn(churn(addr, size)));
                }
                for s in streams {
                    let s = match TcpStream::from_std(s) {
                        Ok(s) => s,
                        Err(e) => {
                            stats::client_error(e);
                            continue;
                        }
                    };
                    let framed = FramedStream::new(s, codec());
                    tasks.push(match workload {
                        Workload::Pingpong => monoio::spawn(pingpong(framed, size)),
                        _ => monoio::spawn(stream(framed, size)),
                    });
                }
                for task in tasks {
                    report(task.await, true);
                }
            })
        })?;
        Ok(ClientHandle { keep: None })
    }

    async fn stream(mut framed: Framed, size: usize) -> Result<(), FramedError> {
        let payload = wire::payload(size);
        let batch = (BUF / (size + HEADER)).max(1);
        loop {
            for _ in 0..batch {
                framed.feed_message(&payload).await?;
            }
            framed.flush().await?;
        }
    }

    async fn pingpong(mut framed: Framed, size: usize) -> Result<(), FramedError> {
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
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut framed = FramedStream::new(stream, codec());
            framed.write_message(&payload).await?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(framed.get_ref());
            // SAFETY: `fd` is the stream's open socket, which `framed` owns and keeps open for
            // the whole of this borrow (the borrow ends with this statement).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Write)?;
            // Until the server closes (EOF); it sends nothing.
            if framed.read_message().await?.is_some() {
                return Err(io::Error::from(io::ErrorKind::InvalidData).into());
            }
        }
    }
}

#[cfg(feature = "monoio")]
pub use imp::{client, server};

#[cfg(not(feature = "monoio"))]
mod unavailable {
    use super::super::{ClientArgs, ClientHandle, ServerArgs, ServerHandle, StartError};

    fn skip() -> StartError {
        StartError::Unavailable("built without --features monoio".into())
    }

    pub fn server(_: &ServerArgs) -> Result<ServerHandle, StartError> {
        Err(skip())
    }

    pub fn client(_: &ClientArgs) -> Result<ClientHandle, StartError> {
        Err(skip())
    }
}

#[cfg(not(feature = "monoio"))]
pub use unavailable::{client, server};
