//! The library under test: `buffstreams-uring` and `buffstreams-epoll`.
//!
//! TO WIRE IT IN, fill the two functions below (nothing else in the bench needs to change;
//! returning `Err(StartError::Unavailable(reason))` makes the harness print
//! `SKIP contender=... reason=unavailable` and carry on, so do that when the kernel refuses
//! io_uring rather than failing).
//!
//! `server(backend, args)` runs in its own process (pinned to CPU 0 when `args.cores == 1`):
//! * listen on `127.0.0.1:0` with `args.cores` cores on `backend`, default framing (u32 BE);
//! * for every message received call `crate::stats::count(1, payload.len() as u64)` from the
//!   core that received it (cheap: a per-thread slot, no atomic RMW, no lock);
//! * when `args.echo` (ping-pong), write the payload back to the sender as one frame;
//! * return at once with the bound address; put the `Listener`/`Manager` in `keep` (it lives
//!   until the process is killed).
//!
//! `client(backend, args)` runs in its own process pinned to CPU 1 (use 1 core):
//! * `Workload::Stream`, `Workload::StreamClient` and (`buffstreams-tls`) `Workload::Tls`:
//!   `args.conns` connections to `args.addr`, each writing `args.size`-byte messages as fast
//!   as the library takes them (the end-to-end figure; in `stream-client` the server is the
//!   common std one, so it is the send path's);
//! * `Workload::Pingpong`: `args.conns` connections, each with one outstanding message: send
//!   one, wait for its echo, `crate::stats::record_rtt(start.elapsed())`, repeat;
//! * `Workload::Churn`: `args.conns` workers, each dialing, writing one message and closing,
//!   over and over;
//! * return once the connections are up (the warm-up starts then); report failures on the
//!   way with `crate::stats::client_error(e)`; put writers/runtimes in `keep`.
//!
//! `wire::payload(size)` gives the payload every other contender sends.
//!
//! `server_with` and `client_with` take a change to every `ListenerConfig` / `WriterConfig`
//! made: `buffstreams-tls` (`contenders/tls.rs`) is these same server and client with TLS,
//! `buffstreams-acked` (`contenders/acked.rs`) with acknowledged delivery. The writers of an
//! acknowledged client report what they saw acknowledged (`count_acked`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{
    Backend as EngineBackend, Listener, ListenerConfig, Runtime, RuntimeConfig, Writer,
    WriterConfig,
};

use super::contenders::StartError;
use super::contenders::{no_client, ClientArgs, ClientHandle, ServerArgs, ServerHandle};
use crate::plan::Workload;
use crate::stats;
use crate::wire::{self, MAX_FRAME};

/// Which engine backend of the library to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    fn engine(self) -> EngineBackend {
        match self {
            Backend::Uring => EngineBackend::IoUring,
            Backend::Epoll => EngineBackend::Epoll,
        }
    }
}

fn runtime(backend: Backend, cores: usize, pin: bool) -> Result<Runtime, StartError> {
    // Diagnostic knobs (both ends' runtimes; the published runs set neither):
    // BUFFSTREAMS_BENCH_BUSY_POLL_US=<micros> busy polls, BUFFSTREAMS_BENCH_SQPOLL=1 asks for
    // SQPOLL (its kernel thread idling 2 ms).
    let busy_poll = std::env::var("BUFFSTREAMS_BENCH_BUSY_POLL_US")
        .ok()
        .and_then(|us| us.parse().ok())
        .map(Duration::from_micros);
    let sqpoll = std::env::var("BUFFSTREAMS_BENCH_SQPOLL")
        .is_ok_and(|v| v == "1")
        .then_some(Duration::from_millis(2));
    Runtime::new(RuntimeConfig {
        cores,
        backend: backend.engine(),
        pin,
        busy_poll,
        sqpoll,
        ..RuntimeConfig::default()
    })
    .map_err(|e| {
        if e.io_uring_unavailable() {
            StartError::Unavailable(e.to_string())
        } else {
            StartError::Failed(e.to_string())
        }
    })
}

fn failed(e: impl std::fmt::Display) -> StartError {
    StartError::Failed(e.to_string())
}

pub fn server(backend: Backend, args: &ServerArgs) -> Result<ServerHandle, StartError> {
    server_with(backend, args, |cfg| cfg)
}

/// `server`, its `ListenerConfig` passed through `tweak`.
pub fn server_with(
    backend: Backend,
    args: &ServerArgs,
    tweak: impl FnOnce(ListenerConfig) -> ListenerConfig,
) -> Result<ServerHandle, StartError> {
    // One core: the process is already pinned to CPU 0. Several: one core thread per CPU.
    let rt = runtime(backend, args.cores, args.cores > 1)?;
    let echo = args.echo;
    let listener = Listener::bind_on(
        &rt,
        tweak(
            ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
                stats::count(1, msg.len() as u64);
                if echo {
                    conn.write(msg)?;
                }
                Ok(())
            })
            .max_message_size(MAX_FRAME),
        ),
    )
    .map_err(failed)?;
    Ok(ServerHandle {
        addr: listener.local_addr(),
        keep: Some(Box::new((listener, rt))),
    })
}

/// `BUFFSTREAMS_BENCH_LOWAT`: the writers' `TCP_NOTSENT_LOWAT` in bytes, or `none` (unset:
/// the library's default, which depends on the segment size).
fn notsent_lowat() -> Option<Option<u32>> {
    match std::env::var("BUFFSTREAMS_BENCH_LOWAT") {
        Ok(v) if v == "none" => Some(None),
        Ok(v) => v.parse().ok().map(Some),
        Err(_) => None,
    }
}

pub fn client(backend: Backend, args: &ClientArgs) -> Result<ClientHandle, StartError> {
    client_with(backend, args, |cfg| cfg)
}

/// `client`, every `WriterConfig` it makes passed through `tweak`.
pub fn client_with<T>(
    backend: Backend,
    args: &ClientArgs,
    tweak: T,
) -> Result<ClientHandle, StartError>
where
    T: Fn(WriterConfig) -> WriterConfig + Clone + Send + 'static,
{
    // The client process is pinned to CPU 1; its core thread inherits that.
    let rt = runtime(backend, 1, false)?;
    let lowat = notsent_lowat();
    let cfg = || {
        tweak(
            WriterConfig::new(args.addr.to_string())
                .max_message_size(MAX_FRAME)
                .connect_timeout(Duration::from_secs(5)),
        )
    };
    let queue = std::env::var("BUFFSTREAMS_BENCH_QUEUE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let cfg = || {
        let cfg = match lowat {
            Some(lowat) => cfg().notsent_lowat(lowat),
            None => cfg(),
        };
        match queue {
            Some(bytes) => cfg.send_queue_bytes(bytes),
            None => cfg,
        }
    };
    match args.workload {
        Workload::Stream | Workload::StreamClient | Workload::Tls => {
            let writers = (0..args.conns)
                .map(|_| Writer::dial_on(&rt, cfg()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            count_acked(&writers);
            let payload = wire::payload(args.size);
            // One thread round-robins over the connections, a batch at a time, as the tokio
            // client drives its connections from one thread.
            std::thread::Builder::new()
                .name("bs-stream".into())
                .spawn(move || {
                    let result = match WriteMode::from_env() {
                        WriteMode::Buffered => stream_buffered(&writers, &payload),
                        WriteMode::Batch => stream_batch(&writers, &payload),
                        WriteMode::Plain => stream_plain(&writers, &payload),
                    };
                    if let Err(e) = result {
                        stats::client_error(e);
                    }
                })
                .map_err(failed)?;
        }
        Workload::Pingpong => {
            // Each reply is timed and answered from the core that received it: no thread hop.
            let payload = Arc::new(wire::payload(args.size));
            let mut writers = Vec::with_capacity(args.conns);
            for _ in 0..args.conns {
                let sent_at = Arc::new(Mutex::new(Instant::now()));
                let (at, next) = (sent_at.clone(), payload.clone());
                let writer = Writer::dial_on(
                    &rt,
                    cfg().on_message(move |_reply, conn| {
                        let mut at = at.lock().unwrap_or_else(|e| e.into_inner());
                        stats::record_rtt(at.elapsed());
                        stats::count(1, next.len() as u64);
                        *at = Instant::now();
                        conn.write(&next)?;
                        Ok(())
                    }),
                )
                .map_err(failed)?;
                *sent_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                writer.write(&payload).map_err(failed)?;
                writers.push(writer);
            }
            count_acked(&writers);
            return Ok(ClientHandle {
                keep: Some(Box::new((writers, rt))),
            });
        }
        Workload::Churn => {
            let payload = wire::payload(args.size);
            for _ in 0..args.conns {
                let (rt, payload, addr) = (rt.clone(), payload.clone(), args.addr);
                let tweak = tweak.clone();
                std::thread::Builder::new()
                    .name("bs-churn".into())
                    .spawn(move || loop {
                        let cfg =
                            tweak(WriterConfig::new(addr.to_string()).max_message_size(MAX_FRAME));
                        let result = Writer::dial_on(&rt, cfg)
                            .map_err(|e| e.to_string())
                            .and_then(|w| {
                                w.write(&payload).map_err(|e| e.to_string())?;
                                w.close().map_err(|e| e.to_string())
                            });
                        if let Err(e) = result {
                            stats::client_error(e);
                            return;
                        }
                        stats::count(1, payload.len() as u64);
                    })
                    .map_err(failed)?;
            }
        }
        other => return Err(no_client(other)),
    }
    Ok(ClientHandle {
        keep: Some(Box::new(rt)),
    })
}

/// Acknowledged writers (`WriterConfig::acked`) become the client's count of acknowledged
/// messages (`stats::set_acked_source`), which the trial's rate is then taken from; plain ones
/// change nothing.
fn count_acked(writers: &[Writer]) {
    if writers.iter().any(|w| w.acked_stats().is_some()) {
        let writers = writers.to_vec();
        stats::set_acked_source(move || {
            writers
                .iter()
                .filter_map(Writer::acked_stats)
                .map(|s| s.acked)
                .sum()
        });
    }
}

/// How the streaming client writes (`BUFFSTREAMS_BENCH_WRITE`): `buffered` (the default: a
/// `BufferedWriter` per connection, the library's counterpart of the std client's `BufWriter`),
/// `batch` (`write_batch` of 64 messages) or `plain` (`Writer::write` per message).
enum WriteMode {
    Buffered,
    Batch,
    Plain,
}

impl WriteMode {
    fn from_env() -> WriteMode {
        match std::env::var("BUFFSTREAMS_BENCH_WRITE").as_deref() {
            Ok("plain") => WriteMode::Plain,
            Ok("batch") => WriteMode::Batch,
            _ => WriteMode::Buffered,
        }
    }
}

/// One thread round-robins over the connections, 64 messages at a time, as the tokio client
/// drives its connections from one thread.
fn stream_buffered(writers: &[Writer], payload: &[u8]) -> Result<(), String> {
    let batch = wire::env_bytes("BUFFSTREAMS_BENCH_BATCH");
    let mut outs: Vec<_> = writers
        .iter()
        .map(|w| batch.map_or_else(|| w.buffered(), |n| w.buffered_with_capacity(n)))
        .collect();
    loop {
        for out in &mut outs {
            for _ in 0..64 {
                out.write(payload).map_err(|e| e.to_string())?;
            }
        }
    }
}

fn stream_batch(writers: &[Writer], payload: &[u8]) -> Result<(), String> {
    let batch = vec![payload; 64];
    loop {
        for writer in writers {
            writer.write_batch(&batch).map_err(|e| e.to_string())?;
        }
    }
}

fn stream_plain(writers: &[Writer], payload: &[u8]) -> Result<(), String> {
    loop {
        for writer in writers {
            for _ in 0..64 {
                writer.write(payload).map_err(|e| e.to_string())?;
            }
        }
    }
}
