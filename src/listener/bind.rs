//! The listening sockets of a listener: on TCP, one per core on the same address
//! (`SO_REUSEPORT`), after checking that nothing else listens there; on a Unix domain socket,
//! one socket that every core accepts from, and its file.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::endpoint::{Endpoint, UnixAddr};
use crate::error::ListenError;

/// A listener's sockets, one per core, and where they listen.
pub(super) struct Bound {
    /// One listening socket per core: on TCP each its own (`SO_REUSEPORT`), on a Unix domain
    /// socket duplicates of one, which every core accepts from.
    pub(super) sockets: Vec<Socket>,
    /// Where they listen (with the real port when asked for port 0).
    pub(super) endpoint: Endpoint,
    /// A Unix domain socket's file, removed when dropped.
    pub(super) file: Option<SocketFile>,
}

impl Bound {
    /// Binds `endpoint` for `cores` cores.
    pub(super) fn new(
        endpoint: Endpoint,
        cores: usize,
        backlog: i32,
        unix_mode: Option<u32>,
    ) -> Result<Bound, ListenError> {
        let failed = |addr: &Endpoint| {
            let addr = addr.clone();
            move |source| ListenError::Bind { addr, source }
        };
        let mut addr = match endpoint {
            Endpoint::Tcp(addr) => addr,
            Endpoint::Unix(ref name) => {
                let (socket, file) =
                    bind_unix(name, backlog, unix_mode).map_err(failed(&endpoint))?;
                let mut sockets = Vec::with_capacity(cores);
                for _ in 1..cores {
                    sockets.push(socket.try_clone().map_err(failed(&endpoint))?);
                }
                sockets.push(socket);
                return Ok(Bound {
                    sockets,
                    endpoint,
                    file,
                });
            }
        };
        ensure_port_free(addr).map_err(failed(&endpoint))?;
        let mut sockets = Vec::with_capacity(cores);
        for _ in 0..cores {
            let socket = bind_socket(addr, backlog).map_err(failed(&endpoint))?;
            if addr.port() == 0 {
                // Port 0: the first socket picks the port, the others join it.
                if let Some(bound) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                    addr = bound;
                }
            }
            sockets.push(socket);
        }
        Ok(Bound {
            sockets,
            endpoint: Endpoint::Tcp(addr),
            file: None,
        })
    }
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

/// A listener's socket file: removed when the listener closes, if it is still the file this
/// listener bound (another process may have replaced it since).
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening Unix domain socket `name`, shared by every core (there is no
/// `SO_REUSEPORT` spread for Unix sockets). A socket file nobody listens on any more (left by a
/// process that died) is replaced; a live one, or a file that is not a socket, is not touched
/// and binding fails with `EADDRINUSE`. `mode` sets the file's permissions before anyone can
/// connect.
pub(super) fn bind_unix(
    name: &UnixAddr,
    backlog: i32,
    mode: Option<u32>,
) -> std::io::Result<(Socket, Option<SocketFile>)> {
    let addr = Endpoint::Unix(name.clone()).sock_addr()?;
    if let UnixAddr::Path(path) = name {
        remove_if_stale(path, &addr)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&addr)?;
    let file = match name {
        UnixAddr::Path(path) => {
            let meta = std::fs::symlink_metadata(path)?;
            let file = SocketFile {
                path: path.clone(),
                dev: meta.dev(),
                ino: meta.ino(),
            };
            if let Some(mode) = mode {
                // Before `listen`: nobody can connect with the default permissions meanwhile.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            Some(file)
        }
        UnixAddr::Abstract(_) => None,
    };
    socket.listen(backlog)?;
    Ok((socket, file))
}

/// Removes the socket file at `path` if no process listens on it (a connect is refused).
fn remove_if_stale(path: &Path, addr: &SockAddr) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Ok(()); // never removed: `bind` reports EADDRINUSE
    }
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    // Nonblocking: a live listener with a full backlog answers EAGAIN instead of holding us.
    probe.set_nonblocking(true)?;
    match probe.connect(addr) {
        Err(err) if err.raw_os_error() == Some(libc::ECONNREFUSED) => {
            tracing::info!(path = %path.display(), "removing a stale socket file (nothing listens on it)");
            match std::fs::remove_file(path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        }
        // Something listens (or cannot be told apart from it): `bind` reports EADDRINUSE.
        _ => Ok(()),
    }
}
