//! Shutdown leaves nothing behind: after a manager with listeners, writers, live connections and
//! queued messages shuts down, the process has the same open file descriptors and threads as
//! before. (Its own test binary: other tests' threads would blur the counts.)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buffstreams::{ListenerConfig, Manager, RuntimeConfig, WriterConfig};
use common::wait_until;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[test]
fn shutdown_leaves_no_fd_or_thread_behind() {
    // Warm up what the process keeps anyway (tracing, std's internals).
    common::init_tracing();
    let (fds_before, threads_before) = (open_fds(), threads());

    for round in 0..2 {
        let manager = Manager::new(RuntimeConfig {
            cores: 2,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::new();
        for _ in 0..4 {
            let r = received.clone();
            let addr = manager
                .listen(ListenerConfig::new("127.0.0.1:0", move |msg, conn| {
                    r.fetch_add(1, Ordering::Relaxed);
                    conn.write(msg)?; // echo: accepted connections have queues too
                    Ok(())
                }))
                .unwrap()
                .to_string();
            manager
                .dial(WriterConfig::new(addr.clone()).on_message(|_, _| Ok(())))
                .unwrap();
            addrs.push(addr);
        }
        // A writer whose destination never answers: reconnecting in the background.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        manager
            .dial(WriterConfig::new(dead_addr.clone()).background_connect(true))
            .unwrap();
        manager.write_to(&dead_addr, b"never sent").unwrap();
        for i in 0..10_000u32 {
            let addr = &addrs[i as usize % addrs.len()];
            manager.write_to(addr, &i.to_be_bytes()).unwrap();
        }
        assert!(wait_until(Duration::from_secs(10), || received
            .load(Ordering::Relaxed)
            == 10_000));
        assert!(open_fds() > fds_before, "round {round}: sockets are open");
        assert!(threads() > threads_before);

        let report = manager.shutdown(Duration::from_millis(300));
        // The message for the dead address comes back.
        assert_eq!(report.unsent_messages(), 1, "{report:?}");
        assert_eq!(report.unsent[0].0, dead_addr);
        drop(manager);
        assert!(
            wait_until(Duration::from_secs(5), || open_fds() == fds_before
                && threads() == threads_before),
            "round {round}: fds {} -> {}, threads {} -> {}",
            fds_before,
            open_fds(),
            threads_before,
            threads()
        );
    }
}
