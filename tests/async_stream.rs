//! The channel receiver as a `futures_core::Stream` on a tokio runtime: every message in order,
//! replies through `Conn::write_async`, and the stream ends once the listener is closed.

mod common;

use std::time::Duration;

use buffstreams::{Listener, ListenerConfig, Writer, WriterConfig};
use common::{runtime_on, BACKENDS};
use futures::StreamExt;

#[test]
fn the_receiver_is_a_stream_that_ends_with_the_listener() {
    for backend in BACKENDS {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (config, mut messages) = ListenerConfig::with_channel("127.0.0.1:0", 8);
        let listener = Listener::bind(config.runtime(runtime_on(backend, 1))).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer::dial(
            WriterConfig::new(listener.local_addr().to_string()).on_message(move |reply, _| {
                tx.send(reply.to_vec()).ok();
                Ok(())
            }),
        )
        .unwrap();
        const N: u32 = 5000; // far more than the channel holds: the stream waits, reading pauses
        let w = writer.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                w.write(&i.to_be_bytes()).unwrap();
            }
            w.flush().unwrap();
        });
        let seen = rt.block_on(async {
            let mut next = 0u32;
            while next < N {
                let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
                    .await
                    .expect("the stream stalled")
                    .expect("the stream ended early");
                assert_eq!(msg.payload[..], next.to_be_bytes());
                msg.conn.write_async(&msg.payload).await.unwrap();
                next += 1;
            }
            next
        });
        assert_eq!(seen, N);
        producer.join().unwrap();
        for i in 0..N {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
                i.to_be_bytes()
            );
        }
        writer.close().unwrap();
        listener.close();
        let end = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        });
        assert!(
            matches!(end, Ok(None)),
            "{backend:?}: the stream did not end"
        );
    }
}
