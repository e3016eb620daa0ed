//! Deadlines and `poll(2)`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Milliseconds left until `deadline`, rounded up, for `poll(2)`; `-1` waits forever.
pub(crate) fn poll_timeout_ms(deadline: Option<Instant>) -> libc::c_int {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// Converts an optional timeout into an optional deadline.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// Waits until one of `fds` is readable (or hung up), or the deadline passes.
/// Returns the index of the first ready fd, or `None` on timeout. Retries on `EINTR`.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> io::Result<Option<usize>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    loop {
        // The model checker (`cfg(loom)`) runs every thread of a model on this one: a poll that
        // blocked would stop them all, so it looks and lets the others run instead.
        let ms = if cfg!(loom) { 0 } else { poll_timeout_ms(deadline) };
        let n = syscall!(poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms));
        match n {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                #[cfg(loom)]
                loom::thread::yield_now();
            }
            Ok(_) => return Ok(pfds.iter().position(|p| p.revents != 0)),
        }
    }
}

/// Indices of the descriptors in `fds` that are readable (or hung up) right now.
pub(crate) fn ready_now(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    loop {
        match syscall!(poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {
                return Ok(pfds.iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect())
            }
        }
    }
}
