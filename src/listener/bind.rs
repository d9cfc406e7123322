//! The listening sockets of a listener: one per core on the same address (`SO_REUSEPORT`),
//! after checking that nothing else listens there.

use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// The first address `address` resolves to.
pub(crate) fn resolve(address: &str) -> Option<SocketAddr> {
    address.to_socket_addrs().ok()?.next()
}

/// Fails with `EADDRINUSE` if something already listens on `addr`'s port: the per-core sockets
/// share it through `SO_REUSEPORT`, which would otherwise let a second listener (another process
/// started by mistake) silently take part of the connections. A probe socket without
/// `SO_REUSEPORT` cannot bind while any listening socket holds the port (`SO_REUSEADDR` lets it
/// past connections in `TIME_WAIT`).
pub(super) fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// A listening socket on `addr` for one core: `SO_REUSEPORT`, so every core binds its own.
pub(super) fn bind_socket(addr: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY on Linux: one syscall here instead of one per accept.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}
