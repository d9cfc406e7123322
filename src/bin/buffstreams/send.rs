//! `buffstreams send`: write messages from standard input's lines, a file, or a generator, over
//! one or more connections, batched through a `BufferedWriter` or paced at a rate. With
//! `--acked`, waits until the listener acknowledged every message (see `ack_watch.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffstreams::{
    BufferedWriter, FrameError, RetryPolicy, Runtime, RuntimeConfig, WriteError, Writer,
    WriterConfig,
};

use crate::ack_watch::{self, AckWatch, GaveUp};
use crate::source::{Next, Source};
use crate::{framing, si, tls, Failure, SendArgs, Stop};

/// Parses `--rate`: a positive number of messages per second, with an optional `k` or `M`
/// and an optional `/s` (`500`, `2.5k`, `1M/s`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a rate: give messages per second, e.g. 500, 2k or 1M/s");
    let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
    let (number, scale) = match number.as_bytes().last() {
        Some(b'k' | b'K') => (&number[..number.len() - 1], 1e3),
        Some(b'M') => (&number[..number.len() - 1], 1e6),
        _ => (number, 1.0),
    };
    let rate = number.parse::<f64>().map_err(|_| bad())? * scale;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(bad())
    }
}

/// A write error as the one line the user sees; `index` is 0-based.
fn write_failure(err: WriteError, index: u64) -> Failure {
    let n = index + 1;
    Failure::Run(match err {
        WriteError::Frame(FrameError::TooLarge { len, max, .. }) => {
            format!("message {n} is {len} bytes, over the maximum message size of {max} (--max)")
        }
        WriteError::Frame(FrameError::DelimiterInPayload { delimiter, .. }) => format!(
            "message {n} contains the delimiter byte {delimiter:#04x}, which delim framing \
             cannot carry"
        ),
        other => format!("cannot send message {n}: {other}"),
    })
}

/// What was written so far.
#[derive(Default)]
struct Sent {
    messages: u64,
    bytes: u64,
}

impl Sent {
    fn add(&mut self, len: usize) {
        self.messages += 1;
        self.bytes += len as u64;
    }
}

/// Writes every message through one `BufferedWriter` per connection, as fast as they are
/// taken. What was taken before an error is still handed on.
fn pump_batched(
    writers: &[Writer],
    source: &mut Source,
    stop: &Stop,
    sent: &mut Sent,
) -> Result<(), Failure> {
    let mut outs: Vec<BufferedWriter<'_>> = writers.iter().map(Writer::buffered).collect();
    let mut buf = Vec::new();
    let result = loop {
        if stop.requested() {
            break Ok(());
        }
        match source.next(&mut buf, stop) {
            Ok(Next::Message) => {
                let out = &mut outs[(sent.messages % writers.len() as u64) as usize];
                if let Err(err) = out.write(&buf) {
                    break Err(write_failure(err, sent.messages));
                }
                sent.add(buf.len());
            }
            // Standard input has nothing more for now: send what the user typed.
            Ok(Next::Idle) => {
                if let Err(err) = flush_all(&mut outs) {
                    break Err(err);
                }
            }
            Ok(Next::End) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    let flushed = flush_all(&mut outs);
    result.and(flushed)
}

fn flush_all(outs: &mut [BufferedWriter<'_>]) -> Result<(), Failure> {
    for out in outs {
        out.flush()
            .map_err(|e| Failure::Run(format!("cannot send: {e}")))?;
    }
    Ok(())
}

/// Writes `rate` messages per second in all, each on its own (sent at once).
fn pump_paced(
    writers: &[Writer],
    source: &mut Source,
    stop: &Stop,
    rate: f64,
    sent: &mut Sent,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut buf = Vec::new();
    while !stop.requested() {
        match source.next(&mut buf, stop)? {
            Next::Message => {
                let due = started + Duration::from_secs_f64(sent.messages as f64 / rate);
                while Instant::now() < due && !stop.requested() {
                    let wait = due.saturating_duration_since(Instant::now());
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
                if stop.requested() {
                    break;
                }
                let writer = &writers[(sent.messages % writers.len() as u64) as usize];
                writer
                    .write(&buf)
                    .map_err(|e| write_failure(e, sent.messages))?;
                sent.add(buf.len());
            }
            Next::Idle => {}
            Next::End => break,
        }
    }
    Ok(())
}

/// How `send --acked` ended its wait for acknowledgements.
struct Settled {
    /// What `flush_acked` said (not called after Ctrl-C).
    flushed: Result<(), WriteError>,
    /// Why the watchdog closed the writers, if it did.
    gave_up: Option<GaveUp>,
}

/// Waits until every message written is acknowledged (`flush_acked` on each writer), or until
/// the watchdog gives up and closes the writers, which ends the wait.
fn settle(writers: &[Writer], watch: AckWatch, stop: &Stop) -> Settled {
    let mut flushed = Ok(());
    if !stop.requested() {
        for writer in writers {
            if let Err(err) = writer.flush_acked() {
                flushed = Err(err);
                break;
            }
        }
    }
    Settled {
        flushed,
        gave_up: watch.finish(),
    }
}

impl Settled {
    /// Prints the acknowledgement summary and turns the outcome into the exit: 0 only when
    /// every message sent was acknowledged. `why`: the reason `on_failed` or `close` gave.
    fn verdict(
        self,
        outcome: Result<(), Failure>,
        sent: u64,
        acks: ack_watch::Totals,
        why: Option<String>,
        stop: &Stop,
    ) -> Result<(), Failure> {
        let acked = acks.acked.min(sent);
        eprintln!(
            "acknowledged {acked} of {sent} messages, re-sent {}",
            acks.resent
        );
        let missing = sent - acked;
        let not_acked = |why: String| {
            Failure::Run(format!(
                "{missing} of {sent} messages were not acknowledged: {why}"
            ))
        };
        match self.gave_up {
            Some(GaveUp::Interrupted) => {
                return Err(Failure::Interrupted(format!(
                    "stopped after {sent} messages, {acked} acknowledged"
                )))
            }
            Some(GaveUp::Stalled(timeout)) => {
                return Err(not_acked(format!(
                    "no acknowledgement for {} s (--ack-timeout)",
                    timeout.as_secs_f64()
                )))
            }
            Some(GaveUp::Churn(conns)) => {
                return Err(not_acked(format!(
                    "{conns} connections in a row ended without an acknowledgement; is the \
                     listener a `listen --acked` with the same --framing?"
                )))
            }
            None => {}
        }
        outcome?;
        if stop.requested() {
            return Err(Failure::Interrupted(format!(
                "stopped after {sent} messages, {acked} acknowledged"
            )));
        }
        if let Err(err) = self.flushed {
            return Err(not_acked(err.to_string()));
        }
        if missing > 0 {
            return Err(not_acked(
                why.unwrap_or_else(|| "the connection failed".into()),
            ));
        }
        Ok(())
    }
}

/// Runs `send`: dials every connection first, then writes every message of the source.
pub fn run(args: &SendArgs, stop: &Stop) -> Result<(), Failure> {
    let codec = framing::codec(args.framing.framing, args.framing.max).map_err(Failure::Usage)?;
    if args.acked {
        framing::check_acked(codec.framing()).map_err(Failure::Usage)?;
    }
    // Certificates are loaded (and a bad file reported) before anything is read or dialed.
    let config = tls::send(&args.tls, &args.addr, WriterConfig::new(args.addr.clone()))?;
    let mut source = Source::open(args, &codec)?;
    let runtime = Runtime::new(RuntimeConfig {
        cores: 1,
        pin: false,
        recv_buffers: 16,
        ..RuntimeConfig::default()
    })
    .map_err(|e| Failure::Run(format!("cannot start the runtime: {e}")))?;
    let failed = Arc::new(AtomicU64::new(0));
    let reason = Arc::new(Mutex::new(None::<String>));
    let (count, why) = (failed.clone(), reason.clone());
    let config = config
        .framing(codec.framing())
        .max_message_size(codec.max_message_size())
        .on_failed(move |lost| {
            count.fetch_add(lost.messages.len() as u64, Ordering::Relaxed);
            *why.lock().unwrap_or_else(|e| e.into_inner()) = Some(lost.reason.to_string());
        });
    // Acknowledged: reconnect for as long as it takes; the watchdog bounds the wait.
    let config = match args.acked {
        true => config.acked(true).retry(RetryPolicy::forever()),
        false => config,
    };
    let writers = (0..args.conns)
        .map(|_| Writer::dial_on(&runtime, config.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Run(e.to_string()))?;
    let watch = match args.acked {
        true => {
            let timeout = args
                .ack_timeout
                .map_or(ack_watch::DEFAULT_TIMEOUT, Duration::from_secs_f64);
            Some(AckWatch::start(writers.clone(), stop.clone(), timeout).map_err(Failure::Run)?)
        }
        false => None,
    };

    let started = Instant::now();
    let mut sent = Sent::default();
    let outcome = match args.rate {
        None => pump_batched(&writers, &mut source, stop, &mut sent),
        Some(rate) => pump_paced(&writers, &mut source, stop, rate, &mut sent),
    };
    let settled = watch.map(|watch| settle(&writers, watch, stop));
    let mut unsent = 0u64;
    for writer in &writers {
        if let Err(left) = writer.close() {
            unsent += left.unsent.len() as u64;
            let mut why = reason.lock().unwrap_or_else(|e| e.into_inner());
            why.get_or_insert_with(|| left.reason.to_string());
        }
    }
    let acks = ack_watch::totals(&writers);
    runtime.shutdown();
    let elapsed = started.elapsed().as_secs_f64();
    let lost = unsent + failed.load(Ordering::Relaxed);
    eprintln!(
        "sent {} messages ({} bytes) over {} connection(s) in {elapsed:.2} s ({}msgs/s)",
        sent.messages,
        sent.bytes,
        writers.len(),
        si(sent.messages as f64 / elapsed.max(1e-9))
    );
    if let Some(settled) = settled {
        let why = reason.lock().unwrap_or_else(|e| e.into_inner()).take();
        return settled.verdict(outcome, sent.messages, acks, why, stop);
    }
    outcome?;
    let sent = sent.messages;
    if lost > 0 {
        let why = reason.lock().unwrap_or_else(|e| e.into_inner()).take();
        return Err(Failure::Run(format!(
            "{lost} of {sent} messages were not sent: {}",
            why.unwrap_or_else(|| "the connection failed".into())
        )));
    }
    if stop.requested() {
        return Err(Failure::Interrupted(format!(
            "stopped after {sent} messages"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("2.5k"), Ok(2500.0));
        assert_eq!(parse_rate("1M/s"), Ok(1e6));
        for bad in ["", "0", "-5", "fast", "1m", "inf", "NaN", "/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn over_the_maximum_reads_as_one_line() {
        let err = WriteError::Frame(FrameError::TooLarge { len: 200, max: 100 });
        match write_failure(err, 2) {
            Failure::Run(msg) => assert_eq!(
                msg,
                "message 3 is 200 bytes, over the maximum message size of 100 (--max)"
            ),
            other => panic!("{other:?}"),
        }
    }
}
