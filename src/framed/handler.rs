//! Delivery to a message handler called on the owning core.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::conn::Conn;
use crate::error::ConnError;
use crate::frame::Decoder;
use crate::handler::{HandlerErrorPolicy, MessageHandler};

use super::Fed;

/// Decodes `data`, calling `handler` with every message (`None`: messages are dropped). Stops
/// early only when the decoder's budget is short (the caller keeps the rest).
pub(super) fn feed(
    decoder: &mut Decoder,
    handler: Option<&MessageHandler>,
    conn: &Conn,
    policy: HandlerErrorPolicy,
    data: &[u8],
) -> Result<Fed, ConnError> {
    let mut messages = 0u64;
    let mut failure = None;
    let used = decoder.decode(data, |msg| {
        messages += 1;
        let Some(handler) = handler else {
            return ControlFlow::Continue(());
        };
        match catch_unwind(AssertUnwindSafe(|| handler(msg, conn))) {
            Ok(Ok(())) => ControlFlow::Continue(()),
            Ok(Err(err)) => match policy {
                HandlerErrorPolicy::LogAndContinue => {
                    tracing::warn!(conn = conn.id(), error = %err, "message handler failed");
                    ControlFlow::Continue(())
                }
                HandlerErrorPolicy::Close => {
                    failure = Some(ConnError::Handler(err.into_inner()));
                    ControlFlow::Break(())
                }
            },
            Err(_) => {
                failure = Some(ConnError::HandlerPanic);
                ControlFlow::Break(())
            }
        }
    })?;
    match failure {
        Some(err) => Err(err),
        None => Ok(Fed {
            used,
            messages,
            full: false,
        }),
    }
}
