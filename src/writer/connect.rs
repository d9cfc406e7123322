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
    let failed = failure(addr, timeout);
    // socket2 creates it close-on-exec; `connect_timeout` leaves it blocking, as the engine
    // wants (every call the core makes passes MSG_DONTWAIT).
    let sock = Socket::new(addr.domain(), Type::STREAM, None).map_err(&failed)?;
    sock.connect_timeout(&addr.sock_addr().map_err(&failed)?, timeout)
        .map_err(&failed)?;
    match *addr {
        Endpoint::Tcp(peer) => tcp_opened(sock, addr, peer, notsent_lowat, &failed),
        Endpoint::Unix(_) => {
            let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
            let peer_cred = peer_cred(sock.as_fd());
            Ok(Opened {
                fd: sock.into(),
                peer: unspecified,
                local: unspecified,
                peer_cred,
            })
        }
    }
}

/// What an OS error while dialing `addr` is.
fn failure(addr: &Endpoint, timeout: Duration) -> impl Fn(std::io::Error) -> DialError + '_ {
    move |source| {
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
    }
}

/// A connected TCP socket made ready for the engine: refused if it connected to itself, then
/// no Nagle and the `TCP_NOTSENT_LOWAT` in effect.
///
/// A connection's two ends are one socket when a local port nobody listens on is dialed and
/// the kernel picks that same port as the source (TCP's simultaneous open; the ephemeral range
/// holds the ports `bind` to port 0 hands out). A reconnect loop retrying such a port would one
/// day "connect" and write into its own receive queue. Go's `net` package makes the same check.
fn tcp_opened(
    sock: Socket,
    addr: &Endpoint,
    peer: SocketAddr,
    notsent_lowat: Option<Option<u32>>,
    failed: &impl Fn(std::io::Error) -> DialError,
) -> Result<Opened, DialError> {
    let local = sock
        .local_addr()
        .map_err(failed)?
        .as_socket()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    if local == peer {
        // Dropping `sock` closes it.
        return Err(DialError::SelfConnected { addr: addr.clone() });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket bound to a free port and connected to that same port: the simultaneous open a
    /// reconnect loop can fall into, made on purpose, is refused; a connection to a listener
    /// is not.
    #[test]
    fn a_connection_to_itself_is_refused() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let addr = Endpoint::Tcp(free);
        let timeout = Duration::from_secs(1);
        let sock = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).expect("socket");
        sock.set_reuse_address(true).expect("SO_REUSEADDR");
        sock.bind(&free.into()).expect("bind");
        sock.connect(&free.into())
            .expect("a simultaneous open to itself");
        let got = tcp_opened(sock, &addr, free, None, &failure(&addr, timeout));
        assert!(
            matches!(got, Err(DialError::SelfConnected { .. })),
            "{:?}",
            got.map(|o| o.local)
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let there = Endpoint::Tcp(listener.local_addr().expect("addr"));
        let opened = open(&there, timeout, None).expect("a real connection");
        assert_ne!(opened.local, opened.peer);
    }
}
