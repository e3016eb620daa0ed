//! Unix-domain socket pairs and descriptor passing (`SCM_RIGHTS`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// A connected pair of close-on-exec unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    syscall!(socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()))?;
    // SAFETY: socketpair returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of close-on-exec unix datagram sockets: each send is one message, taken
/// whole by one receive.
pub(crate) fn socketpair_datagram() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    syscall!(socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()))?;
    // SAFETY: socketpair returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Shuts down the sending direction of a socket, so the peer reads end-of-file.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR))?;
    Ok(())
}

/// Shuts down both directions of a socket: blocked readers and writers, here and at the peer,
/// wake up.
pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR))?;
    Ok(())
}

/// A stream socket whose peer is gone, which [`retire`] puts in place of the descriptors it
/// stands down: it reads end-of-file, polls readable and hung up, and refuses writes and
/// `accept`. One per process; a forked child inherits it with the rest of the table.
static DEAD: OnceLock<OwnedFd> = OnceLock::new();

fn dead_socket() -> io::Result<BorrowedFd<'static>> {
    if let Some(fd) = DEAD.get() {
        return Ok(fd.as_fd());
    }
    let (keep, peer) = socketpair()?;
    drop(peer);
    // A thread that lost the race drops its pair.
    Ok(DEAD.get_or_init(|| keep).as_fd())
}

/// Makes the socket [`retire`] needs now, while descriptors are to be had, so that a later
/// close does not depend on a free one. Best effort: `retire` tries again.
pub(crate) fn prepare_retire() {
    let _ = dead_socket();
}

/// Stands `fd` down in place: the socket behind it is released as `close(fd)` would release it
/// (its peer sees end-of-file once every other copy is gone too), but the number stays open,
/// referring to a dead socket, until its owner closes it. This is how a handle that lends its
/// descriptor (`AsFd`) can still be closed through a shared reference: a `BorrowedFd` lent
/// before stays valid, and no other file can take its number while it is borrowed.
pub(crate) fn retire(fd: BorrowedFd<'_>) -> io::Result<()> {
    let dead = dead_socket()?;
    loop {
        match syscall!(dup3(dead.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn cmsg_space(nfds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((nfds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// The numbers of borrowed descriptors, as the calls that attach a list of them take it
/// ([`send_with_fds`] and its kin), without copying: the borrow of `fds` keeps them open.
pub(crate) fn raw_fds<'a>(fds: &'a [BorrowedFd<'_>]) -> &'a [RawFd] {
    // SAFETY: `BorrowedFd` is `repr(transparent)` with the representation of a host file
    // descriptor (as its documentation guarantees), so `fds` is `fds.len()` valid `RawFd`s at
    // `fds.as_ptr()`, aligned for one; the result borrows `fds` and is only read.
    unsafe { std::slice::from_raw_parts(fds.as_ptr().cast::<RawFd>(), fds.len()) }
}

/// Sends as much of `data` as the socket takes in one `sendmsg(2)`, with `fds` attached to
/// its first byte. Never raises SIGPIPE: a closed peer is `EPIPE`. Retries on `EINTR`.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    send_with_fds_flags(sock, data, fds, 0)
}

/// As [`send_with_fds`] with extra `sendmsg` flags (`MSG_DONTWAIT`).
pub(crate) fn send_with_fds_flags(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[RawFd],
    flags: libc::c_int,
) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS_PER_MESSAGE);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; cmsg_space(fds.len()).div_ceil(8)];
    // SAFETY: msghdr is plain data for which all-zero bytes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = cmsg_space(fds.len()) as _;
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
        match syscall!(sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// Receives up to `buf.len()` bytes with one `recvmsg(2)`, appending any descriptors that
/// arrive (close-on-exec) to `fds`. Returns 0 at end-of-file. Retries on `EINTR`.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    recv_with_fds_flags(sock, buf, fds, 0)
}

/// Control-buffer room for `MAX_FDS_PER_MESSAGE` descriptors, in u64s (aligned for cmsghdr).
const CONTROL_WORDS: usize = (16 + MAX_FDS_PER_MESSAGE * 4).div_ceil(8) + 2;

/// As [`recv_with_fds`] with extra `recvmsg` flags (`MSG_DONTWAIT`).
pub(crate) fn recv_with_fds_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let space = cmsg_space(MAX_FDS_PER_MESSAGE);
    debug_assert!(space <= CONTROL_WORDS * 8);
    let mut control = [0u64; CONTROL_WORDS];
    loop {
        // SAFETY: msghdr is plain data for which all-zero bytes is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let n = match syscall!(recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
        return Ok(n);
    }
}

/// Puts a descriptor in non-blocking mode: reads with nothing to read fail with `WouldBlock`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    Ok(())
}

/// Copies up to `buf.len()` waiting bytes without taking them off the socket and without
/// waiting (`MSG_PEEK | MSG_DONTWAIT`); descriptors attached to them stay queued. `Ok(0)` is
/// end-of-file; `WouldBlock` means nothing is waiting.
pub(crate) fn peek_now(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let r = syscall!(recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT
        ));
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// Waits until `sock` holds data (or end-of-file, or an error), then copies its front into
/// `buf` without taking it: `poll` and a peek in one call. `WouldBlock` where the socket was
/// made non-blocking (an async user of the same file), which the caller then polls.
pub(crate) fn peek_wait(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // Under the model checker (`cfg(loom)`) every thread of a model runs on this one, so a
    // blocking call would stop them all: the caller's `poll_readable` looks and yields instead.
    if cfg!(loom) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let r = syscall!(recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_PEEK
        ));
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// Whether the peer of a connected stream socket is gone: it closed its end (every copy of
/// it), exited, or the socket was shut down both ways. Never waits.
pub(crate) fn hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: 0, revents: 0 };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        match syscall!(poll(&mut p, 1, 0)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
            Ok(_) => return p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        }
    }
}
