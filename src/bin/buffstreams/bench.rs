//! `buffstreams bench`: a listener and writers on loopback in this process; a live progress
//! line, then msgs/s, MB/s and the process's CPU time per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use buffstreams::DEFAULT_MAX_MESSAGE_SIZE;
use buffstreams::{
    Backend, Listener, ListenerConfig, Runtime, RuntimeConfig, Writer, WriterConfig,
};

use crate::{backend_name, si, tls, BackendArg, BenchArgs, Failure, StatusLine, Stop};

/// The library's `syscall!` (this binary is a crate of its own).
#[path = "../../sys.rs"]
#[macro_use]
mod sys;

/// How long the listener may take to receive what was sent once the writers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `--secs`: a positive number of seconds (fractions allowed), at most a day.
pub fn parse_secs(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a duration: give seconds, e.g. 5 or 0.5"
        )),
    }
}

/// User plus system CPU time this process has used so far (every thread).
fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain old data; zeroed is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live, writable rusage for getrusage to fill.
    if syscall!(getrusage(libc::RUSAGE_SELF, &mut usage)).is_err() {
        return Duration::ZERO;
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn backend(arg: BackendArg) -> Backend {
    match arg {
        BackendArg::Auto => Backend::Auto,
        BackendArg::Uring => Backend::IoUring,
        BackendArg::Epoll => Backend::Epoll,
    }
}

/// Streams `msg` through a `BufferedWriter` until `sending` clears; returns how many were sent.
fn stream(writer: Writer, msg: Vec<u8>, sending: Arc<AtomicBool>) -> Result<u64, String> {
    let mut sent = 0u64;
    let mut out = writer.buffered();
    while sending.load(Ordering::Relaxed) {
        out.write(&msg).map_err(|e| format!("write failed: {e}"))?;
        sent += 1;
    }
    out.flush().map_err(|e| format!("flush failed: {e}"))?;
    drop(out);
    writer.close().map_err(|e| e.to_string())?;
    Ok(sent)
}

/// Messages the listener has received so far (the cores publish their counters every turn).
fn received(listener: &Listener) -> u64 {
    listener
        .runtime()
        .stats()
        .iter()
        .map(|c| c.messages_received)
        .sum()
}

/// Where the bench's listener listens: a free TCP loopback port, or with `unix` a name in
/// the abstract namespace (no file to clean up) unique to this process.
fn address(unix: bool) -> String {
    match unix {
        true => format!("unix:@buffstreams-bench-{}", std::process::id()),
        false => "127.0.0.1:0".to_string(),
    }
}

/// Runs `bench`.
pub fn run(args: &BenchArgs, stop: &Stop) -> Result<(), Failure> {
    let cores = args.cores as usize;
    let max = args.size.max(DEFAULT_MAX_MESSAGE_SIZE);
    let server = Runtime::new(RuntimeConfig {
        cores,
        backend: backend(args.backend),
        ..RuntimeConfig::default()
    })
    .map_err(|e| Failure::Run(format!("cannot start the listener's runtime: {e}")))?;
    let (listener_config, tls) = tls::bench(
        args.tls,
        ListenerConfig::new(address(args.unix), |_msg, _conn| Ok(())).max_message_size(max),
    )?;
    let listener =
        Listener::bind_on(&server, listener_config).map_err(|e| Failure::Run(e.to_string()))?;
    // The writers' core goes on the CPU after the listener's.
    let client = Runtime::new(RuntimeConfig {
        cores: 1,
        backend: backend(args.backend),
        first_cpu: cores,
        ..RuntimeConfig::default()
    })
    .map_err(|e| Failure::Run(format!("cannot start the writers' runtime: {e}")))?;
    let config = WriterConfig::new(listener.endpoint().to_string()).max_message_size(max);
    let config = match tls {
        Some(tls) => tls.writer(config),
        None => config,
    };
    let writers = (0..args.conns)
        .map(|_| Writer::dial_on(&client, config.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Run(e.to_string()))?;
    eprintln!(
        "bench: {} connection(s) -> {}{} ({} backend, {} listener core(s)), {}-byte messages, \
         {} s",
        writers.len(),
        listener.endpoint(),
        if args.tls { " over TLS" } else { "" },
        backend_name(server.backend()),
        server.cores(),
        args.size,
        args.secs
    );

    let sending = Arc::new(AtomicBool::new(true));
    let cpu_before = cpu_time();
    let started = Instant::now();
    let threads: Vec<JoinHandle<Result<u64, String>>> = writers
        .into_iter()
        .map(|writer| {
            let (msg, sending) = (vec![0x5a; args.size], sending.clone());
            std::thread::spawn(move || stream(writer, msg, sending))
        })
        .collect();
    let status = StatusLine::start();
    let run_for = Duration::from_secs_f64(args.secs);
    while started.elapsed() < run_for
        && !stop.requested()
        && !threads.iter().any(JoinHandle::is_finished)
    {
        std::thread::sleep(Duration::from_millis(100));
        let (got, secs) = (received(&listener), started.elapsed().as_secs_f64());
        status.set(format!(
            "{}msgs/s, {} messages, {secs:.1} s of {}",
            si(got as f64 / secs),
            got,
            args.secs
        ));
    }
    sending.store(false, Ordering::Relaxed);
    let mut sent = 0u64;
    let mut error = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(_) => error = error.or(Some("a writer thread panicked".to_string())),
        }
    }
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while received(&listener) < sent && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64();
    let got = received(&listener);
    status.clear();
    listener.close();
    client.shutdown();
    server.shutdown();

    let rate = got as f64 / elapsed;
    let interrupted = if stop.requested() {
        " (interrupted)"
    } else {
        ""
    };
    println!(
        "bench: {got} messages of {} bytes in {elapsed:.2} s{interrupted}: {}msgs/s, {:.1} MB/s, \
         {:.0} ns CPU per message ({cpu:.2} s of process CPU)",
        args.size,
        si(rate),
        rate * args.size as f64 / 1e6,
        cpu * 1e9 / (got.max(1) as f64),
    );
    if let Some(err) = error {
        return Err(Failure::Run(err));
    }
    if got != sent {
        return Err(Failure::Run(format!(
            "the listener received {got} of the {sent} messages sent"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("5"), Ok(5.0));
        assert_eq!(parse_secs("0.5"), Ok(0.5));
        for bad in ["0", "-1", "x", "", "1e9"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_time_moves_forward() {
        let before = cpu_time();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time() > before);
    }
}
