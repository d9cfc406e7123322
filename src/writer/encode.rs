//! Writing without an intermediate buffer: `write_with` (the caller encodes straight into the
//! send memory) and `write_batch` (many messages under one lock acquisition).

use crate::error::{BatchError, WriteError};
use crate::frame::Frame;
use crate::stream::outbound::complete;
use crate::stream::retry::{retry, OnDown};
use crate::writer::dial::Writer;

impl Writer {
    /// Queues a `len`-byte message that `fill` writes straight into the send memory: the frame
    /// is built where the kernel will send it from, so a serialiser that knows its encoded
    /// length (prost's `encoded_len`, a fixed-layout struct) needs no intermediate `Vec`.
    /// Returns the number of bytes framed. Waits for room like [`Writer::write`].
    ///
    /// `fill` runs under the writer's queue lock (other threads' writes wait meanwhile): keep
    /// it short, and do not write to this writer from inside it (that would deadlock). With
    /// [`Framing::Delimited`](crate::Framing::Delimited), a payload that contains the delimiter
    /// is not queued: [`FrameError::DelimiterInPayload`](crate::FrameError::DelimiterInPayload).
    ///
    /// ```no_run
    /// use buffstreams::{Writer, WriterConfig};
    /// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// let (id, value) = (7u32, 1.5f64);
    /// writer.write_with(12, |buf| {
    ///     buf[..4].copy_from_slice(&id.to_le_bytes());
    ///     buf[4..].copy_from_slice(&value.to_le_bytes());
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, WriteError> {
        self.write_encoded(len, complete(fill))
    }

    /// [`write_with`](Writer::write_with) for an encoder that reports whether it wrote exactly
    /// `len` bytes (nothing is queued if not).
    pub(crate) fn write_encoded(
        &self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<usize, WriteError> {
        let inner = &*self.inner;
        let mut fill = Some(encode);
        // A link found down refuses before `fill` runs, so it runs on the next attempt.
        retry(inner, OnDown::Dial, || inner.out.encode(len, &mut fill))
    }

    /// Queues every message of `msgs` in order, framing them under one acquisition of the
    /// queue's lock (taken again only if the queue fills and this has to wait): the cheapest
    /// way to write many messages at once. Returns the number of bytes framed.
    ///
    /// Every message is checked first, so one that cannot be framed queues nothing. Frames of
    /// other threads may come between the batch's messages only where it had to wait for room.
    /// Reconnects like [`Writer::write`] when the link is down. If it stops part-way (the writer
    /// was closed, or a reconnect failed), [`BatchError::queued`] says how many were queued.
    ///
    /// ```no_run
    /// use buffstreams::{Writer, WriterConfig};
    /// let writer = Writer::dial(WriterConfig::new("127.0.0.1:5031"))?;
    /// let batch: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
    /// writer.write_batch(&batch)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_batch<M: AsRef<[u8]>>(&self, msgs: &[M]) -> Result<usize, BatchError> {
        let inner = &*self.inner;
        let frames = msgs
            .iter()
            .map(|m| inner.out.codec.prepare(m.as_ref()))
            .collect::<Result<Vec<Frame<'_>>, _>>()
            .map_err(|err| BatchError {
                queued: 0,
                error: WriteError::Frame(err),
            })?;
        let deadline = inner.out.own_core_deadline();
        let mut done = 0;
        retry(inner, OnDown::Dial, || {
            let (queued, result) = inner.out.sendq.push_frames(&frames[done..], deadline);
            done += queued;
            result
        })
        .map_err(|error| BatchError {
            queued: done,
            error,
        })?;
        Ok(frames.iter().map(Frame::len).sum())
    }
}
