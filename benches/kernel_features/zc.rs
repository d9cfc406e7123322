//! Feature 3: IORING_OP_SEND vs IORING_OP_SEND_ZC (and SEND_ZC from a registered buffer) on
//! loopback TCP. One op = one message of `size` bytes fully sent (short sends are continued)
//! and, for SEND_ZC, every notification CQE reaped, so the buffer could be reused. A second
//! thread, pinned to the other CPU when there is one, drains the server end with 1 MiB reads.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, CompletionQueue, SubmissionQueue, Submitter};

use crate::harness::{
    build_ring, compare, opcode_supported, pin_to_cpu, push, take_one, tcp_pair, Feature, Opts,
};

const SIZES: [(usize, &str); 4] = [
    (1024, "1KiB"),
    (8 * 1024, "8KiB"),
    (64 * 1024, "64KiB"),
    (256 * 1024, "256KiB"),
];
const VARIANTS: [&str; 3] = ["send", "send_zc", "send_zc_fixed"];

pub fn run(opts: &Opts) -> io::Result<()> {
    // Leaked: lives as long as the process, so neither an in-flight send nor the buffer
    // registration can outlive it, whichever way this function returns.
    let payload: &'static [u8] = vec![0x5Au8; 256 * 1024].leak();
    let (mut ring, _) = build_ring(16)?;
    let (sub, mut sq, mut cq) = ring.split();
    if !opcode_supported(&sub, opcode::SendZc::CODE)? {
        println!("SKIP feature=send_zc reason=IORING_OP_SEND_ZC not supported by this kernel");
        return Ok(());
    }
    let iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: the registered memory is `payload`, which is 'static and never freed.
    let variants = match unsafe { sub.register_buffers(&[iov]) } {
        Ok(()) => &VARIANTS[..],
        Err(e) => {
            println!("SKIP feature=send_zc variant=send_zc_fixed reason=register_buffers: {e}");
            &VARIANTS[..2]
        }
    };
    let (client, mut server) = tcp_pair()?;
    let drain_cpu = opts.drain_cpu;
    let drainer =
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || -> io::Result<u64> {
                if let Some(cpu) = drain_cpu {
                    pin_to_cpu(cpu)?;
                }
                let mut sink = vec![0u8; 1 << 20];
                let mut total = 0u64;
                loop {
                    match server.read(&mut sink) {
                        Ok(0) => return Ok(total),
                        Ok(n) => total += n as u64,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })?;
    let fd = client.as_raw_fd();
    let mut result = Ok(());
    for (size, label) in SIZES {
        let name = format!("send_zc_{label}");
        let feature = Feature {
            name: &name,
            variants,
            bytes_per_op: Some(size),
        };
        // Per variant: ops, send submissions, CQEs (completions + notifications).
        let mut counts = [[0u64; 3]; 3];
        let buf = &payload[..size];
        result = compare(opts, &feature, |v, ops| {
            send_msgs(&sub, &mut sq, &mut cq, fd, v, buf, ops, &mut counts[v])
        });
        if result.is_err() {
            break;
        }
        for (v, [ops, subs, cqes]) in counts.iter().enumerate().take(variants.len()) {
            let (o, s, c) = (*ops as f64, *subs as f64, *cqes as f64);
            println!(
                "INFO feature={name} variant={} submissions_per_op={:.2} cqes_per_op={:.2}",
                VARIANTS[v],
                s / o,
                c / o
            );
        }
    }
    client.shutdown(Shutdown::Write)?;
    let received = drainer
        .join()
        .map_err(|_| io::Error::other("drain thread panicked"))??;
    println!("INFO feature=send_zc drained_bytes={received}");
    result
}

#[allow(clippy::too_many_arguments)]
fn send_msgs(
    sub: &Submitter<'_>,
    sq: &mut SubmissionQueue<'_>,
    cq: &mut CompletionQueue<'_>,
    fd: i32,
    variant: usize,
    buf: &'static [u8],
    ops: u64,
    counts: &mut [u64; 3],
) -> io::Result<Duration> {
    let start = Instant::now();
    for _ in 0..ops {
        let mut off = 0;
        let mut notifs = 0i64;
        while off < buf.len() {
            let rest = &buf[off..];
            let (ptr, len) = (
                rest.as_ptr(),
                u32::try_from(rest.len()).map_err(io::Error::other)?,
            );
            let entry = match variant {
                0 => opcode::Send::new(types::Fd(fd), ptr, len).build(),
                1 => opcode::SendZc::new(types::Fd(fd), ptr, len).build(),
                _ => opcode::SendZc::new(types::Fd(fd), ptr, len)
                    .buf_index(Some(0))
                    .build(),
            };
            // SAFETY: `buf` is 'static (leaked in `run`, and for the fixed variant it lies in
            // the registered buffer); we reap this send's completion and, below, every
            // notification before the op counts as done.
            unsafe { push(sq, &entry.user_data(3)) }?;
            counts[1] += 1;
            sub.submit_and_wait(1)?;
            let res = loop {
                let cqe = take_one(sub, cq)?;
                counts[2] += 1;
                if cqueue::notif(cqe.flags()) {
                    notifs -= 1;
                    continue;
                }
                if cqueue::more(cqe.flags()) {
                    notifs += 1;
                }
                break cqe.result();
            };
            match res {
                r if r > 0 => off += r as usize,
                r if r == -libc::EAGAIN || r == -libc::EINTR => {}
                0 => return Err(io::Error::other("send returned 0")),
                r => return Err(io::Error::from_raw_os_error(-r)),
            }
        }
        while notifs > 0 {
            let cqe = take_one(sub, cq)?;
            counts[2] += 1;
            if !cqueue::notif(cqe.flags()) {
                return Err(io::Error::other(
                    "unexpected CQE while waiting for a notification",
                ));
            }
            notifs -= 1;
        }
        counts[0] += 1;
    }
    Ok(start.elapsed())
}
