//! `Writer::write_async`: a plain `Future` that waits for room in the send queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::engine::send::PushError;
use crate::error::WriteError;
use crate::writer::{push_error, Writer};

/// The future returned by [`Writer::write_async`]; resolves to the number of bytes framed.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct WriteFuture<'a> {
    writer: &'a Writer,
    msg: &'a [u8],
}

impl<'a> WriteFuture<'a> {
    pub(crate) fn new(writer: &'a Writer, msg: &'a [u8]) -> Self {
        WriteFuture { writer, msg }
    }
}

impl Future for WriteFuture<'_> {
    type Output = Result<usize, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &*self.writer.inner;
        let frame = inner.codec.prepare(self.msg)?;
        let mut restarted = false;
        loop {
            match inner.sendq.push(&frame, Some(Instant::now())) {
                Ok(()) => return Poll::Ready(Ok(frame.len())),
                Err(PushError::TimedOut) => {
                    if inner.sendq.register_waker(cx.waker(), frame.len()) {
                        return Poll::Pending;
                    }
                    // Room (or a state change) appeared meanwhile: try again now.
                }
                Err(PushError::Down(_)) if !restarted => {
                    // Never dial on an executor thread: reconnect in the background and queue.
                    restarted = true;
                    inner.restart_reconnecting();
                }
                Err(err) => return Poll::Ready(Err(push_error(err))),
            }
        }
    }
}
