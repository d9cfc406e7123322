//! A writer's outage is logged as one event when it starts, one when the retry policy gives up
//! and one when it ends: never one per write.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buffstreams::{Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig};
use common::{runtime_on, wait_until, BACKENDS};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Counts INFO-and-above events from this crate.
struct Count(Arc<AtomicU64>);

impl<S: Subscriber> Layer<S> for Count {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= Level::INFO && meta.target().starts_with("buffstreams") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn an_outage_logs_a_few_events_however_many_writes_fail() {
    let events = Arc::new(AtomicU64::new(0));
    let subscriber = tracing_subscriber::registry().with(Count(events.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let got = Arc::new(AtomicU64::new(0));
    let bind = |port: u16| {
        let g = got.clone();
        Listener::bind(
            ListenerConfig::new(format!("127.0.0.1:{port}"), move |_, _| {
                g.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .runtime(runtime_on(BACKENDS[0], 1)),
        )
        .unwrap()
    };
    let listener = bind(0);
    let addr = listener.local_addr();
    let failed = Arc::new(AtomicU64::new(0));
    let f = failed.clone();
    let writer = Writer::dial(
        WriterConfig::new(addr.to_string())
            .retry(RetryPolicy {
                max_attempts: Some(3),
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                ..RetryPolicy::default()
            })
            .on_failed(move |failed| {
                f.fetch_add(failed.messages.len() as u64, Ordering::Relaxed);
            }),
    )
    .unwrap();
    writer.write(b"before").unwrap();
    writer.flush().unwrap();
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::Relaxed)
        == 1));
    let quiet = events.load(Ordering::Relaxed);

    // The listener goes away; writes keep coming for a while.
    listener.close();
    let mut attempted = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        attempted += 1;
        let _ = writer.write(b"during");
        std::thread::sleep(Duration::from_micros(200));
    }
    let during = events.load(Ordering::Relaxed) - quiet;
    assert!(attempted > 1000);
    assert!(
        failed.load(Ordering::Relaxed) > 0,
        "nothing was handed back"
    );
    // "lost its connection", "gave up" (and possibly the connection's own close event).
    assert!(
        during <= 4,
        "{during} events logged for one outage and {attempted} writes"
    );

    // Back up: one more event when the writer reconnects.
    let _listener = bind(addr.port());
    assert!(wait_until(Duration::from_secs(10), || {
        let _ = writer.try_write(&b"after"[..]);
        std::thread::sleep(Duration::from_millis(5));
        got.load(Ordering::Relaxed) > 1
    }));
    let total = events.load(Ordering::Relaxed) - quiet;
    assert!(total <= during + 2, "{total} events in all");
    writer.close().ok();
}
