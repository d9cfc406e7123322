//! `Writer::write_async`: a plain `Future` that waits for room in the send queue.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::WriteError;
use crate::stream::retry::{retry, OnDown};
use crate::writer::dial::Writer;

impl Writer {
    /// Queues `msg`, waiting for room without blocking a thread: a plain `Future` that works on
    /// any executor (it is woken by the core when room frees up).
    ///
    /// ```no_run
    /// # async fn demo(writer: buffstreams::Writer) -> Result<(), buffstreams::WriteError> {
    /// writer.write_async(b"hello").await?;
    /// # Ok(()) }
    /// ```
    pub fn write_async<'a>(&'a self, msg: &'a [u8]) -> WriteFuture<'a> {
        WriteFuture::new(self, msg)
    }
}

/// The future returned by [`Writer::write_async`]; resolves to the number of bytes framed.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct WriteFuture<'a> {
    writer: &'a Writer,
    msg: &'a [u8],
}

impl<'a> WriteFuture<'a> {
    fn new(writer: &'a Writer, msg: &'a [u8]) -> Self {
        WriteFuture { writer, msg }
    }
}

impl Future for WriteFuture<'_> {
    type Output = Result<usize, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &*self.writer.inner;
        let frame = inner.out.codec.prepare(self.msg)?;
        // Never dial on an executor thread: a link found down reconnects in the background, and
        // the message is queued for it.
        let polled = retry(inner, OnDown::Background, || {
            match inner.out.poll_push(&frame, cx) {
                Poll::Ready(Ok(())) => Ok(true),
                Poll::Ready(Err(err)) => Err(err),
                Poll::Pending => Ok(false),
            }
        });
        match polled {
            Ok(true) => Poll::Ready(Ok(frame.len())),
            Ok(false) => Poll::Pending,
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
