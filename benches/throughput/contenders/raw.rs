//! `raw`: no framing at all, the ceiling. The server reads 64 KiB chunks and counts bytes
//! (messages = wire bytes / frame size); for ping-pong it echoes whatever it read. The
//! stream client is the common load generator; the bytes on the wire are ordinary frames,
//! so any server can be driven by this client and vice versa. In `stream-client` that makes
//! `raw` the ceiling of the send path: the common std server fed by a sender that does no
//! per-message work.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::{connect_all, is_disconnect, listen, spawn, std_net, ClientArgs, ClientHandle};
use super::{no_client, ServerArgs, ServerHandle, StartError};
use crate::plan::Workload;
use crate::wire::{self, BUF, HEADER};
use crate::{loadgen, stats};

pub fn server(args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let (listener, addr) = listen()?;
    let (echo, size) = (args.echo, args.size);
    spawn("raw-accept", move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let spawned = spawn("raw-conn", move || {
                if let Err(e) = serve(stream, size, echo) {
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

fn serve(mut stream: TcpStream, size: usize, echo: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let frame = (size + HEADER) as u64;
    let mut buf = vec![0u8; BUF];
    let (mut total, mut counted) = (0u64, 0u64);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let msgs = total / frame - counted;
        if msgs > 0 {
            counted += msgs;
            stats::count(msgs, msgs * size as u64);
        }
        if echo {
            stream.write_all(&buf[..n])?;
        }
    }
}

pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
    match args.workload {
        Workload::Stream | Workload::StreamClient => {
            return loadgen::start(args.addr, args.size, args.conns)
        }
        Workload::Pingpong => {
            for stream in connect_all(args.addr, args.conns)? {
                let size = args.size;
                spawn("raw-pingpong", move || {
                    if let Err(e) = pingpong_conn(stream, size) {
                        stats::client_error(e);
                    }
                })?;
            }
        }
        Workload::Churn => std_net::churn(args.addr, args.size, args.conns)?,
        other => return Err(no_client(other)),
    }
    Ok(ClientHandle { keep: None })
}

fn pingpong_conn(mut stream: TcpStream, size: usize) -> io::Result<()> {
    let frame = wire::frame(size);
    let mut reply = vec![0u8; frame.len()];
    loop {
        let start = Instant::now();
        stream.write_all(&frame)?;
        stream.read_exact(&mut reply)?;
        stats::record_rtt(start.elapsed());
    }
}
