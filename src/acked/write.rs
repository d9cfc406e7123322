//! An acknowledged writer's session: reads the listener's reply, then its tagged frames:
//! acknowledgements release the writer's kept messages, reply messages go to its handler.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::acked::error::AckError;
use crate::acked::wire::{ListenerFrame, Prefix, Reply, MAGIC, REPLY_LEN};
use crate::engine::handle::{AckFault, Delivered, SendQueueHandle, Session};
use crate::error::{CloseReason, ConnError};
use crate::frame::Decoder;
use crate::stream::conn::Conn;
use crate::stream::handler::{HandlerErrorPolicy, MessageHandler};

/// See the module docs.
pub(crate) struct AckedWriterSession {
    reply: Prefix<REPLY_LEN>,
    got_reply: bool,
    decoder: Decoder,
    sink: Sink,
    refusal: Arc<Refusal>,
}

/// Connections in a row that ended before the listener's reply, after which a write or flush
/// that would dial again from the caller's thread fails instead (a plain listener closes the
/// connection on the hello; dialing it again at once would never end). Background reconnects
/// count them as failed attempts (`writer/link.rs`).
pub(crate) const NO_REPLY_LIMIT: u32 = 3;

/// What a writer's connections tell its next dial: a permanent protocol failure (the dial then
/// gives up instead of dialing a peer that cannot speak the protocol), and how many connections
/// in a row ended before the reply.
#[derive(Default)]
pub(crate) struct Refusal {
    err: Mutex<Option<AckError>>,
    /// Connections in a row that ended before the reply.
    no_reply: AtomicU32,
    /// The streak the background redial last waited for.
    paced: AtomicU32,
}

impl Refusal {
    /// The failure to give up with, once (the dial after it tries again).
    pub(crate) fn take(&self) -> Option<AckError> {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// For a dial from a caller's thread: an error if the last connections all ended before
    /// the reply (the count starts over).
    pub(crate) fn take_no_replies(&self) -> Option<AckError> {
        let n = self.no_reply.load(Ordering::Relaxed);
        if n < NO_REPLY_LIMIT {
            return None;
        }
        self.no_reply.store(0, Ordering::Relaxed);
        self.paced.store(0, Ordering::Relaxed);
        Some(AckError::NoReplies(n))
    }

    /// For a background redial: connections that ended before the reply count as failed
    /// attempts for the retry policy's giving up, and each waits its first delay.
    /// Returns the streak once per new length (the redial then waits for it), else `None`.
    pub(crate) fn streak_to_pace(&self) -> Option<u32> {
        let n = self.no_reply.load(Ordering::Relaxed);
        (n > self.paced.swap(n, Ordering::Relaxed)).then_some(n)
    }

    fn set(&self, err: AckError) {
        *self.err.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
    }
}

/// Where a listener's frames go.
struct Sink {
    conn: Conn,
    sendq: SendQueueHandle,
    handler: Option<MessageHandler>,
    policy: HandlerErrorPolicy,
}

impl AckedWriterSession {
    pub(crate) fn new(
        conn: Conn,
        sendq: SendQueueHandle,
        handler: Option<MessageHandler>,
        policy: HandlerErrorPolicy,
        refusal: Arc<Refusal>,
    ) -> AckedWriterSession {
        AckedWriterSession {
            reply: Prefix::new(),
            got_reply: false,
            decoder: Decoder::new(*conn.codec()),
            sink: Sink {
                conn,
                sendq,
                handler,
                policy,
            },
            refusal,
        }
    }

    /// Keeps a permanent failure for the next dial.
    fn failed(&self, err: AckError) -> ConnError {
        if err.is_permanent() {
            self.refusal.set(err.clone());
        }
        err.into()
    }

    fn read_reply(&mut self, data: &[u8]) -> Result<usize, AckError> {
        let (used, whole) = self.reply.fill(data);
        let Some(bytes) = whole else {
            if !self.reply.agrees_with(&MAGIC) {
                return Err(AckError::PlainListener);
            }
            return Ok(used);
        };
        let reply = Reply::parse(bytes)?;
        self.got_reply = true;
        self.refusal.no_reply.store(0, Ordering::Relaxed);
        self.refusal.paced.store(0, Ordering::Relaxed);
        if reply.known {
            self.sink.ack(reply.delivered)?;
        }
        Ok(used)
    }
}

impl Sink {
    fn ack(&self, seq: u64) -> Result<(), AckError> {
        self.sendq.ack(seq).map_err(|fault| match fault {
            AckFault::Backwards { acked } => AckError::AckBackwards { acked, got: seq },
            AckFault::Beyond { sent } => AckError::AckBeyond { sent, got: seq },
        })
    }

    fn frame(&self, payload: &[u8]) -> Result<(), ConnError> {
        match ListenerFrame::parse(payload)? {
            ListenerFrame::Ack(seq) => Ok(self.ack(seq)?),
            ListenerFrame::Message(msg) => {
                let Some(handler) = &self.handler else {
                    return Ok(());
                };
                match handler(msg, &self.conn) {
                    Ok(()) => Ok(()),
                    Err(err) => match self.policy {
                        HandlerErrorPolicy::LogAndContinue => {
                            tracing::warn!(conn = self.conn.id(), error = %err,
                                "message handler failed");
                            Ok(())
                        }
                        HandlerErrorPolicy::Close => Err(ConnError::Handler(err.into_inner())),
                    },
                }
            }
        }
    }
}

impl Session for AckedWriterSession {
    fn on_data(&mut self, mut data: &[u8]) -> Result<Delivered, ConnError> {
        if !self.got_reply {
            let used = self.read_reply(data).map_err(|err| self.failed(err))?;
            data = &data[used..];
            if !self.got_reply {
                return Ok(Delivered::default());
            }
        }
        let mut messages = 0;
        let mut failed = None;
        let (decoder, sink) = (&mut self.decoder, &self.sink);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode(data, |payload| {
                messages += 1;
                match sink.frame(payload) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(err) => {
                        failed = Some(err);
                        ControlFlow::Break(())
                    }
                }
            })
        }));
        match panicked {
            Err(_) => Err(ConnError::HandlerPanic),
            Ok(decoded) => {
                decoded?;
                match failed {
                    Some(err) => Err(err),
                    None => Ok(Delivered {
                        messages,
                        paused: false,
                    }),
                }
            }
        }
    }

    fn resume(&mut self) -> Result<Delivered, ConnError> {
        Ok(Delivered::default())
    }

    fn on_eof(&mut self) -> Result<(), ConnError> {
        if !self.got_reply {
            return Err(AckError::NoReply.into());
        }
        self.decoder.finish().map_err(ConnError::from)
    }

    fn on_close(self: Box<Self>, reason: &CloseReason) {
        if !self.got_reply {
            self.refusal.no_reply.fetch_add(1, Ordering::Relaxed);
        }
        match reason {
            CloseReason::Error(err) => {
                tracing::info!(conn = self.sink.conn.id(), error = %err,
                    "acknowledged writer's connection closed with an error")
            }
            _ => tracing::debug!(conn = self.sink.conn.id(), %reason, "connection closed"),
        }
    }
}
