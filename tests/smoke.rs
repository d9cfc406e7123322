use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{Listener, ListenerConfig, Writer, WriterConfig};

#[test]
fn smoke() {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let listener = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", move |msg, _| {
            assert_eq!(msg.len(), 110);
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .cores(2),
    )
    .unwrap();
    let w = Writer::dial(WriterConfig::new(listener.local_addr().to_string())).unwrap();
    let msg = [7u8; 110];
    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        w.write(&msg).unwrap();
    }
    w.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "{} msgs in {:?}",
        count.load(Ordering::Relaxed),
        t.elapsed()
    );
    eprintln!("{:?}", listener.runtime().stats());
    eprintln!("{:?}", w.runtime().stats());
    assert_eq!(count.load(Ordering::Relaxed), n);
    w.close().unwrap();
    listener.close();
}
