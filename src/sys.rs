//! The one way the crate makes a raw system call: [`syscall!`], after mio's
//! (`mio/src/sys/unix/mod.rs`). It turns the C convention (a negative result, the cause in
//! `errno`) into an `io::Result`, so no call site reads `errno` itself.

/// Calls `libc::$fn($args...)` and returns `Ok(result)`, or `Err(io::Error::last_os_error())`
/// when the call failed: a negative result, or with `fails_with`, a result equal to the given
/// sentinel (`mmap`'s `MAP_FAILED`).
///
/// # Safety contract
/// The macro runs the call in an `unsafe` block, so the caller takes on the function's
/// preconditions: every pointer argument points at live memory of the size the call reads or
/// writes, which stays valid (and is not otherwise borrowed) for the whole call, and every
/// descriptor argument is open and owned or borrowed by the caller. Each call site states, in a
/// `// SAFETY:` comment, why its arguments meet that.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        // SAFETY: the caller's arguments meet `libc::$fn`'s preconditions, as its `// SAFETY:`
        // comment says (the macro's contract, in src/sys.rs).
        let res = unsafe { libc::$fn($($arg, )*) };
        if res < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
    ($fn: ident ( $($arg: expr),* $(,)* ), fails_with $fail: expr ) => {{
        // SAFETY: as in the first arm: the caller's `// SAFETY:` comment says why its arguments
        // meet `libc::$fn`'s preconditions.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == $fail {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_call_gives_its_errno_and_a_good_one_its_result() {
        // SAFETY: closing a descriptor that is not open touches no memory.
        let err = syscall!(close(-1)).expect_err("fd -1 is never open");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        // SAFETY: getpid has no arguments.
        let pid = syscall!(getpid()).expect("getpid cannot fail");
        assert_eq!(pid as u32, std::process::id());
        // SAFETY: a zero-length anonymous mapping touches no memory; the kernel refuses it.
        let map = syscall!(
            mmap(
                std::ptr::null_mut(),
                0,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0
            ),
            fails_with libc::MAP_FAILED
        );
        assert_eq!(map.expect_err("len 0").raw_os_error(), Some(libc::EINVAL));
    }
}
