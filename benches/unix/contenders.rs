//! The Unix socket benchmark's contenders, each written the way its users would at its best:
//! 64 KiB buffers and batched flushes. Every server counts into `Shared::received`; every
//! client writes until `Shared::stop`, then closes, which ends its server's connections.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use buffstreams::{
    Backend, Listener, ListenerConfig, Runtime, RuntimeConfig, Writer, WriterConfig,
};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{pin, Plan, Shared};

/// Buffer sizes of the std and tokio contenders (and tokio's flush batch).
const BUF: usize = 64 * 1024;
/// Largest frame anyone accepts.
const MAX_FRAME: usize = 1 << 20;

type Stop = Box<dyn FnOnce()>;

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// A fresh abstract name (no file to clean up).
fn name(what: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "@bs-bench-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn spawn_pinned(cpu: usize, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        pin(cpu);
        f()
    })
}

fn runtime(cpu: usize) -> Result<Runtime, String> {
    Runtime::new(RuntimeConfig {
        cores: 1,
        backend: Backend::IoUring,
        pin: true,
        first_cpu: cpu,
        ..RuntimeConfig::default()
    })
    .map_err(|e| e.to_string())
}

/// Our writer into our listener at `address` ("unix:@..." or "127.0.0.1:0").
fn buffstreams(address: &str, plan: Plan, shared: Arc<Shared>) -> Result<Stop, String> {
    let server = runtime(0)?;
    let count = shared.clone();
    let listener = Listener::bind_on(
        &server,
        ListenerConfig::new(address, move |_msg, _conn| {
            count.received.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .max_message_size(MAX_FRAME),
    )
    .map_err(|e| e.to_string())?;
    let client = runtime(1)?;
    let writers = (0..plan.conns)
        .map(|_| {
            Writer::dial_on(
                &client,
                WriterConfig::new(listener.endpoint().to_string()).max_message_size(MAX_FRAME),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    // BUFFSTREAMS_BENCH_BATCH=<bytes>: each BufferedWriter's batch; BUFFSTREAMS_BENCH_THREADS=conn:
    // a writing thread per connection, as std's client (diagnostic knobs).
    let batch: Option<usize> = std::env::var("BUFFSTREAMS_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok());
    let groups: Vec<Vec<Writer>> = match std::env::var("BUFFSTREAMS_BENCH_THREADS") {
        Ok(v) if v == "conn" => writers.into_iter().map(|w| vec![w]).collect(),
        _ => vec![writers],
    };
    let writing: Vec<_> = groups
        .into_iter()
        .map(|writers| {
            let (shared, msg) = (shared.clone(), payload(plan.size));
            spawn_pinned(1, move || {
                // The thread round-robins over its connections, 64 messages at a time, each
                // through its BufferedWriter (the throughput benchmark's client).
                let mut outs: Vec<_> = writers
                    .iter()
                    .map(|w| batch.map_or_else(|| w.buffered(), |n| w.buffered_with_capacity(n)))
                    .collect();
                'run: while !shared.stop.load(Ordering::Relaxed) {
                    for out in &mut outs {
                        for _ in 0..64 {
                            if out.write(&msg).is_err() {
                                break 'run;
                            }
                        }
                    }
                }
                drop(outs);
                for w in &writers {
                    let _ = w.close();
                }
            })
        })
        .collect();
    Ok(Box::new(move || {
        for w in writing {
            let _ = w.join();
        }
        listener.close();
        client.shutdown();
        server.shutdown();
    }))
}

pub fn buffstreams_uds(plan: Plan, shared: Arc<Shared>) -> Result<Stop, String> {
    buffstreams(&format!("unix:{}", name("bs")), plan, shared)
}

pub fn buffstreams_tcp(plan: Plan, shared: Arc<Shared>) -> Result<Stop, String> {
    buffstreams("127.0.0.1:0", plan, shared)
}

/// Blocking std: a thread per connection on each side.
pub fn std_uds(plan: Plan, shared: Arc<Shared>) -> Result<Stop, String> {
    let addr = std::os::unix::net::SocketAddr::from_abstract_name_compat(&name("std"))?;
    let listener = UnixListener::bind_addr(&addr).map_err(|e| e.to_string())?;
    let count = shared.clone();
    let conns = plan.conns;
    let server = spawn_pinned(0, move || {
        let readers: Vec<_> = (0..conns)
            .filter_map(|_| listener.accept().ok())
            .map(|(stream, _)| {
                let count = count.clone();
                spawn_pinned(0, move || {
                    let mut reader = BufReader::with_capacity(BUF, stream);
                    let mut buf = vec![0; MAX_FRAME];
                    let mut header = [0; 4];
                    while reader.read_exact(&mut header).is_ok() {
                        let len = u32::from_be_bytes(header) as usize;
                        if len > MAX_FRAME || reader.read_exact(&mut buf[..len]).is_err() {
                            return;
                        }
                        count.received.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for r in readers {
            let _ = r.join();
        }
    });
    let streams = (0..plan.conns)
        .map(|_| UnixStream::connect_addr(&addr))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let size = plan.size;
    let clients: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let shared = shared.clone();
            spawn_pinned(1, move || {
                let msg = payload(size);
                let header = (size as u32).to_be_bytes();
                let mut writer = BufWriter::with_capacity(BUF, stream);
                while !shared.stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        if writer.write_all(&header).is_err() || writer.write_all(&msg).is_err() {
                            return;
                        }
                    }
                }
                let _ = writer.flush();
            })
        })
        .collect();
    Ok(Box::new(move || {
        for c in clients {
            let _ = c.join();
        }
        let _ = server.join();
    }))
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// tokio: one current-thread runtime per side.
pub fn tokio_uds(plan: Plan, shared: Arc<Shared>) -> Result<Stop, String> {
    let addr = std::os::unix::net::SocketAddr::from_abstract_name_compat(&name("tokio"))?;
    let std_listener = UnixListener::bind_addr(&addr).map_err(|e| e.to_string())?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let count = shared.clone();
    let conns = plan.conns;
    let server = spawn_pinned(0, move || {
        let Ok(rt) = current_thread() else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::UnixListener::from_std(std_listener) else {
                return;
            };
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tasks.push(tokio::spawn(async move {
                    let mut frames = FramedRead::with_capacity(stream, codec(), BUF);
                    while let Some(Ok(_frame)) = frames.next().await {
                        count.received.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    let size = plan.size;
    let client = spawn_pinned(1, move || {
        let Ok(rt) = current_thread() else { return };
        rt.block_on(async move {
            let msg = Bytes::from(payload(size));
            let batch = (BUF / (size + 4)).max(1);
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let Ok(std_stream) = UnixStream::connect_addr(&addr) else {
                    return;
                };
                let _ = std_stream.set_nonblocking(true);
                let Ok(stream) = tokio::net::UnixStream::from_std(std_stream) else {
                    return;
                };
                let (msg, shared) = (msg.clone(), shared.clone());
                tasks.push(tokio::spawn(async move {
                    let mut sink = FramedWrite::with_capacity(stream, codec(), BUF);
                    sink.set_backpressure_boundary(BUF);
                    while !shared.stop.load(Ordering::Relaxed) {
                        for _ in 0..batch {
                            if sink.feed(msg.clone()).await.is_err() {
                                return;
                            }
                        }
                        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    Ok(Box::new(move || {
        let _ = client.join();
        let _ = server.join();
    }))
}

/// `SocketAddr::from_abstract_name` with a `String` error (the name given with its `@`).
trait AbstractName: Sized {
    fn from_abstract_name_compat(name: &str) -> Result<Self, String>;
}

impl AbstractName for std::os::unix::net::SocketAddr {
    fn from_abstract_name_compat(name: &str) -> Result<Self, String> {
        use std::os::linux::net::SocketAddrExt;
        let name = name.trim_start_matches('@');
        Self::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())
    }
}
