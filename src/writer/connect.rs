//! Opening a writer's socket: a TCP connection (no Nagle, `TCP_NOTSENT_LOWAT` by the path) or
//! a Unix domain socket connection, within the connect timeout.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use socket2::{Socket, Type};

use crate::endpoint::Endpoint;
use crate::engine::handle::{peer_cred, PeerCred};
use crate::error::DialError;
use crate::writer::config::{DEFAULT_NOTSENT_LOWAT, LOWAT_MAX_MSS};

/// A connected socket and what the writer's `ConnInfo` says about it.
pub(super) struct Opened {
    pub(super) fd: OwnedFd,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) peer_cred: Option<PeerCred>,
}

/// Connects to `addr` within `timeout`. On TCP, `notsent_lowat` is the chosen
/// `TCP_NOTSENT_LOWAT` (`None`: by the path's segment size).
pub(super) fn open(
    addr: &Endpoint,
    timeout: Duration,
    notsent_lowat: Option<Option<u32>>,
) -> Result<Opened, DialError> {
    let failed = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::TimedOut {
            DialError::Timeout {
                addr: addr.clone(),
                after: timeout,
            }
        } else {
            DialError::Connect {
                addr: addr.clone(),
                source,
            }
        }
    };
    // socket2 creates it close-on-exec; `connect_timeout` leaves it blocking, as the engine
    // wants (every call the core makes passes MSG_DONTWAIT).
    let sock = Socket::new(addr.domain(), Type::STREAM, None).map_err(failed)?;
    sock.connect_timeout(&addr.sock_addr().map_err(failed)?, timeout)
        .map_err(failed)?;
    let Endpoint::Tcp(peer) = *addr else {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let peer_cred = peer_cred(sock.as_fd());
        return Ok(Opened {
            fd: sock.into(),
            peer: unspecified,
            local: unspecified,
            peer_cred,
        });
    };
    let local = sock
        .local_addr()
        .map_err(failed)?
        .as_socket()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    sock.set_tcp_nodelay(true).map_err(failed)?;
    let lowat = match notsent_lowat {
        Some(chosen) => chosen,
        // By the path: a real network's segments, or loopback's (an unknown MSS counts as
        // small).
        None => match sock.tcp_mss() {
            Ok(mss) if mss >= LOWAT_MAX_MSS => None,
            _ => Some(DEFAULT_NOTSENT_LOWAT),
        },
    };
    if let Some(lowat) = lowat {
        sock.set_tcp_notsent_lowat(lowat).map_err(failed)?;
    }
    Ok(Opened {
        fd: sock.into(),
        peer,
        local,
        peer_cred: None,
    })
}
