//! The consuming end of a channel: blocking, timed, non-blocking and async receives,
//! iterators, and a `futures_core::Stream`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::channel::message::{Message, RecvError, RecvTimeoutError, TryRecvError};
use crate::channel::state::{resume_all, Channel};

/// The consuming end of a listener's message channel, from
/// [`ListenerConfig::with_channel`](crate::ListenerConfig::with_channel).
///
/// Cheap to clone; clones share one queue (each message goes to exactly one of them). Usable
/// from any thread ([`recv`](MessageReceiver::recv), [`recv_timeout`](MessageReceiver::recv_timeout),
/// [`try_recv`](MessageReceiver::try_recv), iteration) and from any async executor
/// ([`recv_async`](MessageReceiver::recv_async), a plain `Future`).
///
/// The channel ends (`recv` returns [`RecvError`], iteration stops) once every listener bound
/// with the configuration has closed and the queued messages were taken. (If the configuration
/// is dropped without ever being bound, it ends too.)
///
/// When every receiver is dropped, the listener discards what arrives (it logs a warning per
/// connection, or closes connections under [`HandlerErrorPolicy::Close`]).
///
/// [`HandlerErrorPolicy::Close`]: crate::HandlerErrorPolicy::Close
///
/// ```no_run
/// use buffstreams::{Listener, ListenerConfig};
///
/// let (config, messages) = ListenerConfig::with_channel("127.0.0.1:0", 1024);
/// let listener = Listener::bind(config)?;
/// let consumer = std::thread::spawn(move || {
///     let mut total = 0;
///     for msg in messages {
///         total += msg.len();
///         let _ = msg.conn.write(b"ack");
///     }
///     total // the loop ends once the listener is closed and the queue drained
/// });
/// // ... later
/// listener.close();
/// let total = consumer.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MessageReceiver {
    chan: Arc<Channel>,
    /// The key of the waker registered by [`Stream::poll_next`](futures_core::Stream), once
    /// the stream has waited.
    stream_key: Option<u64>,
}

impl MessageReceiver {
    pub(crate) fn new(chan: Arc<Channel>) -> MessageReceiver {
        MessageReceiver {
            chan,
            stream_key: None,
        }
    }

    /// Waits for the next message. Errors once the channel is closed (every listener bound with
    /// its configuration closed) and drained.
    pub fn recv(&self) -> Result<Message, RecvError> {
        self.wait(None).map_err(|_| RecvError)
    }

    /// Waits at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        // A timeout too large to represent means no deadline.
        self.wait(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` for the next message.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Message, RecvTimeoutError> {
        self.wait(Some(deadline))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<Message, RecvTimeoutError> {
        let chan = &*self.chan;
        let mut st = chan.lock();
        loop {
            if let Some((msg, popped)) = chan.pop(&mut st) {
                drop(st);
                popped.done(&msg);
                return Ok(msg);
            }
            if st.closed() {
                return Err(RecvTimeoutError::Closed);
            }
            st.blocked += 1;
            st = match deadline {
                None => chan.ready.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        st.blocked -= 1;
                        return Err(RecvTimeoutError::Timeout);
                    }
                    chan.ready
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            // Every wake-up looks at the queue before giving up, so a notification meant for
            // this thread is never lost even if its wait timed out at the same moment.
            st.blocked -= 1;
        }
    }

    /// Takes the next message if one is queued; never waits.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        let chan = &*self.chan;
        let mut st = chan.lock();
        match chan.pop(&mut st) {
            Some((msg, popped)) => {
                drop(st);
                popped.done(&msg);
                Ok(msg)
            }
            None if st.closed() => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Waits for the next message without blocking a thread: a plain `Future` that works on any
    /// executor (it stores the task's `Waker`; no runtime is needed). Resolves to
    /// [`RecvError`] once the channel is closed and drained. Dropping it before it resolves
    /// loses nothing.
    ///
    /// ```no_run
    /// # async fn demo(messages: buffstreams::MessageReceiver) {
    /// while let Ok(msg) = messages.recv_async().await {
    ///     println!("{} bytes from {}", msg.len(), msg.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn recv_async(&self) -> RecvMessage<'_> {
        RecvMessage {
            chan: &self.chan,
            key: None,
        }
    }

    /// A blocking iterator over the messages; it ends when the channel is closed and drained.
    pub fn iter(&self) -> MessageIter<'_> {
        MessageIter { receiver: self }
    }

    /// An iterator over the messages queued now; it never waits.
    pub fn try_iter(&self) -> TryMessageIter<'_> {
        TryMessageIter { receiver: self }
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.chan.lock().queue.len()
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.chan.lock().queue.is_empty()
    }

    /// The channel's capacity in messages: when this many are queued, connections stop reading
    /// (each connection may add one message beyond it before it stops).
    pub fn capacity(&self) -> usize {
        self.chan.capacity
    }

    /// Whether the channel is closed: no listener bound with its configuration is running (or
    /// the configuration was dropped unbound). Messages may still be queued.
    pub fn is_closed(&self) -> bool {
        self.chan.lock().closed()
    }
}

impl Clone for MessageReceiver {
    fn clone(&self) -> Self {
        self.chan.lock().receivers += 1;
        MessageReceiver::new(self.chan.clone())
    }
}

impl Drop for MessageReceiver {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        if let Some(key) = self.stream_key {
            st.wakers.retain(|(k, _)| *k != key);
        }
        st.receivers = st.receivers.saturating_sub(1);
        if st.receivers > 0 {
            return;
        }
        // Nobody will read: free what is queued and let paused connections go on (they discard
        // from now on).
        let queue = std::mem::take(&mut st.queue);
        let paused = std::mem::take(&mut st.paused);
        drop(st);
        drop(queue);
        resume_all(paused);
    }
}

impl fmt::Debug for MessageReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.chan.lock();
        f.debug_struct("MessageReceiver")
            .field("capacity", &self.chan.capacity)
            .field("queued", &st.queue.len())
            .field("paused_connections", &st.paused.len())
            .field("closed", &st.closed())
            .finish()
    }
}

/// The future returned by [`MessageReceiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvMessage<'a> {
    chan: &'a Arc<Channel>,
    /// The key of this future's registered waker, once it has waited.
    key: Option<u64>,
}

impl Future for RecvMessage<'_> {
    type Output = Result<Message, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        poll_recv(this.chan, &mut this.key, cx)
    }
}

/// The messages as a [`futures_core::Stream`]: it ends (`None`) once the channel is closed and
/// drained. Works on any executor, like [`recv_async`](MessageReceiver::recv_async).
///
/// ```no_run
/// use futures_core::Stream;
/// # async fn demo(mut messages: buffstreams::MessageReceiver) {
/// // with futures::StreamExt or tokio_stream::StreamExt:
/// // while let Some(msg) = messages.next().await { ... }
/// fn takes_a_stream(_: impl Stream<Item = buffstreams::Message>) {}
/// takes_a_stream(messages);
/// # }
/// ```
impl futures_core::Stream for MessageReceiver {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        poll_recv(&this.chan, &mut this.stream_key, cx).map(Result::ok)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), None)
    }
}

/// Takes the next message, or registers `cx`'s waker under `key` (allocated on first wait;
/// removed once a message or the end is returned).
fn poll_recv(
    chan: &Arc<Channel>,
    key: &mut Option<u64>,
    cx: &mut Context<'_>,
) -> Poll<Result<Message, RecvError>> {
    let mut st = chan.lock();
    if let Some((msg, popped)) = chan.pop(&mut st) {
        if let Some(key) = key.take() {
            st.wakers.retain(|(k, _)| *k != key);
        }
        drop(st);
        popped.done(&msg);
        return Poll::Ready(Ok(msg));
    }
    if st.closed() {
        if let Some(key) = key.take() {
            st.wakers.retain(|(k, _)| *k != key);
        }
        return Poll::Ready(Err(RecvError));
    }
    let key = *key.get_or_insert_with(|| {
        let key = st.next_key;
        st.next_key = st.next_key.wrapping_add(1);
        key
    });
    match st.wakers.iter_mut().find(|(k, _)| *k == key) {
        Some((_, waker)) => waker.clone_from(cx.waker()),
        None => st.wakers.push((key, cx.waker().clone())),
    }
    Poll::Pending
}

impl Drop for RecvMessage<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.chan.lock().wakers.retain(|(k, _)| *k != key);
        }
    }
}

impl fmt::Debug for RecvMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvMessage").finish_non_exhaustive()
    }
}

/// A blocking iterator over a [`MessageReceiver`]'s messages, from
/// [`MessageReceiver::iter`]; it ends when the channel is closed and drained.
#[derive(Debug)]
pub struct MessageIter<'a> {
    receiver: &'a MessageReceiver,
}

impl Iterator for MessageIter<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.receiver.recv().ok()
    }
}

/// A non-blocking iterator over the messages queued now, from [`MessageReceiver::try_iter`].
#[derive(Debug)]
pub struct TryMessageIter<'a> {
    receiver: &'a MessageReceiver,
}

impl Iterator for TryMessageIter<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.receiver.try_recv().ok()
    }
}

/// An owning blocking iterator over a [`MessageReceiver`]'s messages; it ends when the channel
/// is closed and drained.
#[derive(Debug)]
pub struct IntoMessageIter {
    receiver: MessageReceiver,
}

impl Iterator for IntoMessageIter {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.receiver.recv().ok()
    }
}

impl IntoIterator for MessageReceiver {
    type Item = Message;
    type IntoIter = IntoMessageIter;

    fn into_iter(self) -> IntoMessageIter {
        IntoMessageIter { receiver: self }
    }
}

impl<'a> IntoIterator for &'a MessageReceiver {
    type Item = Message;
    type IntoIter = MessageIter<'a>;

    fn into_iter(self) -> MessageIter<'a> {
        self.iter()
    }
}
