//! `std`: blocking `std::net`, a thread per connection, `BufReader`/`BufWriter` with 64 KiB
//! buffers, reading the 4-byte big-endian length and then the payload. Its server is also
//! the common server every contender's client sends into in `stream-client`. `std-rustls`
//! (`std_tls.rs`) reads frames and streams them the same way over `rustls::StreamOwned`.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

use super::{connect_all, is_disconnect, listen, spawn, ClientArgs, ClientHandle};
use super::{no_client, ServerArgs, ServerHandle, StartError};
use crate::plan::Workload;
use crate::stats;
use crate::wire::{self, BUF, HEADER, MAX_FRAME};

pub fn server(args: &ServerArgs) -> Result<ServerHandle, StartError> {
    let (listener, addr) = listen()?;
    let echo = args.echo;
    spawn("std-accept", move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let spawned = spawn("std-conn", move || {
                if let Err(e) = serve(stream, echo) {
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

/// Reads frames until the peer closes; counts each one, echoes it if asked.
fn serve(stream: TcpStream, echo: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = BufWriter::with_capacity(BUF, stream.try_clone()?);
    let mut reader = BufReader::with_capacity(BUF, stream);
    let mut payload = Vec::new();
    let mut header = [0u8; HEADER];
    while let Some(len) = read_frame(&mut reader, &mut header, &mut payload)? {
        stats::count(1, len as u64);
        if echo {
            writer.write_all(&header)?;
            writer.write_all(&payload[..len])?;
            // Flush once no further request is already buffered.
            if reader.buffer().is_empty() {
                writer.flush()?;
            }
        }
    }
    Ok(())
}

/// Reads the next frame: its prefix into `header`, its payload into `payload[..len]`
/// (`payload` grows as needed). `None` when the peer closed between frames.
pub(super) fn read_frame(
    reader: &mut impl Read,
    header: &mut [u8; HEADER],
    payload: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    match reader.read_exact(header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the maximum"),
        ));
    }
    if payload.len() < len {
        payload.resize(len, 0);
    }
    reader.read_exact(&mut payload[..len])?;
    Ok(Some(len))
}

pub fn client(args: &ClientArgs) -> Result<ClientHandle, StartError> {
    match args.workload {
        Workload::Stream | Workload::StreamClient => {
            for stream in connect_all(args.addr, args.conns)? {
                let size = args.size;
                spawn("std-stream", move || {
                    if let Err(e) = stream_conn(stream, size) {
                        stats::client_error(e);
                    }
                })?;
            }
        }
        Workload::Pingpong => {
            for stream in connect_all(args.addr, args.conns)? {
                let size = args.size;
                spawn("std-pingpong", move || {
                    if let Err(e) = pingpong_conn(stream, size) {
                        stats::client_error(e);
                    }
                })?;
            }
        }
        Workload::Churn => churn(args.addr, args.size, args.conns)?,
        other => return Err(no_client(other)),
    }
    Ok(ClientHandle { keep: None })
}

/// Writes frames through a 64 KiB `BufWriter` until the connection fails: one `write(2)` per
/// ~64 KiB of frames. `BUFFSTREAMS_BENCH_STD_BUF=<bytes>` changes the size, for a diagnostic
/// comparison of batch sizes (the published figures use 64 KiB).
pub(super) fn stream_conn(stream: impl Write, size: usize) -> io::Result<()> {
    let header = wire::header(size);
    let payload = wire::payload(size);
    let mut writer = BufWriter::with_capacity(
        wire::env_bytes("BUFFSTREAMS_BENCH_STD_BUF").unwrap_or(BUF),
        stream,
    );
    loop {
        writer.write_all(&header)?;
        writer.write_all(&payload)?;
    }
}

fn pingpong_conn(stream: TcpStream, size: usize) -> io::Result<()> {
    let header = wire::header(size);
    let payload = wire::payload(size);
    let mut writer = BufWriter::with_capacity(BUF, stream.try_clone()?);
    let mut reader = BufReader::with_capacity(BUF, stream);
    let mut reply = vec![0u8; size];
    loop {
        let start = Instant::now();
        writer.write_all(&header)?;
        writer.write_all(&payload)?;
        writer.flush()?;
        let mut got = [0u8; HEADER];
        reader.read_exact(&mut got)?;
        if got != header {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echo of {} bytes, sent {size}", u32::from_be_bytes(got)),
            ));
        }
        reader.read_exact(&mut reply)?;
        stats::record_rtt(start.elapsed());
    }
}

/// `workers` threads, each connecting, sending one frame and closing, over and over.
/// Shared by `raw` (the bytes on the wire are the same; there is nothing to frame).
///
/// Each connection half-closes after its frame and waits for the server to close too, so at
/// most `workers` connections are in flight: a client that merely connects and closes runs
/// far ahead of the server (the kernel completes handshakes on its own), fills the accept
/// queue, has its SYNs dropped and stalls a whole second per retransmission.
pub fn churn(addr: SocketAddr, size: usize, workers: usize) -> Result<(), StartError> {
    for _ in 0..workers {
        let frame = wire::frame(size);
        spawn("churn", move || loop {
            let result = TcpStream::connect(addr).and_then(|mut s| {
                s.set_nodelay(true)?;
                s.write_all(&frame)?;
                s.shutdown(Shutdown::Write)?;
                // Until the server closes (EOF); it sends nothing.
                match s.read(&mut [0u8; 1])? {
                    0 => Ok(()),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "server sent data",
                    )),
                }
            });
            if let Err(e) = result {
                stats::client_error(e);
                return;
            }
        })?;
    }
    Ok(())
}
