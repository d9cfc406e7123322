//! The contenders' servers and clients behind one interface, plus what they share.
//!
//! A server starts in the background, counts every message with `stats::count` (and echoes it
//! back, framed, when `ServerArgs::echo`), and returns the address it listens on. A client
//! starts in the background, returns once its connections are up, and keeps going until the
//! process is killed; it reports failures with `stats::client_error` and ping-pong round trips
//! with `stats::record_rtt`.

mod acked;
mod monoio;
mod raw;
mod std_net;
#[cfg(feature = "tls")]
mod std_tls;
mod tls;
mod tokio_codec;
#[cfg(feature = "tls")]
mod tokio_tls;
mod tokio_uring;

use std::any::Any;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use crate::buffstreams::{self, Backend};
use crate::plan::{Contender, Workload};

pub use tokio_codec::Flavor;

/// What a server is asked to do.
#[derive(Clone, Debug)]
pub struct ServerArgs {
    /// Echo every message back to its sender as a frame (ping-pong); otherwise only count.
    pub echo: bool,
    /// Payload size the workload uses (every message has exactly this size).
    pub size: usize,
    /// Cores the server may use (1 = one thread doing all the I/O, where the contender can).
    pub cores: usize,
}

/// What a client is asked to do.
#[derive(Clone, Debug)]
pub struct ClientArgs {
    /// `Stream` or `StreamClient` (the same streaming client; only the server differs),
    /// `Pingpong`, `Churn` or `Tls` (`StreamServer` and `TlsHandshake` have common clients,
    /// `Workload::common_client`).
    pub workload: Workload,
    pub addr: SocketAddr,
    pub size: usize,
    /// Connections (`Churn`: workers each opening connections one after another).
    pub conns: usize,
}

/// Why a server or client did not start.
#[derive(Debug)]
pub enum StartError {
    /// The contender cannot run here (not built yet, io_uring blocked ...): a SKIP, not a bug.
    Unavailable(String),
    /// It should have run and did not.
    Failed(String),
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Failed(e.to_string())
    }
}

/// A running server. Whatever `keep` holds stays alive until the process exits.
pub struct ServerHandle {
    pub addr: SocketAddr,
    #[allow(dead_code)] // held, never read: dropping it would stop the server
    pub keep: Option<Box<dyn Any>>,
}

/// A running client. Whatever `keep` holds stays alive until the process exits.
pub struct ClientHandle {
    #[allow(dead_code)] // held, never read: dropping it would stop the client
    pub keep: Option<Box<dyn Any>>,
}

pub fn server(contender: Contender, args: &ServerArgs) -> Result<ServerHandle, StartError> {
    match contender {
        Contender::BuffstreamsUring => buffstreams::server(Backend::Uring, args),
        Contender::BuffstreamsEpoll => buffstreams::server(Backend::Epoll, args),
        Contender::BuffstreamsAcked => acked::server(args),
        Contender::TokioCt => tokio_codec::server(Flavor::CurrentThread, args),
        Contender::TokioMt => tokio_codec::server(Flavor::MultiThread, args),
        Contender::TokioUringAdapter => tokio_uring::server(args),
        Contender::MonoioAdapter => monoio::server(args),
        Contender::Std => std_net::server(args),
        Contender::Raw => raw::server(args),
        Contender::BuffstreamsTls
        | Contender::TokioRustls
        | Contender::StdRustls
        | Contender::SealCeiling => tls::server(contender, args),
    }
}

pub fn client(contender: Contender, args: &ClientArgs) -> Result<ClientHandle, StartError> {
    match contender {
        Contender::BuffstreamsUring => buffstreams::client(Backend::Uring, args),
        Contender::BuffstreamsEpoll => buffstreams::client(Backend::Epoll, args),
        Contender::BuffstreamsAcked => acked::client(args),
        Contender::TokioCt => tokio_codec::client(Flavor::CurrentThread, args),
        Contender::TokioMt => tokio_codec::client(Flavor::MultiThread, args),
        Contender::TokioUringAdapter => tokio_uring::client(args),
        Contender::MonoioAdapter => monoio::client(args),
        Contender::Std => std_net::client(args),
        Contender::Raw => raw::client(args),
        Contender::BuffstreamsTls
        | Contender::TokioRustls
        | Contender::StdRustls
        | Contender::SealCeiling => tls::client(contender, args),
    }
}

/// A listener on an ephemeral loopback port.
pub fn listen() -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// `n` connections to `addr`, with Nagle off (as every contender does).
pub fn connect_all(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect()
}

/// The connections an async contender's client starts with: one per connection for the
/// streaming and ping-pong workloads, none for churn (its workers connect as they go).
pub fn client_streams(args: &ClientArgs) -> Result<Vec<TcpStream>, StartError> {
    match args.workload {
        Workload::Stream | Workload::StreamClient | Workload::Pingpong | Workload::Tls => {
            Ok(connect_all(args.addr, args.conns)?)
        }
        Workload::Churn => Ok(Vec::new()),
        other => Err(no_client(other)),
    }
}

/// The error of a client asked for a workload it has no part in (a common client's, or the
/// ceiling's).
pub fn no_client(workload: Workload) -> StartError {
    StartError::Failed(format!(
        "no contender's own client runs {}",
        workload.name()
    ))
}

/// A named thread with a small stack (256 connections may mean 256 threads).
pub fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 << 10)
        .spawn(f)
}

/// Whether an I/O error just means "the peer went away" (the bench tears connections down).
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
