//! Where `send`'s messages come from: standard input's lines, a file (whole, or its lines), or
//! a generator of numbered printable messages.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use buffstreams::frame::Codec;
use buffstreams::Framing;

use crate::{Failure, SendArgs, Stop};

/// Lines the standard input reader hands over at a time, at most.
const LINES_PER_BATCH: usize = 1024;

/// What the message source has next.
pub enum Next {
    /// A message, in the buffer given.
    Message,
    /// Nothing right now (standard input is waiting for the user): send what is batched.
    Idle,
    /// No more messages.
    End,
}

/// Where messages come from.
pub enum Source {
    /// `--generate N --size S`.
    Generate {
        template: Vec<u8>,
        next: u64,
        count: u64,
        delimiter: Option<u8>,
    },
    /// `--stdin-lines`: batches of lines from a reader thread.
    Stdin {
        batches: Receiver<Result<Vec<Vec<u8>>, String>>,
        batch: VecDeque<Vec<u8>>,
        idle: bool,
    },
    /// `--file F` (one message, or its lines with `--lines`).
    Memory(VecDeque<Vec<u8>>),
}

impl Source {
    /// Opens the source the options name; generated messages are checked against the maximum
    /// here, before anything is dialed.
    pub fn open(args: &SendArgs, codec: &Codec) -> Result<Source, Failure> {
        if let (Some(count), Some(size)) = (args.generate, args.size) {
            if size > codec.max_message_size() {
                return Err(Failure::Run(format!(
                    "messages of {size} bytes are over the maximum message size of {} (--max)",
                    codec.max_message_size()
                )));
            }
            let delimiter = match codec.framing() {
                Framing::Delimited(byte) => Some(byte),
                _ => None,
            };
            let mut template: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            avoid(&mut template, delimiter);
            return Ok(Source::Generate {
                template,
                next: 0,
                count,
                delimiter,
            });
        }
        if let Some(path) = &args.file {
            let contents = std::fs::read(path)
                .map_err(|e| Failure::Run(format!("cannot read {}: {e}", path.display())))?;
            let messages = if args.lines {
                split_lines(&contents)
            } else {
                VecDeque::from([contents])
            };
            return Ok(Source::Memory(messages));
        }
        let (tx, batches) = mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_lines(io::stdin(), |batch| tx.send(batch).is_ok()))
            .map_err(|e| Failure::Run(format!("cannot start reading standard input: {e}")))?;
        Ok(Source::Stdin {
            batches,
            batch: VecDeque::new(),
            idle: false,
        })
    }

    /// Puts the next message in `buf`.
    pub fn next(&mut self, buf: &mut Vec<u8>, stop: &Stop) -> Result<Next, Failure> {
        match self {
            Source::Generate {
                template,
                next,
                count,
                delimiter,
            } => {
                if *next >= *count {
                    return Ok(Next::End);
                }
                buf.clear();
                buf.extend_from_slice(template);
                number(buf, *next, *delimiter);
                *next += 1;
                Ok(Next::Message)
            }
            Source::Memory(messages) => Ok(match messages.pop_front() {
                Some(msg) => {
                    *buf = msg;
                    Next::Message
                }
                None => Next::End,
            }),
            Source::Stdin {
                batches,
                batch,
                idle,
            } => loop {
                if let Some(line) = batch.pop_front() {
                    *buf = line;
                    *idle = false;
                    return Ok(Next::Message);
                }
                let received = if *idle {
                    if stop.requested() {
                        return Ok(Next::End);
                    }
                    match batches.recv_timeout(Duration::from_millis(100)) {
                        Ok(lines) => lines,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return Ok(Next::End),
                    }
                } else {
                    match batches.try_recv() {
                        Ok(lines) => lines,
                        Err(TryRecvError::Empty) => {
                            *idle = true;
                            return Ok(Next::Idle);
                        }
                        Err(TryRecvError::Disconnected) => return Ok(Next::End),
                    }
                };
                *batch = received.map_err(Failure::Run)?.into();
            },
        }
    }
}

/// Reads lines (without their endings) and hands them to `deliver` in batches: full ones, or
/// whatever was read when the input has nothing more buffered. Stops when `deliver` says so.
fn read_lines(input: impl Read, mut deliver: impl FnMut(Result<Vec<Vec<u8>>, String>) -> bool) {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut batch = Vec::new();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                strip_line_ending(&mut line);
                batch.push(line);
                // Nothing more read ahead: the next read may wait (for the user to type).
                let drained = input.buffer().is_empty();
                let full = batch.len() >= LINES_PER_BATCH || drained;
                if full && !deliver(Ok(std::mem::take(&mut batch))) {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                deliver(Err(format!("cannot read standard input: {err}")));
                return;
            }
        }
    }
    if !batch.is_empty() {
        deliver(Ok(batch));
    }
}

/// Removes a trailing `\n` or `\r\n`.
fn strip_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// The lines of `contents`, without their endings (a last line without one counts too).
fn split_lines(contents: &[u8]) -> VecDeque<Vec<u8>> {
    let mut lines = VecDeque::new();
    read_lines(contents, |batch| {
        if let Ok(batch) = batch {
            lines.extend(batch);
        }
        true
    });
    lines
}

/// Replaces every `delimiter` byte of `bytes` with another printable byte.
fn avoid(bytes: &mut [u8], delimiter: Option<u8>) {
    if let Some(d) = delimiter {
        let other = if d == b'.' { b'-' } else { b'.' };
        bytes
            .iter_mut()
            .filter(|b| **b == d)
            .for_each(|b| *b = other);
    }
}

/// Writes `index` as 10 decimal digits and a space over the start of the generated message.
fn number(buf: &mut [u8], index: u64, delimiter: Option<u8>) {
    let mut head = [b' '; 11];
    let mut n = index;
    for digit in head[..10].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let len = buf.len().min(head.len());
    buf[..len].copy_from_slice(&head[..len]);
    avoid(&mut buf[..len], delimiter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_endings() {
        let lines: Vec<_> = split_lines(b"one\r\ntwo\n\nlast").into_iter().collect();
        assert_eq!(lines, [&b"one"[..], b"two", b"", b"last"]);
        assert!(split_lines(b"").is_empty());
        assert_eq!(split_lines(b"x\n").len(), 1);
    }

    #[test]
    fn generated_messages_are_numbered_and_avoid_the_delimiter() {
        let mut buf = b"abcdefghijklmnop".to_vec();
        number(&mut buf, 42, None);
        assert_eq!(buf, b"0000000042 lmnop");
        let mut short = b"abc".to_vec();
        number(&mut short, 7, None);
        assert_eq!(short, b"000");
        let mut zeros = b"abcdefghijklm".to_vec();
        number(&mut zeros, 1, Some(b'0'));
        assert_eq!(zeros, b".........1 lm");
        let mut template = b"a.b.".to_vec();
        avoid(&mut template, Some(b'.'));
        assert_eq!(template, b"a-b-");
    }
}
