//! A protobuf request/response service over buffstreams (cargo feature `prost`).
//!
//! The message types are written by hand with `#[derive(prost::Message)]` (what `prost-build`
//! would generate from the `.proto` below), so no `protoc` is needed. The wire format is
//! `Framing::Varint`: exactly prost's `encode_length_delimited`, Java's `writeDelimitedTo`.
//!
//! ```proto
//! message SumRequest  { uint64 id = 1; repeated sint64 values = 2; }
//! message SumResponse { uint64 id = 1; sint64 sum = 2; uint32 count = 3; }
//! ```
//!
//! Run: `cargo run --release --features prost --example protobuf -- [requests]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buffstreams::{Framing, Listener, ListenerConfig, Writer, WriterConfig};
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct SumRequest {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(sint64, repeated, tag = "2")]
    values: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SumResponse {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(sint64, tag = "2")]
    sum: i64,
    #[prost(uint32, tag = "3")]
    count: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 100_000,
    };

    // The service: decode each request in place (from the receive buffer), answer on the same
    // connection; the response is encoded straight into the send memory.
    let service = Listener::bind(
        ListenerConfig::new("127.0.0.1:0", |payload, conn| {
            let request = SumRequest::decode(payload)?;
            conn.write_message(&SumResponse {
                id: request.id,
                sum: request.values.iter().sum(),
                count: request.values.len() as u32,
            })?;
            Ok(())
        })
        .framing(Framing::Varint)
        .max_message_size(64 * 1024),
    )?;

    // The client: responses arrive on its core, checked against what each request asked.
    let answered = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let (a, w) = (answered.clone(), wrong.clone());
    let client = Writer::dial(
        WriterConfig::new(service.local_addr().to_string())
            .framing(Framing::Varint)
            .max_message_size(64 * 1024)
            .on_message(move |payload, _conn| {
                let response = SumResponse::decode(payload)?;
                let id = response.id as i64;
                if response.sum != expected_sum(id) || response.count != (id % 8) as u32 {
                    w.fetch_add(1, Ordering::Relaxed);
                }
                a.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
    )?;

    let start = Instant::now();
    let mut batch = client.buffered();
    for id in 0..requests {
        let request = SumRequest {
            id,
            values: (0..(id % 8) as i64).map(|k| id as i64 - k).collect(),
        };
        batch.write_message(&request)?;
    }
    batch.flush()?;
    drop(batch);
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < requests && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let (done, bad) = (
        answered.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
    );
    println!(
        "{done} of {requests} requests answered in {:.2?} ({:.0} round trips/s), {bad} wrong",
        elapsed,
        done as f64 / elapsed.as_secs_f64()
    );
    client.close()?;
    service.close();
    if done != requests || bad != 0 {
        return Err("the service did not answer every request correctly".into());
    }
    Ok(())
}

/// The sum the service must return for request `id` (values `id, id-1, …` of `id % 8` terms).
fn expected_sum(id: i64) -> i64 {
    (0..id % 8).map(|k| id - k).sum()
}
