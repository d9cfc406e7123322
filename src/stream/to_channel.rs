//! Delivery to a bounded channel: messages are copied out as `Bytes` and queued in batches.

use std::ops::ControlFlow;

use bytes::Bytes;

use crate::acked::error::AckError;
use crate::acked::sequencer::Sequencer;
use crate::channel::{ChannelSender, Message};
use crate::error::ConnError;
use crate::frame::Decoder;
use crate::stream::conn::Conn;
use crate::stream::delivery::Fed;
use crate::stream::handler::HandlerErrorPolicy;

/// Decodes `data` into the channel, a batch at a time within the room reserved for it, until
/// the data is used up, the channel is full (`full`: the channel resumes the connection when it
/// has room), or the decoder's budget is short.
///
/// On an acknowledged connection `seq` numbers the messages: one accepted already is dropped,
/// and each message queued carries its number, so that taking it acknowledges it.
pub(crate) fn feed(
    sender: &mut ChannelSender,
    decoder: &mut Decoder,
    conn: &Conn,
    policy: HandlerErrorPolicy,
    mut seq: Option<&mut Sequencer>,
    data: &[u8],
) -> Result<Fed, ConnError> {
    let mut pos = 0;
    let mut messages = 0u64;
    loop {
        let rest = data.get(pos..).unwrap_or_default();
        let Some(room) = sender.reserve() else {
            if seq.is_some() {
                // Nothing could ever be acknowledged: the writer keeps its messages.
                return Err(AckError::NoReceiver.into());
            }
            let fed = discard(sender, decoder, conn, policy, rest)?;
            return Ok(Fed {
                used: pos + fed.used,
                messages: messages + fed.messages,
                full: false,
            });
        };
        let batch = sender.batch();
        let decoded = decoder.decode(rest, |payload| {
            let mark = match seq.as_deref_mut() {
                None => None,
                Some(seq) => match seq.next() {
                    None => return ControlFlow::Continue(()),
                    mark => mark,
                },
            };
            batch.push(Message::new(
                Bytes::copy_from_slice(payload),
                conn.clone(),
                mark,
            ));
            if batch.len() >= room {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        messages += batch.len() as u64;
        // Messages decoded before a corrupt frame are delivered, as with a handler.
        let full = sender.commit(room, conn);
        pos += decoded?;
        if full || pos >= data.len() || decoder.waiting_for_budget() {
            return Ok(Fed {
                used: pos.min(data.len()),
                messages,
                full,
            });
        }
    }
}

/// Every receiver is gone: decode and drop `data`, or fail under [`HandlerErrorPolicy::Close`].
fn discard(
    sender: &mut ChannelSender,
    decoder: &mut Decoder,
    conn: &Conn,
    policy: HandlerErrorPolicy,
    data: &[u8],
) -> Result<Fed, ConnError> {
    let mut messages = 0u64;
    let used = decoder.decode(data, |_| {
        messages += 1;
        ControlFlow::Continue(())
    })?;
    if messages > 0 {
        if policy == HandlerErrorPolicy::Close {
            return Err(ConnError::Handler(
                "every MessageReceiver was dropped: nobody takes the messages".into(),
            ));
        }
        if sender.first_discard() {
            tracing::warn!(
                conn = conn.id(),
                "every MessageReceiver was dropped: discarding this connection's messages"
            );
        }
    }
    Ok(Fed {
        used,
        messages,
        full: false,
    })
}
