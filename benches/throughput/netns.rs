//! The `--mtu` views: anonymous network namespaces whose loopback has a given MTU.
//!
//! [`with_loopback_mtu`] makes one on a short-lived helper thread: the thread moves itself
//! into a new namespace (`unshare(CLONE_NEWNET)`, which touches only the calling thread),
//! sets `lo`'s MTU and brings it up with ioctls (no `ip` tool; an up loopback gets
//! 127.0.0.1 from the kernel), opens `/proc/thread-self/ns/net` and exits. The namespace
//! has no name: it lives as long as something refers to it, the parent's fd and the
//! children that joined it ([`spawn`], `setns` between fork and exec). When the parent exits,
//! however it exits (error, panic, Ctrl-C, SIGKILL), the kernel closes the fd, kills the
//! children (`proc::die_with_parent`) and frees the namespace: there is nothing to clean up
//! and nothing named (`ip netns list`) to leave behind.
//!
//! Needs CAP_SYS_ADMIN (unshare, setns) and CAP_NET_ADMIN in the new namespace (root has
//! both); without them the error is returned and the trials of that MTU are skipped.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use socket2::{Domain, Socket, Type};

/// A new anonymous network namespace whose loopback is up with MTU `mtu`.
pub fn with_loopback_mtu(mtu: u32) -> io::Result<OwnedFd> {
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || create(mtu))?
        .join()
        .map_err(|_| io::Error::other("the namespace helper thread panicked"))?
}

/// Runs on the helper thread, which exits afterwards: its namespace change dies with it.
fn create(mtu: u32) -> io::Result<OwnedFd> {
    let mtu = i32::try_from(mtu).map_err(|_| io::Error::other("MTU out of range"))?;
    // SAFETY: unshare takes flags only and touches no memory. With CLONE_NEWNET alone it
    // moves just this thread, which no other code runs on and which ends with this function.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(annotate(
            "unshare(CLONE_NEWNET)",
            io::Error::last_os_error(),
        ));
    }
    // std opens with O_RDONLY | O_CLOEXEC: children get it only through `spawn`'s setns.
    let ns = File::open("/proc/thread-self/ns/net")
        .map_err(|e| annotate("/proc/thread-self/ns/net", e))?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    let mut req = loopback_request();
    req.ifr_ifru.ifru_mtu = mtu;
    ioctl(&sock, libc::SIOCSIFMTU, &mut req, "SIOCSIFMTU")?;
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS just filled the union's `ifru_flags` member.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut req, "SIOCSIFFLAGS")?;
    let got = mtu_of(&sock)?;
    if got != mtu as u32 {
        return Err(io::Error::other(format!(
            "lo has MTU {got} after setting {mtu}"
        )));
    }
    Ok(OwnedFd::from(ns))
}

/// The MTU of `lo` in the calling thread's network namespace.
pub fn loopback_mtu() -> io::Result<u32> {
    mtu_of(&Socket::new(Domain::IPV4, Type::DGRAM, None)?)
}

/// The maximum segment size of a TCP connection over `lo` in the calling thread's network
/// namespace (a private listener and one connection, closed again): the MTU as TCP sees it.
pub fn loopback_mss() -> io::Result<u32> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
    socket2::SockRef::from(&stream).tcp_mss()
}

/// Spawns `cmd` inside the namespace `ns` (None: the parent's own).
pub fn spawn(cmd: &mut Command, ns: Option<BorrowedFd<'_>>) -> io::Result<Child> {
    if let Some(ns) = ns {
        let fd = ns.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec. It makes one
        // async-signal-safe system call and reads errno: no allocation, no lock. `fd` is open
        // there: `ns` borrows the parent's descriptor until `spawn` below returns, and
        // O_CLOEXEC closes the child's copy only at exec, after the closure.
        unsafe {
            cmd.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            });
        }
    }
    cmd.spawn()
}

fn mtu_of(sock: &Socket) -> io::Result<u32> {
    let mut req = loopback_request();
    ioctl(sock, libc::SIOCGIFMTU, &mut req, "SIOCGIFMTU")?;
    // SAFETY: SIOCGIFMTU just filled the union's `ifru_mtu` member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

/// An `ifreq` naming `lo`, the rest zero.
fn loopback_request() -> libc::ifreq {
    // SAFETY: ifreq is plain data (a name array and a union of integers, sockaddrs and a
    // pointer), for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = src as libc::c_char;
    }
    req
}

fn ioctl(sock: &Socket, op: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
    // SAFETY: every `op` passed here is an interface ioctl that reads or writes one `ifreq`,
    // and `req` is a valid, exclusively borrowed one for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op as _, req as *mut libc::ifreq) } != 0 {
        return Err(annotate(
            &format!("{what} on lo"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn annotate(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
