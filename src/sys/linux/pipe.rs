//! Pipes as a fast local channel: a round trip through two pipes costs about a third of one
//! through a unix stream socket (no socket buffers to allocate per message).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A close-on-exec pipe: `(read end, write end)`. The read end is non-blocking, so a reader can
/// poll it in a spin loop; the write end blocks, so a large message is written whole.
pub(crate) fn pipe_nonblocking_reader() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let flags = syscall!(fcntl(r.as_raw_fd(), libc::F_GETFL))?;
    syscall!(fcntl(r.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    Ok((r, w))
}

/// One `read(2)` from a non-blocking descriptor: `WouldBlock` when nothing is there; `Ok(0)` at
/// end-of-file. With `block`, first waits until it is readable. Retries on `EINTR`.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8], block: bool) -> io::Result<usize> {
    loop {
        if block {
            let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            match syscall!(poll(&mut pfd, 1, -1)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        match syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if block && e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// Writes all of `buf` to a blocking descriptor. Retries on `EINTR`; a pipe without a reader is
/// `EPIPE` (the process ignores SIGPIPE, as Rust programs and this crate's children do).
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match syscall!(write(fd.as_raw_fd(), buf.as_ptr() as *const libc::c_void, buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

/// Writes `buf` to standard error with plain `write` calls, taking none of std's locks (its
/// `Stderr` lock may be held for ever in a `Fork` child). Errors are ignored, as a panic
/// message's are.
pub(crate) fn write_stderr(buf: &[u8]) {
    // SAFETY: descriptor 2 is only borrowed for these writes; a closed one makes them fail.
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    let _ = write_all(fd, buf);
}

/// Bytes written to `fd` that its reader has not taken yet, where the kernel can tell: a pipe
/// (`FIONREAD` counts a pipe's contents from either end) or a socket (its unsent queue).
/// `None` for a file, a terminal, or a closed descriptor.
#[cfg(any(feature = "mpi", test))]
pub(crate) fn unread_output(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd.as_raw_fd(), &mut st)).ok()?;
    let request = match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => libc::FIONREAD,
        libc::S_IFSOCK => libc::TIOCOUTQ,
        _ => return None,
    };
    let mut n: libc::c_int = 0;
    syscall!(ioctl(fd.as_raw_fd(), request, &mut n)).ok()?;
    usize::try_from(n).ok()
}

/// [`unread_output`] of standard error.
#[cfg(feature = "mpi")]
pub(crate) fn stderr_unread() -> Option<usize> {
    // SAFETY: descriptor 2 is only borrowed for the two calls; a closed one makes them fail.
    unread_output(unsafe { BorrowedFd::borrow_raw(2) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    #[cfg_attr(miri, ignore = "pipes and ioctl are foreign calls")]
    fn unread_output_counts_what_a_pipe_holds_from_its_write_end() {
        let (r, w) = pipe_nonblocking_reader().unwrap();
        assert_eq!(unread_output(w.as_fd()), Some(0));
        write_all(w.as_fd(), b"lost!").unwrap();
        assert_eq!(unread_output(w.as_fd()), Some(5), "five bytes wait for the reader");
        let mut buf = [0u8; 8];
        assert_eq!(read_some(r.as_fd(), &mut buf, false).unwrap(), 5);
        assert_eq!(unread_output(w.as_fd()), Some(0), "the reader took them");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(unread_output(file.as_fd()), None, "a file has no reader to wait for");
    }
}
