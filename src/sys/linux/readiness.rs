//! Readiness for event loops: `poll(2)` over many descriptors for reading and writing, and
//! socket I/O that never blocks (`MSG_DONTWAIT`).
//!
//! The pool's dispatcher thread is one such loop: it writes tasks to every worker and reads
//! their results, and must never block on one worker while another waits to be served.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
    assert!(fds.len() <= super::socket::MAX_FDS_PER_MESSAGE);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let space = cmsg_space(fds.len());
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data for which all-zero bytes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds CMSG_SPACE(fds) bytes, so the first header and its
        // data of CMSG_LEN(fds) bytes fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg) as *mut RawFd, fds.len());
        }
    }
    loop {
        match syscall!(sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if would_block(&e) => return Ok(0),
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
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

fn cmsg_space(nfds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((nfds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

fn recv_into(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<Option<usize>> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let space = cmsg_space(super::socket::MAX_FDS_PER_MESSAGE);
    let mut control = vec![0u64; space.div_ceil(8)];
    loop {
        // SAFETY: msghdr is plain data for which all-zero bytes is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let n = match syscall!(recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if would_block(&e) => return Ok(None),
            Err(e) => return Err(e),
            Ok(n) => n as usize,
        };
        // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed
        // cmsghdrs; SCM_RIGHTS payloads are arrays of new descriptors now owned by us.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                    let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "descriptors were truncated in transit"));
        }
        return Ok(Some(n));
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
