//! What a flood of TLS handshakes does to established streams on the same core.
//!
//! A one-core TLS listener (its core pinned to CPU 0) receives a stream of 110-byte messages
//! from one TLS `BufferedWriter` (its thread and core on CPU 1). Rounds alternate two phases of
//! `--secs` each: the stream alone, and the stream while `--flooders` threads (on CPU 1) open
//! connections to the same listener as fast as they can, each sending the same ClientHello
//! (made once) and closing as soon as the server's first flight arrives: an attacker's flood,
//! cheap for the flooder, a full handshake's key exchange and signature for the server. Handshakes run on the listener's handshake thread, never on its
//! core; this measures how much of the core's CPU they take through the scheduler.
//!
//! Prints the stream's median rate in each phase (min-max), their ratio, and the handshakes
//! per second the listener completed during the flood.
//!
//! `cargo bench --features tls --bench tls_flood -- [--quick] [--rounds N] [--secs S]
//! [--flooders N]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::tls::rustls::client::Resumption;
use buffstreams::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use buffstreams::tls::rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use buffstreams::{Listener, ListenerConfig, RuntimeConfig, Writer, WriterConfig};

/// One core, pinned to `cpu`.
fn core_on(cpu: usize) -> RuntimeConfig {
    RuntimeConfig {
        cores: 1,
        pin: true,
        first_cpu: cpu,
        ..RuntimeConfig::default()
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A self-signed certificate for `localhost`, and the two configurations trusting it.
fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der()).expect("key");
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = Resumption::disabled();
    (Arc::new(server), Arc::new(client))
}

/// An attacker's flood: the same ClientHello (made once) sent on connection after connection,
/// each closed as soon as the server's first flight arrives. Cheap for the flooder, a full
/// handshake's key exchange and signature for the server. Counts the flights received.
fn flood(addr: SocketAddr, hello: Arc<Vec<u8>>, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    pin(1);
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut sock) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        if sock.write_all(&hello).is_err() {
            continue;
        }
        if matches!(sock.read(&mut buf), Ok(n) if n > 0) {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A ClientHello for `localhost`.
fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = ClientConnection::new(config.clone(), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("hello");
    hello
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One measurement on a fresh listener whose handshake thread runs at `nice`: the stream's
/// rate alone, then during the flood, and the flights the flood got answered per second.
fn measure(
    nice: i32,
    secs: f64,
    flooders: usize,
    (server, client, hello): &(Arc<ServerConfig>, Arc<ClientConfig>, Arc<Vec<u8>>),
) -> (f64, f64, f64) {
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |_m, _c| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .runtime(core_on(0))
        .tls(server.clone())
        .handshake_nice(nice),
    )
    .expect("listen");
    let addr = listener.local_addr();
    let name = ServerName::try_from("localhost").expect("name");
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .runtime(core_on(1))
            .tls(client.clone(), name),
    )
    .expect("dial");
    let stop_stream = Arc::new(AtomicBool::new(false));
    let (w, stop) = (writer.clone(), stop_stream.clone());
    let streamer = std::thread::spawn(move || {
        pin(1);
        let mut out = w.buffered();
        let msg = [7u8; 110];
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..1024 {
                if out.write(&msg).is_err() {
                    return;
                }
            }
        }
        let _ = out.flush();
    });
    let rate = |phase: Duration| {
        let before = received.load(Ordering::Relaxed);
        let t = Instant::now();
        std::thread::sleep(phase);
        (received.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64()
    };
    std::thread::sleep(Duration::from_millis(200));
    let phase = Duration::from_secs_f64(secs);
    let alone = rate(phase);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..flooders)
        .map(|_| {
            let (h, s, d) = (hello.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || flood(addr, h, s, d))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let before = done.load(Ordering::Relaxed);
    let t = Instant::now();
    let flooded = rate(phase);
    let flights = (done.load(Ordering::Relaxed) - before) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    stop_stream.store(true, Ordering::Relaxed);
    let _ = streamer.join();
    let _ = writer.close();
    listener.close();
    (alone, flooded, flights)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: usize =
        arg(&args, "--rounds").map_or(if quick { 1 } else { 5 }, |v| v.parse().expect("--rounds"));
    let secs: f64 = arg(&args, "--secs").map_or(if quick { 0.3 } else { 2.0 }, |v| {
        v.parse().expect("--secs")
    });
    let flooders: usize = arg(&args, "--flooders").map_or(2, |v| v.parse().expect("--flooders"));
    let (server, client) = configs();
    let hello = Arc::new(client_hello(&client));
    let setup = (server, client, hello);
    let nices = [buffstreams::tls::DEFAULT_HANDSHAKE_NICE, 0];
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); nices.len()];
    for _ in 0..rounds {
        for (i, &nice) in nices.iter().enumerate() {
            results[i].push(measure(nice, secs, flooders, &setup));
        }
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("[{:.2}-{:.2}]", lo / 1e6, hi / 1e6)
    };
    println!(
        "TLS stream, 110 B messages, one TLS BufferedWriter into a one-core listener; a flood of \
         ClientHellos from {flooders} threads ({rounds} rounds of {secs} s per phase, alternating)"
    );
    for (nice, runs) in nices.iter().zip(&results) {
        let alone: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let flooded: Vec<f64> = runs.iter().map(|r| r.1).collect();
        let ratios: Vec<f64> = runs.iter().map(|r| r.1 / r.0).collect();
        let flights: Vec<f64> = runs.iter().map(|r| r.2).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!("  handshake thread at nice {nice}:");
        println!(
            "    alone {:.2} M msgs/s {}, during the flood {:.2} M msgs/s {}",
            median(&mut alone.clone()) / 1e6,
            spread(&alone),
            median(&mut flooded.clone()) / 1e6,
            spread(&flooded)
        );
        println!(
            "    kept {:.2}x of its rate [{lo:.2}-{hi:.2}]; handshakes answered {:.0}/s",
            median(&mut ratios.clone()),
            median(&mut flights.clone())
        );
    }
    let _ = std::io::stdout().flush();
}
