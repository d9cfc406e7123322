//! The channel's wake-ups without a core thread: who is woken when a batch is queued, and
//! which paused connections are told to read again when the consumer makes room.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::channel::{open, Message, RecvTimeoutError};
use crate::engine::handle::CoreHandle;
use crate::stream::tests::conn;

fn queue(sender: &mut crate::channel::ChannelSender, conn: &crate::Conn, n: usize) -> bool {
    let room = sender.reserve().expect("a receiver");
    for i in 0..n {
        sender
            .batch()
            .push(Message::new(Bytes::from(vec![i as u8]), conn.clone(), None));
    }
    sender.commit(room, conn)
}

#[test]
fn draining_to_half_resumes_each_paused_connection_once() {
    let core = CoreHandle::detached();
    let (a, b) = (conn(&core, 1), conn(&core, 2));
    let (link, rx) = open(4);
    let (mut tx_a, mut tx_b) = (link.sender(), link.sender());
    assert!(queue(&mut tx_a, &a, 4), "four fill a channel of four");
    assert!(
        queue(&mut tx_b, &b, 1),
        "one more: the soft bound, and full"
    );
    core.take_resumes();
    for _ in 0..2 {
        rx.try_recv().expect("queued");
    }
    assert_eq!(core.take_resumes(), 0, "still above half (3 of 4)");
    rx.try_recv().expect("queued");
    assert_eq!(core.take_resumes(), 2, "at half: both paused connections");
    rx.try_recv().expect("queued");
    assert_eq!(core.take_resumes(), 0, "each only once");
}

#[test]
fn a_forgotten_connection_is_not_resumed() {
    let core = CoreHandle::detached();
    let a = conn(&core, 1);
    let (link, rx) = open(1);
    let mut tx = link.sender();
    assert!(queue(&mut tx, &a, 1));
    tx.forget(a.id());
    rx.try_recv().expect("queued");
    assert_eq!(core.take_resumes(), 0);
}

#[test]
fn a_blocked_receiver_wakes_when_a_batch_is_queued() {
    let core = CoreHandle::detached();
    let a = conn(&core, 1);
    let (link, rx) = open(8);
    let mut tx = link.sender();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let got = rx.recv_timeout(Duration::from_secs(10));
        (got.map(|m| m.payload[0]), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    queue(&mut tx, &a, 1);
    let (got, waited) = waiter.join().expect("thread");
    assert_eq!(got, Ok(0));
    assert!(
        waited < Duration::from_secs(5),
        "woken, not timed out: {waited:?}"
    );
}

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn an_async_receiver_is_woken_by_a_batch_and_by_the_close() {
    let core = CoreHandle::detached();
    let a = conn(&core, 1);
    let (link, rx) = open(8);
    let mut tx = link.sender();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    {
        let mut recv = pin!(rx.recv_async());
        assert!(recv.as_mut().poll(&mut cx).is_pending());
        queue(&mut tx, &a, 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the batch woke it");
        assert!(matches!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
    }
    let mut recv = pin!(rx.recv_async());
    assert!(recv.as_mut().poll(&mut cx).is_pending());
    drop(tx);
    drop(link);
    assert_eq!(count.0.load(Ordering::SeqCst), 2, "the close woke it");
    assert!(matches!(recv.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
}

#[test]
fn the_channel_ends_when_its_last_sender_goes_once_bound() {
    let (link, rx) = open(8);
    let tx = link.sender();
    drop(link);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)).err(),
        Some(RecvTimeoutError::Timeout),
        "a sender keeps it open"
    );
    drop(tx);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).err(),
        Some(RecvTimeoutError::Closed)
    );
}
