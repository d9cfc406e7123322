//! The seam between the engine and what runs over a connection: its identity ([`ConnInfo`],
//! with the process-wide [`next_conn_id`]) and the [`Session`] that runs over it.
//!
//! The engine moves bytes; a [`Session`] (built by the listener or writer layer, which owns the
//! codec and the user's handler) turns received bytes into messages. The engine never sees a
//! frame format. (The `Acceptor` that builds an accepted connection's session is in `core.rs`,
//! with the handles it names.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::error::{CloseReason, ConnError};

/// Identity of one connection, fixed for its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConnInfo {
    /// Unique (per process) connection id.
    pub id: u64,
    /// The peer's address (TCP; on a Unix domain socket, `0.0.0.0:0`: see `peer_cred`).
    pub peer: SocketAddr,
    /// This side's address (TCP; on a Unix domain socket, `0.0.0.0:0`).
    pub local: SocketAddr,
    /// Index of the core that owns the connection.
    pub core: usize,
    /// On a Unix domain socket, the peer process's credentials (`SO_PEERCRED`, taken when the
    /// connection was made); `None` on TCP.
    pub peer_cred: Option<PeerCred>,
    /// On a TLS connection, what the handshake established: the peer's verified certificate
    /// chain (under mutual TLS, or on a writer's side), the protocol and cipher suite.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<crate::tls::TlsPeer>>,
}

/// The credentials of the process at the other end of a Unix domain socket (`SO_PEERCRED`):
/// what the kernel recorded when that process connected (or listened), so a handler can
/// authorise by user or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id (in this process's PID namespace; 0 if it has no id there).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl ConnInfo {
    /// Whether the connection is over a Unix domain socket.
    pub fn is_unix(&self) -> bool {
        self.peer_cred.is_some()
    }
}

/// The peer credentials of `fd` if it is a Unix domain socket.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> Option<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals of the size passed; getsockopt writes at most
    // `len` bytes into `cred` and updates `len`; `fd` is borrowed from its owner for the call.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        std::ptr::addr_of_mut!(cred).cast(),
        &mut len,
    ))
    .ok()?;
    Some(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// What a session did with the bytes it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Messages handed to the user.
    pub(crate) messages: u64,
    /// The consumer is full: stop reading this connection until it is resumed
    /// ([`SendQueueHandle::resume_reading`]). Bytes already given (and any the driver must still
    /// hand over) are kept by the session.
    ///
    /// [`SendQueueHandle::resume_reading`]: crate::engine::handle::SendQueueHandle::resume_reading
    pub(crate) paused: bool,
}

impl ConnInfo {
    /// The identity of a socket a listener on `core` just accepted, giving it a new id; `peer`
    /// when accept already reported it.
    ///
    /// A connection reset before this runs has no peer address any more (io_uring's multishot
    /// accept does not report it, and `getpeername` then fails): its `peer` is the unspecified
    /// address of `local`'s family, port 0. It is still accepted and counted, and its first
    /// receive reports the reset, as on epoll.
    pub(crate) fn accepted(fd: &OwnedFd, peer: Option<SocketAddr>, core: usize) -> ConnInfo {
        let sock = socket2::SockRef::from(fd);
        let local_sock = sock.local_addr().ok();
        let unix = local_sock.as_ref().is_some_and(|a| a.is_unix());
        let local = local_sock.and_then(|a| a.as_socket());
        let peer = peer.or_else(|| sock.peer_addr().ok().and_then(|a| a.as_socket()));
        let unspecified = |like: Option<SocketAddr>| {
            let ip = match like {
                Some(SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            };
            SocketAddr::new(ip, 0)
        };
        ConnInfo {
            id: next_conn_id(),
            peer: peer.unwrap_or_else(|| unspecified(local)),
            local: local.unwrap_or_else(|| unspecified(peer)),
            core,
            peer_cred: if unix { peer_cred(fd.as_fd()) } else { None },
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Per-connection protocol logic, run on the owning core.
///
/// Drivers call `on_data` for every received chunk, even while paused (data that was already
/// in flight when reading stopped): the session keeps what it cannot deliver.
pub(crate) trait Session: Send {
    /// Bytes arrived. Returns what was delivered, or the error that closes the connection.
    fn on_data(&mut self, data: &[u8]) -> Result<Delivered, ConnError>;

    /// The consumer has room again: deliver what was held back. `paused` in the result means
    /// it filled up again.
    fn resume(&mut self) -> Result<Delivered, ConnError>;

    /// The most the kernel should hand this connection in one receive now, if the session
    /// wants less than the engine's slow start would give (see `engine::conns::credit`): the
    /// engine then limits the receive to this (but never below its minimum credit).
    fn recv_credit(&self) -> Option<usize> {
        None
    }

    /// Whether bytes it was given before the connection reached the core (what a handshake
    /// read past its end) may hold messages: the engine then calls `on_data` with no bytes
    /// once, as soon as the connection is in.
    fn has_pending(&self) -> bool {
        false
    }

    /// The peer closed its side. Returns an error if that cut a message short.
    fn on_eof(&mut self) -> Result<(), ConnError>;

    /// The core's periodic tick (about every [`TICK`], only for connections of listeners whose
    /// [`Acceptor::ticks`](crate::engine::handle::Acceptor::ticks) is true): returns why to close
    /// the connection, if it should.
    fn on_tick(&mut self, now: Instant) -> Option<CloseReason> {
        let _ = now;
        None
    }

    /// The connection is gone and its queue detached (called once, last).
    fn on_close(self: Box<Self>, reason: &CloseReason);
}

/// How often the cores tick sessions that asked for it.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// A process-wide unique connection id.
pub(crate) fn next_conn_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
