//! The only place in the crate that makes raw system calls.
//!
//! Everything above this layer works with `OwnedFd`/`BorrowedFd` and `io::Result`; every
//! `unsafe` block here names the invariant it relies on. Linux is the first target; another
//! OS gets its own submodule behind the same narrow API.

/// Runs a libc call and turns the `-1` + `errno` convention into `io::Result`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe, clippy::undocumented_unsafe_blocks)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) mod life;
pub(crate) mod linux;

pub(crate) use linux::*;
