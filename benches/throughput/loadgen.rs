//! The common load generator of `stream-server` (and the `raw` stream client, in `stream` and
//! `stream-client`): plain blocking std, one thread per connection, each writing one big
//! pre-encoded buffer of whole frames in a loop with `write_all`, as fast as the kernel takes
//! it. Framing costs the sender nothing, so what is measured is the server's receive path.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::contenders::{connect_all, spawn, ClientHandle, StartError};
use crate::stats;
use crate::wire;

/// Size of the pre-built buffer (whole frames, at least one).
const BATCH: usize = 1 << 20;

pub fn start(addr: SocketAddr, size: usize, conns: usize) -> Result<ClientHandle, StartError> {
    let frames = Arc::new(wire::frames(size, BATCH));
    for mut stream in connect_all(addr, conns)? {
        let frames = Arc::clone(&frames);
        spawn("loadgen", move || loop {
            if let Err(e) = stream.write_all(&frames) {
                stats::client_error(e);
                return;
            }
        })?;
    }
    Ok(ClientHandle { keep: None })
}
