//! Feature 1: registered ring fd (IORING_REGISTER_RING_FDS + IORING_ENTER_REGISTERED_RING).
//!
//! One op = push one NOP, `io_uring_enter(1, 1, GETEVENTS)`, reap its CQE. Two rings, one plain
//! and one whose `Submitter` (from `split()`, so it lives as long as the measurement) holds the
//! registered index. Measured with this process single-threaded, then again with a second,
//! idle thread alive: the kernel's fd lookup skips the file reference count only while the
//! file table is not shared, and a real runtime is always multithreaded.

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_uring::{opcode, CompletionQueue, SubmissionQueue, Submitter};

use crate::harness::{build_ring, compare, push, take_one, Feature, Opts};

pub fn run(opts: &Opts) -> io::Result<()> {
    measure(opts, "registered_ring_fd_1thread")?;
    let (tx, rx) = mpsc::channel::<()>();
    let idle = std::thread::Builder::new()
        .name("idle".into())
        .spawn(move || {
            // Blocks in a futex wait until the sender is dropped: alive, never runnable.
            let _ = rx.recv();
        })?;
    let result = measure(opts, "registered_ring_fd_2threads");
    drop(tx);
    idle.join()
        .map_err(|_| io::Error::other("idle thread panicked"))?;
    result
}

fn threads() -> io::Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map_or_else(|| "?".to_string(), |t| t.trim().to_string()))
}

fn measure(opts: &Opts, name: &str) -> io::Result<()> {
    let (mut plain, flags) = build_ring(8)?;
    let (mut registered, _) = build_ring(8)?;
    println!("INFO feature={name} threads={} ring={flags}", threads()?);
    let (sub_p, mut sq_p, mut cq_p) = plain.split();
    let (mut sub_r, mut sq_r, mut cq_r) = registered.split();
    if let Err(e) = sub_r.register_ring_fd() {
        println!("SKIP feature={name} reason=register_ring_fd: {e}");
        return Ok(());
    }
    let feature = Feature {
        name,
        variants: &["plain", "registered"],
        bytes_per_op: None,
    };
    compare(opts, &feature, |v, ops| {
        if v == 0 {
            nops(&sub_p, &mut sq_p, &mut cq_p, ops)
        } else {
            nops(&sub_r, &mut sq_r, &mut cq_r, ops)
        }
    })
}

fn nops(
    sub: &Submitter<'_>,
    sq: &mut SubmissionQueue<'_>,
    cq: &mut CompletionQueue<'_>,
    ops: u64,
) -> io::Result<Duration> {
    let nop = opcode::Nop::new().build().user_data(1);
    let start = Instant::now();
    for _ in 0..ops {
        // SAFETY: a NOP points at no memory.
        unsafe { push(sq, &nop) }?;
        sub.submit_and_wait(1)?;
        let cqe = take_one(sub, cq)?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
    }
    Ok(start.elapsed())
}
