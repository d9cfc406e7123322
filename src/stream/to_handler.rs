//! Delivery to a message handler called on the owning core.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::acked::sequencer::Sequencer;
use crate::error::ConnError;
use crate::frame::Decoder;
use crate::stream::conn::Conn;
use crate::stream::delivery::Fed;
use crate::stream::handler::{HandlerErrorPolicy, MessageHandler};

/// Decodes `data`, calling `handler` with every message (`None`: messages are dropped). Stops
/// early only when the decoder's budget is short (the caller keeps the rest).
///
/// A panicking handler closes the connection. The unwind guard covers the whole chunk rather
/// than each message (it costs a call per message otherwise): after a panic the decoder, left
/// in the middle of the chunk, is never fed again, and dropping it returns what it reserved.
///
/// On an acknowledged connection `seq` numbers the messages: one delivered already is dropped,
/// and one is delivered once its handler returned (with an error too: the application had it).
pub(crate) fn feed(
    decoder: &mut Decoder,
    handler: Option<&MessageHandler>,
    conn: &Conn,
    policy: HandlerErrorPolicy,
    mut seq: Option<&mut Sequencer>,
    data: &[u8],
) -> Result<Fed, ConnError> {
    let mut messages = 0u64;
    let Some(handler) = handler else {
        let used = decoder.decode(data, |_| {
            messages += 1;
            ControlFlow::Continue(())
        })?;
        return Ok(Fed {
            used,
            messages,
            full: false,
        });
    };
    let mut failure = None;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        decoder.decode(data, |msg| {
            let mark = match seq.as_deref_mut() {
                None => None,
                Some(seq) => match seq.next() {
                    None => return ControlFlow::Continue(()),
                    Some(mark) => {
                        conn.mark_duplicate(mark.dup);
                        Some(mark.seq)
                    }
                },
            };
            messages += 1;
            let handled = handler(msg, conn);
            if let (Some(seq), Some(mark)) = (seq.as_deref_mut(), mark) {
                seq.delivered(mark);
            }
            match handled {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => match policy {
                    HandlerErrorPolicy::LogAndContinue => {
                        tracing::warn!(conn = conn.id(), error = %err, "message handler failed");
                        ControlFlow::Continue(())
                    }
                    HandlerErrorPolicy::Close => {
                        failure = Some(ConnError::Handler(err.into_inner()));
                        ControlFlow::Break(())
                    }
                },
            }
        })
    }));
    let used = match decoded {
        Ok(decoded) => decoded?,
        Err(_) => return Err(ConnError::HandlerPanic),
    };
    match failure {
        Some(err) => Err(err),
        None => Ok(Fed {
            used,
            messages,
            full: false,
        }),
    }
}
