//! `tokio-ct` / `tokio-mt`: tokio with tokio-util's `LengthDelimitedCodec` (u32 big-endian
//! length), the usual Rust choice. Servers read through `FramedRead` with 64 KiB capacity and
//! count frames; streaming clients `feed` ~64 KiB of frames into a `FramedWrite` whose buffer
//! and backpressure boundary are 64 KiB, then `flush` once. `tokio-rustls` (`tokio_tls.rs`)
//! runs the same server loop and streaming client over a TLS stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ::tokio::net::{TcpListener, TcpStream};
use ::tokio::runtime::{Builder, Runtime};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};

use super::{client_streams, is_disconnect, listen, spawn, ClientArgs, ClientHandle};
use super::{ServerArgs, ServerHandle, StartError};
use crate::plan::Workload;
use crate::stats;
use crate::wire::{self, BUF, HEADER, MAX_FRAME};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

pub(super) fn runtime(flavor: Flavor, threads: usize) -> io::Result<Runtime> {
    match flavor {
        Flavor::CurrentThread => Builder::new_current_thread().enable_all().build(),
        Flavor::MultiThread => Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build(),
    }
}

pub(super) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER)
        .big_endian()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Runs `fut` to completion on a new thread owning `rt`; spawned tasks go to the runtime's
/// workers (multi-thread) or share that thread (current-thread).
pub(super) fn run_detached<F>(name: &str, rt: Runtime, fut: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    spawn(name, move || {
        rt.block_on(async move {
            // As a task, so a multi-thread runtime runs it on a worker like everything else.
            let _ = ::tokio::spawn(fut).await;
        })
    })?;
    Ok(())
}

pub fn server(flavor: Flavor, args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let (listener, addr) = listen()?;
    listener.set_nonblocking(true)?;
    let rt = runtime(flavor, args.cores)?;
    let echo = args.echo;
    run_detached("tokio-server", rt, async move {
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
            ::tokio::spawn(async move {
                let result = match stream.set_nodelay(true) {
                    Err(e) => Err(e),
                    Ok(()) if echo => serve_echo(stream).await,
                    Ok(()) => serve_count(stream).await,
                };
                if let Err(e) = result {
                    if !is_disconnect(&e) && !is_cut_frame(&e) {
                        eprintln!("connection: {e}");
                    }
                }
            });
        }
    })?;
    Ok(ServerHandle { addr, keep: None })
}

/// tokio-util's complaint about a peer that closed mid-frame: the bench kills its clients
/// at the end of every trial, so this is teardown, not a failure.
pub(super) fn is_cut_frame(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string() == "bytes remaining on stream"
}

pub(super) async fn serve_count<S: AsyncRead + Unpin>(stream: S) -> io::Result<()> {
    let mut frames = FramedRead::with_capacity(stream, codec(), BUF);
    while let Some(frame) = frames.next().await {
        stats::count(1, frame?.len() as u64);
    }
    Ok(())
}

async fn serve_echo(stream: TcpStream) -> io::Result<()> {
    let mut framed = Framed::with_capacity(stream, codec(), BUF);
    while let Some(frame) = framed.next().await {
        let frame = frame?;
        stats::count(1, frame.len() as u64);
        framed.feed(frame.freeze()).await?;
        // Flush once no further request is already buffered.
        if framed.read_buffer().is_empty() {
            SinkExt::<Bytes>::flush(&mut framed).await?;
        }
    }
    Ok(())
}

pub fn client(flavor: Flavor, args: &ClientArgs) -> Result<ClientHandle, StartError> {
    // The client process is pinned to one CPU: one worker is all a multi-thread runtime gets.
    let rt = runtime(flavor, 1)?;
    let (workload, size, addr) = (args.workload, args.size, args.addr);
    let streams = client_streams(args)?;
    for s in &streams {
        s.set_nonblocking(true)?;
    }
    let workers = args.conns;
    run_detached("tokio-client", rt, async move {
        let mut tasks = Vec::new();
        if workload == Workload::Churn {
            for _ in 0..workers {
                tasks.push(::tokio::spawn(churn(addr, size)));
            }
        }
        for s in streams {
            let stream = match TcpStream::from_std(s) {
                Ok(s) => s,
                Err(e) => return stats::client_error(e),
            };
            tasks.push(match workload {
                Workload::Pingpong => ::tokio::spawn(pingpong_conn(stream, size)),
                _ => ::tokio::spawn(stream_conn(stream, size)),
            });
        }
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

/// Feeds ~64 KiB of frames (at least one), then flushes, until the connection fails.
/// `with_capacity` sizes the buffer and sets the backpressure boundary (which `feed` flushes
/// at; 8 KiB by default) to 64 KiB; the boundary is set again to say so explicitly.
pub(super) async fn stream_conn<S: AsyncWrite + Unpin>(stream: S, size: usize) -> io::Result<()> {
    let payload = Bytes::from_static(wire::payload(size).leak());
    let batch = (BUF / (size + HEADER)).max(1);
    let mut sink = FramedWrite::with_capacity(stream, codec(), BUF);
    sink.set_backpressure_boundary(BUF);
    loop {
        for _ in 0..batch {
            sink.feed(payload.clone()).await?;
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
    }
}

async fn pingpong_conn(stream: TcpStream, size: usize) -> io::Result<()> {
    let payload = Bytes::from_static(wire::payload(size).leak());
    let mut framed = Framed::with_capacity(stream, codec(), BUF);
    loop {
        let start = Instant::now();
        framed.send(payload.clone()).await?;
        match framed.next().await {
            Some(Ok(reply)) if reply.len() == size => {}
            Some(Ok(reply)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("echo of {} bytes, sent {size}", reply.len()),
                ))
            }
            Some(Err(e)) => return Err(e),
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
        stats::record_rtt(start.elapsed());
    }
}

/// Connect, send one frame, half-close, wait for the server's close; see `std_net::churn`.
async fn churn(addr: SocketAddr, size: usize) -> io::Result<()> {
    let payload = Bytes::from_static(wire::payload(size).leak());
    loop {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut sink = FramedWrite::new(stream, codec());
        sink.send(payload.clone()).await?;
        let mut stream = sink.into_inner();
        stream.shutdown().await?;
        // Until the server closes (EOF); it sends nothing.
        if stream.read(&mut [0u8; 1]).await? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "churn: server sent data",
            ));
        }
    }
}
