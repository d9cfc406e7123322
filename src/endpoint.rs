//! Where a listener listens and a writer dials: a TCP socket address or a Unix domain socket
//! ([`Endpoint`]), parsed from the address strings the configurations take.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A Unix domain socket's name: a path in the file system, or a name in Linux's abstract
/// namespace (no file; it disappears with the last socket bound to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A socket file (`unix:/run/app.sock`, or any string starting with `/` or `./`).
    Path(PathBuf),
    /// A name in the abstract namespace (`unix:@name` or `@name`), without the leading NUL.
    Abstract(Vec<u8>),
}

/// What a [`Listener`](crate::Listener) binds or a [`Writer`](crate::Writer) dials.
///
/// Address strings parse as:
/// - `unix:PATH` (or a string starting with `/` or `./`): a Unix domain socket file;
/// - `unix:@NAME` (or `@NAME`): a Unix domain socket in Linux's abstract namespace;
/// - anything else: a TCP `host:port`, resolved (the first address wins).
///
/// Its [`Display`](fmt::Display) form parses back to the same endpoint.
///
/// ```
/// use buffstreams::{Endpoint, UnixAddr};
/// let tcp = Endpoint::parse("127.0.0.1:5031").unwrap();
/// assert_eq!(tcp, "127.0.0.1:5031".parse::<std::net::SocketAddr>().unwrap());
/// let file = Endpoint::parse("unix:/run/app.sock").unwrap();
/// assert_eq!(file, Endpoint::Unix(UnixAddr::Path("/run/app.sock".into())));
/// let named = Endpoint::parse("@app").unwrap();
/// assert_eq!(named.to_string(), "unix:@app");
/// assert_eq!(Endpoint::parse(&named.to_string()), Some(named));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix domain socket.
    Unix(UnixAddr),
}

impl Endpoint {
    /// Parses (and for TCP, resolves) an address string; `None` if it names nothing.
    pub fn parse(address: &str) -> Option<Endpoint> {
        let unix = |name: &str| match name.strip_prefix('@') {
            Some("") => None,
            Some(name) => Some(UnixAddr::Abstract(name.as_bytes().to_vec())),
            None if name.is_empty() => None,
            None => Some(UnixAddr::Path(PathBuf::from(name))),
        };
        if let Some(name) = address.strip_prefix("unix:") {
            return unix(name).map(Endpoint::Unix);
        }
        if address.starts_with(['/', '@']) || address.starts_with("./") {
            return unix(address).map(Endpoint::Unix);
        }
        let addr = address.to_socket_addrs().ok()?.next()?;
        Some(Endpoint::Tcp(addr))
    }

    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }

    /// The Unix domain socket name, if this is one.
    pub fn unix(&self) -> Option<&UnixAddr> {
        match self {
            Endpoint::Tcp(_) => None,
            Endpoint::Unix(name) => Some(name),
        }
    }

    /// The socket address to bind or connect to.
    pub(crate) fn sock_addr(&self) -> std::io::Result<socket2::SockAddr> {
        match self {
            Endpoint::Tcp(addr) => Ok((*addr).into()),
            Endpoint::Unix(UnixAddr::Path(path)) => socket2::SockAddr::unix(path),
            Endpoint::Unix(UnixAddr::Abstract(name)) => {
                // A leading NUL makes it abstract (socket2 then counts no terminating NUL).
                let mut bytes = Vec::with_capacity(name.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(name);
                socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes))
            }
        }
    }

    /// The socket domain this endpoint needs.
    pub(crate) fn domain(&self) -> socket2::Domain {
        match self {
            Endpoint::Tcp(addr) => socket2::Domain::for_address(*addr),
            Endpoint::Unix(_) => socket2::Domain::UNIX,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp(addr)
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.tcp() == Some(*other)
    }
}

impl Hash for Endpoint {
    /// A TCP endpoint hashes as its `SocketAddr`, so
    /// [`Runtime::core_for`](crate::Runtime::core_for) gives one core to both forms.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Endpoint::Tcp(addr) => addr.hash(state),
            Endpoint::Unix(name) => name.hash(state),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(name) => write!(f, "unix:{name}"),
        }
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Path(path) => write!(f, "{}", path.display()),
            UnixAddr::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_displays_back() {
        for (text, want) in [
            (
                "unix:/tmp/a.sock",
                Endpoint::Unix(UnixAddr::Path("/tmp/a.sock".into())),
            ),
            (
                "/tmp/a.sock",
                Endpoint::Unix(UnixAddr::Path("/tmp/a.sock".into())),
            ),
            (
                "./a.sock",
                Endpoint::Unix(UnixAddr::Path("./a.sock".into())),
            ),
            (
                "unix:rel.sock",
                Endpoint::Unix(UnixAddr::Path("rel.sock".into())),
            ),
            ("unix:@n", Endpoint::Unix(UnixAddr::Abstract(b"n".to_vec()))),
            ("@n", Endpoint::Unix(UnixAddr::Abstract(b"n".to_vec()))),
            (
                "127.0.0.1:80",
                Endpoint::Tcp("127.0.0.1:80".parse().unwrap()),
            ),
            ("[::1]:80", Endpoint::Tcp("[::1]:80".parse().unwrap())),
        ] {
            let got = Endpoint::parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(Endpoint::parse(&got.to_string()), Some(want), "{text}");
        }
        for bad in ["unix:", "unix:@", "@", "nothing", "127.0.0.1"] {
            assert_eq!(Endpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tcp_endpoint_hashes_as_its_address() {
        let hash = |v: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v(&mut h);
            h.finish()
        };
        let addr: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let ep = Endpoint::from(addr);
        assert_eq!(hash(&|h| ep.hash(h)), hash(&|h| addr.hash(h)));
        assert_eq!(ep, addr);
    }

    #[test]
    fn abstract_names_have_no_file_and_a_leading_nul() {
        let addr = Endpoint::parse("@bs-test").unwrap().sock_addr().unwrap();
        assert_eq!(addr.as_abstract_namespace(), Some(&b"bs-test"[..]));
        let path = Endpoint::parse("/tmp/x").unwrap().sock_addr().unwrap();
        assert_eq!(path.as_pathname(), Some(std::path::Path::new("/tmp/x")));
    }
}
