//! What the running kernel is and offers the io_uring engine: its release and version, the
//! opcodes the engine submits, and a typed explanation (with the fix) when `io_uring_setup`
//! fails. Ring set-up (`uring`) and [`probe`](crate::probe) both ask here.

use std::io;

use io_uring::{opcode, register::Probe, IoUring};

use crate::error::StartError;

/// The oldest kernel the io_uring engine runs on: multishot receive with a provided-buffer ring.
pub const MIN_KERNEL: (u32, u32) = (6, 0);

/// Parses the `major.minor` prefix of a kernel release string such as `6.18.44-fc-v669`.
pub(crate) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's `major.minor`, from `uname(2)`.
pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    parse_release(&kernel_release()?)
}

/// `kernel.io_uring_disabled` (Linux 6.6+): 0 enabled, 1 only for `io_uring_group`, 2 disabled.
pub(crate) fn io_uring_disabled_sysctl() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns an `io_uring_setup` failure into the reason and the fix.
pub(crate) fn classify_setup_error(err: io::Error) -> StartError {
    match err.raw_os_error() {
        Some(libc::ENOSYS) => StartError::IoUringUnsupported,
        Some(libc::EPERM) | Some(libc::EACCES) => match io_uring_disabled_sysctl() {
            Some(value) if value > 0 => StartError::IoUringDisabled { value },
            _ => StartError::IoUringBlocked,
        },
        _ => StartError::Setup(err),
    }
}

/// Checks the kernel version and the opcodes the engine submits.
pub(crate) fn check_features(ring: &IoUring) -> Result<(), StartError> {
    if let Some(version) = kernel_version() {
        if version < MIN_KERNEL {
            return Err(StartError::MissingFeature {
                feature: "multishot recv with a provided-buffer ring",
                needs: "6.0",
            });
        }
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|_| StartError::MissingFeature {
            feature: "IORING_REGISTER_PROBE",
            needs: "5.6",
        })?;
    let needed = [
        (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Send::CODE, "IORING_OP_SEND"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(StartError::MissingFeature {
                feature: name,
                needs: "6.0",
            });
        }
    }
    Ok(())
}

/// The running kernel's release string, from `uname(2)`.
pub(crate) fn kernel_release() -> Option<String> {
    // SAFETY: `utsname` is plain old data; zeroed is a valid value for it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a live, writable utsname for uname to fill.
    if syscall!(uname(&mut uts)).is_err() {
        return None;
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

/// Whether this kernel offers kernel TLS: a connected TCP socket accepts the `tls` upper-layer
/// protocol (`TCP_ULP`, the `tls` module, loaded on demand where it exists). Tried on a
/// throwaway loopback connection; any failure (no module: `ENOENT`; no loopback) reads as no.
pub(crate) fn ktls_available() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(stream) = listener.local_addr().and_then(std::net::TcpStream::connect) else {
        return false;
    };
    const NAME: &[u8] = b"tls";
    // SAFETY: `NAME` is a static byte string of the length passed (the kernel copies at most
    // that many bytes); `stream` is an open socket for the whole call.
    syscall!(setsockopt(
        stream.as_raw_fd(),
        libc::SOL_TCP,
        libc::TCP_ULP,
        NAME.as_ptr().cast(),
        NAME.len() as libc::socklen_t,
    ))
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn classifies_setup_errors() {
        assert!(matches!(
            classify_setup_error(io::Error::from_raw_os_error(libc::ENOSYS)),
            StartError::IoUringUnsupported
        ));
        assert!(matches!(
            classify_setup_error(io::Error::from_raw_os_error(libc::ENOMEM)),
            StartError::Setup(_)
        ));
        let eperm = classify_setup_error(io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(
            eperm,
            StartError::IoUringBlocked | StartError::IoUringDisabled { .. }
        ));
    }
}
