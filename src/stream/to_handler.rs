//! Delivery to a message handler called on the owning core.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

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
pub(crate) fn feed(
    decoder: &mut Decoder,
    handler: Option<&MessageHandler>,
    conn: &Conn,
    policy: HandlerErrorPolicy,
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
            messages += 1;
            match handler(msg, conn) {
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
