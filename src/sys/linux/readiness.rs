//! Readiness for event loops: `poll(2)` over many descriptors for reading and writing, and
//! socket I/O that never blocks (`MSG_DONTWAIT`).
//!
//! The pool's dispatcher thread is one such loop: it writes tasks to every worker and reads
//! their results, and must never block on one worker while another waits to be served.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

/// One descriptor to watch, and what was found ready on it.
pub(crate) struct Watch<'a> {
    fd: BorrowedFd<'a>,
    write: bool,
    /// Readable, or hung up / in error (a read will not block).
    pub(crate) readable: bool,
    /// Writable, or in error (a write will not block).
    pub(crate) writable: bool,
}

impl<'a> Watch<'a> {
    /// Watches `fd` for reading, and for writing too when `write`.
    pub(crate) fn new(fd: BorrowedFd<'a>, write: bool) -> Self {
        Watch { fd, write, readable: false, writable: false }
    }
}

/// Waits until one of `watches` is ready or `deadline` passes; fills in each one's readiness
/// and returns how many are ready (0 on timeout). Retries on `EINTR`.
pub(crate) fn poll_watches(watches: &mut [Watch<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    let mut pfds: Vec<libc::pollfd> = watches
        .iter()
        .map(|w| libc::pollfd {
            fd: w.fd.as_raw_fd(),
            events: libc::POLLIN | if w.write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    loop {
        let ms = super::time::poll_timeout_ms(deadline);
        match syscall!(poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(0) if deadline.is_none_or(|d| Instant::now() < d) => continue,
            Ok(n) => {
                for (w, p) in watches.iter_mut().zip(&pfds) {
                    let trouble = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
                    w.readable = p.revents & libc::POLLIN != 0 || trouble;
                    w.writable = p.revents & libc::POLLOUT != 0 || trouble;
                }
                return Ok(n as usize);
            }
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Sends as much of `data` as the socket takes now, with `fds` attached to its first byte;
/// `Ok(0)` when the socket's buffer is full. A closed peer is `EPIPE`, never SIGPIPE.
pub(crate) fn send_now(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    match super::socket::send_with_fds_flags(sock, data, fds, libc::MSG_DONTWAIT) {
        Err(e) if would_block(&e) => Ok(0),
        r => r,
    }
}

/// Receives what is there now, up to `buf.len()` bytes, appending arriving descriptors
/// (close-on-exec) to `fds`. `Ok(None)` when nothing is there; `Ok(Some(0))` at end-of-file.
pub(crate) fn recv_now(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    recv_into(sock, buf, fds, libc::MSG_DONTWAIT)
}

/// As [`recv_now`] but blocks until at least one byte (or end-of-file) arrives; returns every
/// byte that is there then, up to `buf.len()`.
pub(crate) fn recv_some(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    Ok(recv_into(sock, buf, fds, 0)?.unwrap_or(0))
}

fn recv_into(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<Option<usize>> {
    match super::socket::recv_with_fds_flags(sock, buf, fds, flags) {
        Err(e) if would_block(&e) => Ok(None),
        r => r.map(Some),
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process on the machine, so a time
/// stamped in one process can be compared in another.
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime fills it and cannot fail for this clock.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Registers `fd` with the current tokio runtime's reactor for `interest` (feature `tokio`).
/// Panics outside a runtime with IO enabled, as tokio's own types do.
#[cfg(feature = "tokio")]
pub(crate) fn register_async(
    fd: std::os::fd::OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an `OwnedFd` is open, is closed only when the `AsyncFd` drops it, and always
    // returns the same descriptor from `as_raw_fd`.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
