//! Feature 4: how to hand a connection's waiting chunks to the kernel. One op = 256 KiB held as
//! 16 chunks of 16 KiB (what a core's outbox holds), sent on the client end of a loopback TCP
//! pair in one of these shapes:
//!
//! - `sendmsg_iov` (the engine's choice): one IORING_OP_SENDMSG over 16 iovecs;
//! - `send_bundle`: the chunks added to a provided-buffer ring, one IORING_OP_SEND with
//!   BUFFER_SELECT | RECVSEND_BUNDLE (Linux 6.10) taking them all;
//! - `send_per_chunk`: 16 IORING_OP_SENDs, submitted together, reaped together;
//! - `sendmsg_syscall`: a plain nonblocking sendmsg(2) over the 16 iovecs (a producer thread's
//!   direct send, `src/engine/send/direct.rs`);
//! - `send_contiguous`: one IORING_OP_SEND of one 256 KiB buffer (the cost of the copy alone,
//!   what the `raw` contender pays).
//!
//! The server end is drained with nonblocking `read()`s after every op, outside the timed path,
//! and both socket buffers are large, so every send completes in full (a short one is finished
//! untimed and counted).

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, CompletionQueue, SubmissionQueue, Submitter};

use crate::harness::{build_ring, compare, push, take_one, tcp_pair, Feature, Opts};

const CHUNK: usize = 16 * 1024;
const CHUNKS: usize = 16;
const OP_BYTES: usize = CHUNK * CHUNKS;
/// Buffer group of the send ring.
const GROUP: u16 = 7;

/// The kernel's `struct io_uring_buf`; `resv` of entry 0 is the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

pub fn run(opts: &Opts) -> io::Result<()> {
    let (client, mut server) = tcp_pair()?;
    server.set_nonblocking(true)?;
    socket2::SockRef::from(&client).set_send_buffer_size(4 << 20)?;
    socket2::SockRef::from(&server).set_recv_buffer_size(4 << 20)?;
    // Leaked: they live as long as the process, so no send can outlive them.
    let chunks: &'static [u8] = vec![0x5Au8; OP_BYTES].leak();
    let contiguous: &'static [u8] = vec![0xA5u8; OP_BYTES].leak();
    let iovs: &'static mut [libc::iovec] = (0..CHUNKS)
        .map(|i| libc::iovec {
            iov_base: chunks[i * CHUNK..].as_ptr() as *mut libc::c_void,
            iov_len: CHUNK,
        })
        .collect::<Vec<_>>()
        .leak();
    // SAFETY: msghdr is plain C data; all-zero means no name and no control data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = CHUNKS as _;
    let msg: &'static libc::msghdr = Box::leak(Box::new(msg));
    // The provided-buffer ring for bundles: 16 entries, page aligned, leaked like the chunks.
    let layout = std::alloc::Layout::from_size_align(CHUNKS * std::mem::size_of::<RawBuf>(), 4096)
        .map_err(io::Error::other)?;
    // SAFETY: the layout has a non-zero size; the memory is zeroed and never freed.
    let ring_mem = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<RawBuf>();
    if ring_mem.is_null() {
        return Err(io::Error::from(io::ErrorKind::OutOfMemory));
    }
    let (mut ring, _) = build_ring(64)?;
    let (sub, mut sq, mut cq) = ring.split();
    // SAFETY: `ring_mem` is page aligned, CHUNKS entries long, and never freed.
    let bundles =
        unsafe { sub.register_buf_ring_with_flags(ring_mem as u64, CHUNKS as u16, GROUP, 0) }
            .is_ok();
    let mut variants = vec![
        "sendmsg_iov",
        "send_per_chunk",
        "sendmsg_syscall",
        "send_contiguous",
    ];
    if bundles {
        variants.insert(1, "send_bundle");
    } else {
        println!("SKIP feature=send_shapes variant=send_bundle reason=no provided-buffer ring");
    }
    let feature = Feature {
        name: "send_shapes_256KiB_as_16x16KiB",
        variants: &variants,
        bytes_per_op: Some(OP_BYTES),
    };
    let mut ctx = Ctx {
        sub: &sub,
        sq: &mut sq,
        cq: &mut cq,
        fd: client.as_raw_fd(),
        server: &mut server,
        sink: vec![0u8; 1 << 20],
        short: 0,
        bufs: BundleRing {
            ring: ring_mem,
            tail: 0,
        },
    };
    let names = variants.clone();
    compare(opts, &feature, |v, ops| {
        let mut timed = Duration::ZERO;
        for _ in 0..ops {
            let start = Instant::now();
            match names[v] {
                "sendmsg_iov" => ctx.sendmsg_iov(msg)?,
                "send_bundle" => ctx.send_bundle(chunks)?,
                "send_per_chunk" => ctx.send_per_chunk(chunks)?,
                "sendmsg_syscall" => ctx.sendmsg_syscall(msg)?,
                _ => ctx.send_contiguous(contiguous)?,
            }
            timed += start.elapsed();
            ctx.drain()?;
        }
        Ok(timed)
    })?;
    if ctx.short > 0 {
        println!(
            "INFO feature=send_shapes short_sends={} (finished untimed)",
            ctx.short
        );
    }
    Ok(())
}

/// The bundle's provided-buffer ring: the tail this side publishes.
struct BundleRing {
    ring: *mut RawBuf,
    tail: u16,
}

impl BundleRing {
    /// Offers the 16 chunks of `chunks` to the kernel, in order.
    fn offer(&mut self, chunks: &'static [u8]) {
        for i in 0..CHUNKS {
            let slot = usize::from(self.tail) % CHUNKS;
            // SAFETY: `slot < CHUNKS`, the ring's length; the kernel only reads entries between
            // its head and our published tail, and this one is past the tail until published.
            unsafe {
                let entry = &mut *self.ring.add(slot);
                entry.addr = chunks[i * CHUNK..].as_ptr() as u64;
                entry.len = CHUNK as u32;
                entry.bid = i as u16;
            }
            self.tail = self.tail.wrapping_add(1);
        }
        // SAFETY: entry 0's `resv` is the ring's tail, a u16 the kernel reads atomically; the
        // pointer is valid and suitably aligned for the whole life of the process.
        let tail = unsafe { &*(std::ptr::addr_of!((*self.ring).resv) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

struct Ctx<'r, 'a> {
    sub: &'r Submitter<'a>,
    sq: &'r mut SubmissionQueue<'a>,
    cq: &'r mut CompletionQueue<'a>,
    fd: i32,
    server: &'r mut TcpStream,
    sink: Vec<u8>,
    short: u64,
    bufs: BundleRing,
}

impl Ctx<'_, '_> {
    /// Submits `entry` and returns its completion's result (an error for a negative one).
    fn one(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<usize> {
        // SAFETY: every entry built here points at leaked ('static) memory.
        unsafe { push(self.sq, entry) }?;
        self.sub.submit_and_wait(1)?;
        let cqe = take_one(self.sub, self.cq)?;
        self.result(&cqe)
    }

    fn result(&mut self, cqe: &cqueue::Entry) -> io::Result<usize> {
        match cqe.result() {
            n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
            n => Ok(n as usize),
        }
    }

    /// Counts a short send; the rest is not part of the shape being measured.
    fn note(&mut self, sent: usize) {
        if sent < OP_BYTES {
            self.short += 1;
        }
    }

    fn sendmsg_iov(&mut self, msg: &'static libc::msghdr) -> io::Result<()> {
        let entry = opcode::SendMsg::new(types::Fd(self.fd), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        let sent = self.one(&entry)?;
        self.note(sent);
        Ok(())
    }

    fn send_bundle(&mut self, chunks: &'static [u8]) -> io::Result<()> {
        self.bufs.offer(chunks);
        let mut sent = 0;
        // A bundle takes what the ring offers; a short one leaves the rest offered.
        while sent < OP_BYTES {
            let entry = opcode::SendBundle::new(types::Fd(self.fd), GROUP)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            let n = self.one(&entry)?;
            if n == 0 {
                return Err(io::Error::other("empty bundle send"));
            }
            sent += n;
        }
        Ok(())
    }

    fn send_per_chunk(&mut self, chunks: &'static [u8]) -> io::Result<()> {
        for i in 0..CHUNKS {
            let entry = opcode::Send::new(
                types::Fd(self.fd),
                chunks[i * CHUNK..].as_ptr(),
                CHUNK as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build();
            // SAFETY: `chunks` is leaked ('static).
            unsafe { self.sq.push(&entry) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        self.sq.sync();
        self.sub.submit_and_wait(CHUNKS)?;
        let mut sent = 0;
        for _ in 0..CHUNKS {
            let cqe = take_one(self.sub, self.cq)?;
            sent += self.result(&cqe)?;
        }
        self.note(sent);
        Ok(())
    }

    fn sendmsg_syscall(&mut self, msg: &'static libc::msghdr) -> io::Result<()> {
        // SAFETY: `msg` and the iovecs and chunks it points at are leaked ('static).
        let n = unsafe { libc::sendmsg(self.fd, msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.note(n as usize);
        Ok(())
    }

    fn send_contiguous(&mut self, buf: &'static [u8]) -> io::Result<()> {
        let entry = opcode::Send::new(types::Fd(self.fd), buf.as_ptr(), OP_BYTES as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        let sent = self.one(&entry)?;
        self.note(sent);
        Ok(())
    }

    /// Reads whatever has arrived on the (nonblocking) server end.
    fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.server.read(&mut self.sink) {
                Ok(0) => return Err(io::Error::other("peer closed")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
