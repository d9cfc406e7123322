//! `buffstreams listen`: accept connections and print every message (its length, hex, text or
//! protobuf fields), or a live rate; optionally echo each message back. With `--acked`, the
//! acknowledged protocol: possible duplicates are marked, duplicates dropped are counted.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use buffstreams::{
    Conn, Listener, ListenerConfig, Message, RecvTimeoutError, RuntimeConfig, TryRecvError,
};

use crate::{
    backend_name, decode_raw, framing, si, tls, Failure, ListenArgs, Print, StatusLine, Stop,
};

/// Messages the channel between the listener's core and this thread holds.
const CHANNEL_MESSAGES: usize = 4096;

/// How often the live rate line is recomputed.
const RATE_EVERY: Duration = Duration::from_millis(500);

/// How long echoes (and acknowledgements) may take to leave once the listener is done.
const ECHO_GRACE: Duration = Duration::from_secs(2);

/// Acknowledged: how long to let the last acknowledgements be queued before closing (the
/// listener's cores send what is pending every 50 ms).
const ACK_SETTLE: Duration = Duration::from_millis(150);

/// Acknowledged: connections kept for their last acknowledgements, above which the closed ones
/// are forgotten.
const ACK_CONNS_KEPT: usize = 1024;

/// Messages and bytes received, and when the first and the last arrived.
#[derive(Default)]
struct Totals {
    messages: u64,
    bytes: u64,
    /// Acknowledged mode: messages flagged as possible duplicates.
    flagged: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Totals {
    fn add(&mut self, len: usize) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.messages += 1;
        self.bytes += len as u64;
    }

    /// Seconds from the first message to the last.
    fn span(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Runs `listen` until `--count` messages arrived, Ctrl-C, or stdout is closed.
pub fn run(args: &ListenArgs, stop: &Stop) -> Result<(), Failure> {
    let codec = framing::codec(args.framing.framing, args.framing.max).map_err(Failure::Usage)?;
    if args.acked {
        framing::check_acked(codec.framing()).map_err(Failure::Usage)?;
    }
    let (config, messages) = ListenerConfig::with_channel(args.addr.clone(), CHANNEL_MESSAGES);
    let config = config
        .framing(codec.framing())
        .max_message_size(codec.max_message_size())
        .runtime(RuntimeConfig {
            cores: 1,
            pin: false,
            ..RuntimeConfig::default()
        })
        .on_close(|info, reason, _unsent| {
            if let buffstreams::CloseReason::Error(err) = reason {
                match info.peer_cred {
                    Some(cred) => eprintln!(
                        "warning: connection from pid {} (uid {}) closed: {err}",
                        cred.pid, cred.uid
                    ),
                    None => eprintln!("warning: connection from {} closed: {err}", info.peer),
                }
            }
        })
        .acked(args.acked);
    let (config, tls) = tls::listen(&args.tls, config)?;
    let listener = Listener::bind(config).map_err(|e| Failure::Run(e.to_string()))?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let announce = writeln!(
        out,
        "listening on {} ({}, max {} bytes, {} backend{}{})",
        listener.endpoint(),
        framing::name(codec.framing()),
        codec.max_message_size(),
        backend_name(listener.runtime().backend()),
        tls.map(|what| format!(", {what}")).unwrap_or_default(),
        if args.acked { ", acknowledged" } else { "" }
    )
    .and_then(|()| out.flush());
    if let Err(err) = announce {
        listener.close();
        return output_error(err);
    }

    let started = Instant::now();
    let mut totals = Totals::default();
    let status = (args.print == Print::None).then(StatusLine::start);
    let mut rate = RateWindow::new(started);
    let mut echoed: HashMap<u64, Conn> = HashMap::new();
    let mut acking: HashMap<u64, Conn> = HashMap::new();
    let mut handshakes = HandshakeFailures::default();
    let mut result = Ok(());
    let limit = args.count.unwrap_or(u64::MAX);
    while totals.messages < limit && !stop.requested() {
        let msg = match messages.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Closed) => break,
            Err(TryRecvError::Empty) => {
                // Idle: show what was printed, then wait (a while at a time, for Ctrl-C).
                if let Err(err) = out.flush() {
                    result = output_error(err);
                    break;
                }
                if let Some(status) = &status {
                    rate.show(status, &totals);
                }
                if tls.is_some() {
                    handshakes.check(&listener);
                }
                match messages.recv_timeout(Duration::from_millis(100)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Closed) => break,
                }
            }
        };
        totals.add(msg.payload.len());
        let dup = msg.possible_duplicate();
        totals.flagged += u64::from(dup);
        let printed = print(&mut out, args.print, totals.messages, &msg.payload, dup)
            // Acknowledged: the message is acknowledged as it is taken; its line goes out now,
            // not with the next idle moment (a killed listener would lose what is buffered).
            .and_then(|()| if args.acked { out.flush() } else { Ok(()) });
        if let Err(err) = printed {
            result = output_error(err);
            break;
        }
        if args.echo {
            echo(&msg, &mut echoed);
        }
        if args.acked {
            keep_for_acks(&msg, &mut acking);
        }
        if let Some(status) = &status {
            if totals.messages % 1024 == 0 {
                rate.show(status, &totals);
            }
        }
    }
    if let Some(status) = &status {
        status.clear();
    }
    if let Err(err) = out.flush() {
        if result.is_ok() {
            result = output_error(err);
        }
    }
    drop(out);
    // The listener's own count: a TLS connection counts once its handshake is done, and the
    // cores' counters (published from time to time) may not show it yet.
    let stats = listener.stats();
    let accepted = stats.accepted;
    if args.acked {
        // The last acknowledgements may wait for the cores' next tick: let them be queued,
        // then close each connection once it sent them (closing the listener would cut them).
        std::thread::sleep(ACK_SETTLE);
        echoed.extend(acking);
    }
    finish_echoes(echoed);
    if tls.is_some() {
        handshakes.check(&listener);
    }
    listener.close();
    let interrupted = if stop.requested() {
        "interrupted: "
    } else {
        ""
    };
    let span = totals.span();
    let rate = if totals.messages > 1 && span >= 0.001 {
        format!(
            ", {span:.3} s from the first to the last ({}msgs/s)",
            si((totals.messages - 1) as f64 / span)
        )
    } else {
        String::new()
    };
    // Acknowledged: duplicates dropped (re-sent to this listener, which had them) and those
    // received flagged (re-sent after a restart: an earlier listener may have had them).
    let acked = if args.acked {
        format!(
            "; {} duplicate(s) dropped, {} possible duplicate(s) flagged",
            stats.duplicates_dropped, totals.flagged
        )
    } else {
        String::new()
    };
    eprintln!(
        "{interrupted}received {} messages ({} bytes) on {accepted} connection(s){rate}{acked}",
        totals.messages, totals.bytes,
    );
    result
}

/// TLS handshakes that failed, reported on stderr as they are seen (the listener closes their
/// connections before they deliver anything).
#[derive(Default)]
struct HandshakeFailures {
    reported: u64,
}

impl HandshakeFailures {
    fn check(&mut self, listener: &Listener) {
        let failed = listener.stats().handshake_failures;
        if failed > self.reported {
            eprintln!(
                "warning: {} TLS handshake(s) failed, connection(s) closed (a client without a \
                 trusted certificate, one not speaking TLS, or a timeout)",
                failed - self.reported
            );
            self.reported = failed;
        }
    }
}

/// A closed stdout (`listen … | head`) ends listening quietly; other output errors are errors.
fn output_error(err: io::Error) -> Result<(), Failure> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::Run(format!(
            "cannot write to standard output: {err}"
        )))
    }
}

/// What ends the (first) line of a message flagged as a possible duplicate: a tab, which no
/// printed message contains (text escapes it), then `dup`.
const DUP_MARK: &str = "\tdup";

/// Writes one message's line(s); `dup` (a possible duplicate) ends the first with [`DUP_MARK`].
fn print(
    out: &mut impl Write,
    mode: Print,
    number: u64,
    payload: &[u8],
    dup: bool,
) -> io::Result<()> {
    let mark = if dup { DUP_MARK } else { "" };
    match mode {
        Print::None => Ok(()),
        Print::Len => writeln!(out, "{}{mark}", payload.len()),
        Print::Hex => {
            for byte in payload {
                write!(out, "{byte:02x}")?;
            }
            writeln!(out, "{mark}")
        }
        Print::Text => {
            write_escaped(out, payload)?;
            writeln!(out, "{mark}")
        }
        Print::Protobuf => {
            writeln!(out, "# message {number}: {} bytes{mark}", payload.len())?;
            match decode_raw::decode(payload) {
                Ok(fields) => out.write_all(decode_raw::render(&fields).as_bytes()),
                Err(err) => writeln!(
                    out,
                    "(not a protobuf message: {err}) {}",
                    decode_raw::hex(payload)
                ),
            }
        }
    }
}

/// `payload` as one line of text: UTF-8 as is, except `\`, control characters (`\n`, `\t`,
/// `\r`, `\u{..}`) and bytes that are not UTF-8 (`\xNN`), which are escaped.
fn write_escaped(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    for chunk in payload.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            let escaped = match c {
                '\\' => Some("\\\\".to_string()),
                '\n' => Some("\\n".to_string()),
                '\r' => Some("\\r".to_string()),
                '\t' => Some("\\t".to_string()),
                c if c.is_control() => Some(format!("\\u{{{:x}}}", u32::from(c))),
                _ => None,
            };
            if let Some(escaped) = escaped {
                out.write_all(&valid.as_bytes()[start..i])?;
                out.write_all(escaped.as_bytes())?;
                start = i + c.len_utf8();
            }
        }
        out.write_all(&valid.as_bytes()[start..])?;
        for byte in chunk.invalid() {
            write!(out, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

/// Writes `msg` back on its connection (waiting while that connection's queue is full), and
/// keeps the connection so that its echoes can be sent before the listener closes.
fn echo(msg: &Message, echoed: &mut HashMap<u64, Conn>) {
    match msg.conn.write(&msg.payload) {
        Ok(_) => {
            echoed
                .entry(msg.conn.id())
                .or_insert_with(|| msg.conn.clone());
        }
        Err(err) => {
            if echoed.remove(&msg.conn.id()).is_some() || msg.conn.is_open() {
                eprintln!("warning: cannot echo to {}: {err}", msg.conn.peer_addr());
            }
        }
    }
}

/// Keeps `msg`'s connection, so that its last acknowledgements can be sent before the listener
/// closes (connections closed since are forgotten from time to time).
fn keep_for_acks(msg: &Message, acking: &mut HashMap<u64, Conn>) {
    if acking.contains_key(&msg.conn.id()) {
        return;
    }
    if acking.len() >= ACK_CONNS_KEPT {
        acking.retain(|_, conn| conn.is_open());
    }
    acking.insert(msg.conn.id(), msg.conn.clone());
}

/// Lets the echoes (and acknowledgements) still queued leave: each connection closes once its
/// queue is sent, and this waits (at most [`ECHO_GRACE`]) for them.
fn finish_echoes(echoed: HashMap<u64, Conn>) {
    for conn in echoed.values() {
        conn.close();
    }
    let deadline = Instant::now() + ECHO_GRACE;
    while echoed.values().any(Conn::is_open) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The rate over the last [`RATE_EVERY`], for the live line.
struct RateWindow {
    started: Instant,
    at: Instant,
    messages: u64,
    bytes: u64,
    text: String,
}

impl RateWindow {
    fn new(started: Instant) -> RateWindow {
        RateWindow {
            started,
            at: started,
            messages: 0,
            bytes: 0,
            text: "waiting for messages".into(),
        }
    }

    /// Recomputes the rate if a window passed, and shows it.
    fn show(&mut self, status: &StatusLine, totals: &Totals) {
        let now = Instant::now();
        let window = now.duration_since(self.at);
        if window >= RATE_EVERY {
            let secs = window.as_secs_f64();
            self.text = format!(
                "{}msgs/s, {}B/s; {} messages, {}B in {:.0} s",
                si((totals.messages - self.messages) as f64 / secs),
                si((totals.bytes - self.bytes) as f64 / secs),
                totals.messages,
                si(totals.bytes as f64),
                now.duration_since(self.started).as_secs_f64()
            );
            self.at = now;
            self.messages = totals.messages;
            self.bytes = totals.bytes;
        }
        status.set(self.text.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(mode: Print, payload: &[u8]) -> String {
        printed_dup(mode, payload, false)
    }

    fn printed_dup(mode: Print, payload: &[u8], dup: bool) -> String {
        let mut out = Vec::new();
        print(&mut out, mode, 7, payload, dup).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_possible_duplicate_ends_its_first_line_with_a_tab_and_dup() {
        assert_eq!(printed_dup(Print::None, b"abc", true), "");
        assert_eq!(printed_dup(Print::Len, b"abc", true), "3\tdup\n");
        assert_eq!(printed_dup(Print::Hex, b"\x00\xff", true), "00ff\tdup\n");
        // A tab in the payload is escaped: the mark cannot be mistaken for payload.
        assert_eq!(printed_dup(Print::Text, b"a\tdup", true), "a\\tdup\tdup\n");
        assert_eq!(
            printed_dup(Print::Protobuf, &[0x08, 0x96, 0x01], true),
            "# message 7: 3 bytes\tdup\n1 (varint): 150\n"
        );
    }

    #[test]
    fn every_print_mode() {
        assert_eq!(printed(Print::None, b"abc"), "");
        assert_eq!(printed(Print::Len, b"abc"), "3\n");
        assert_eq!(printed(Print::Hex, b"\x00\xffA"), "00ff41\n");
        assert_eq!(
            printed(Print::Text, b"a\\b\nc\td\x01\xffz"),
            "a\\\\b\\nc\\td\\u{1}\\xffz\n"
        );
        assert_eq!(printed(Print::Text, "é ok".as_bytes()), "é ok\n");
        assert_eq!(
            printed(Print::Protobuf, &[0x08, 0x96, 0x01]),
            "# message 7: 3 bytes\n1 (varint): 150\n"
        );
        assert_eq!(
            printed(Print::Protobuf, &[0x08]),
            "# message 7: 1 bytes\n(not a protobuf message: truncated varint at byte 1) 08\n"
        );
    }

    #[test]
    fn a_closed_pipe_ends_quietly() {
        assert!(output_error(io::Error::from(io::ErrorKind::BrokenPipe)).is_ok());
        assert!(output_error(io::Error::from(io::ErrorKind::PermissionDenied)).is_err());
    }
}
