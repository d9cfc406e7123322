//! Feature 2: registered files (fixed files). One op = one IORING_OP_SEND on the client end of
//! a loopback TCP pair, submitted and reaped on its own (`io_uring_enter(1, 1, GETEVENTS)`),
//! addressed as `types::Fd` (the kernel takes a file reference per request) or as
//! `types::Fixed(0)` after `register_files`. The server end is drained with plain nonblocking
//! `read()`s every `batch` sends, outside the timed path. Sends carry MSG_DONTWAIT so a full
//! socket buffer comes back as EAGAIN (counted, drained, retried untimed) instead of a hang.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, CompletionQueue, SubmissionQueue, Submitter};

use crate::harness::{build_ring, compare, push, take_one, tcp_pair, Feature, Opts};

pub fn run(opts: &Opts) -> io::Result<()> {
    let (client, mut server) = tcp_pair()?;
    server.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&client);
    sock.set_send_buffer_size(1 << 20)?;
    socket2::SockRef::from(&server).set_recv_buffer_size(1 << 20)?;
    // Leaked: lives as long as the process, so no in-flight send can outlive it.
    let payload: &'static [u8] = vec![0xA5u8; 16 * 1024].leak();
    let mut sink = vec![0u8; 1 << 20];
    let (mut ring, _) = build_ring(8)?;
    let (sub, mut sq, mut cq) = ring.split();
    if let Err(e) = sub.register_files(&[client.as_raw_fd()]) {
        println!("SKIP feature=registered_files reason=register_files: {e}");
        return Ok(());
    }
    for (size, batch, label) in [(64usize, 64u64, "64B"), (16 * 1024, 8, "16KiB")] {
        let name = format!("registered_files_send_{label}");
        let feature = Feature {
            name: &name,
            variants: &["fd", "fixed"],
            bytes_per_op: Some(size),
        };
        let mut stalls = 0u64;
        let mut ctx = Ctx {
            sub: &sub,
            sq: &mut sq,
            cq: &mut cq,
            fd: client.as_raw_fd(),
            server: &mut server,
            sink: &mut sink,
            stalls: &mut stalls,
        };
        compare(opts, &feature, |v, ops| {
            sends(&mut ctx, v == 1, &payload[..size], batch, ops)
        })?;
        if stalls > 0 {
            println!("INFO feature={name} eagain_or_short_sends={stalls} (retried untimed)");
        }
    }
    Ok(())
}

struct Ctx<'r, 'a> {
    sub: &'r Submitter<'a>,
    sq: &'r mut SubmissionQueue<'a>,
    cq: &'r mut CompletionQueue<'a>,
    fd: i32,
    server: &'r mut TcpStream,
    sink: &'r mut [u8],
    stalls: &'r mut u64,
}

fn sends(
    ctx: &mut Ctx<'_, '_>,
    fixed: bool,
    buf: &'static [u8],
    batch: u64,
    ops: u64,
) -> io::Result<Duration> {
    let len = u32::try_from(buf.len()).map_err(io::Error::other)?;
    let entry = if fixed {
        opcode::Send::new(types::Fixed(0), buf.as_ptr(), len)
    } else {
        opcode::Send::new(types::Fd(ctx.fd), buf.as_ptr(), len)
    }
    .flags(libc::MSG_DONTWAIT)
    .build()
    .user_data(2);
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < ops {
        let n = batch.min(ops - done);
        let mut start = Instant::now();
        let mut sent = 0;
        while sent < n {
            // SAFETY: `buf` is 'static (leaked in `run`), and the CQE of this send is reaped just
            // below before the next push.
            unsafe { push(ctx.sq, &entry) }?;
            ctx.sub.submit_and_wait(1)?;
            let res = take_one(ctx.sub, ctx.cq)?.result();
            if res < 0 && res != -libc::EAGAIN {
                return Err(io::Error::from_raw_os_error(-res));
            }
            if res >= 0 {
                sent += 1;
            }
            if res < 0 || (res as usize) < buf.len() {
                // Full socket buffer (EAGAIN: retried; short send: counted as done). Drain it
                // with the clock stopped.
                *ctx.stalls += 1;
                timed += start.elapsed();
                drain(ctx.server, ctx.sink)?;
                start = Instant::now();
            }
        }
        timed += start.elapsed();
        drain(ctx.server, ctx.sink)?;
        done += n;
    }
    Ok(timed)
}

/// Reads whatever has arrived on the (nonblocking) server end.
fn drain(server: &mut TcpStream, sink: &mut [u8]) -> io::Result<()> {
    loop {
        match server.read(sink) {
            Ok(0) => return Err(io::Error::other("peer closed")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
