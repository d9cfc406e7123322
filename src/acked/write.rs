//! An acknowledged writer's session: reads the listener's reply, then its tagged frames:
//! acknowledgements release the writer's kept messages, reply messages go to its handler.

use std::ops::ControlFlow;

use crate::acked::error::AckError;
use crate::acked::wire::{ListenerFrame, Prefix, Reply, REPLY_LEN};
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
        }
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
            let (used, whole) = self.reply.fill(data);
            data = &data[used..];
            let Some(bytes) = whole else {
                return Ok(Delivered::default());
            };
            let reply = Reply::parse(bytes)?;
            self.got_reply = true;
            if reply.known {
                self.sink.ack(reply.delivered)?;
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
        match reason {
            CloseReason::Error(err) => {
                tracing::info!(conn = self.sink.conn.id(), error = %err,
                    "acknowledged writer's connection closed with an error")
            }
            _ => tracing::debug!(conn = self.sink.conn.id(), %reason, "connection closed"),
        }
    }
}
