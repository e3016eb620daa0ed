//! POSIX named shared memory (`shm_open`, `shm_unlink`): objects under `/dev/shm`.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

fn path(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

/// Opens (with `create`: creates exclusively, mode 0600) the shared-memory object `name`.
pub(crate) fn shm_open(name: &str, create: bool) -> io::Result<OwnedFd> {
    let p = path(name)?;
    let flags = libc::O_RDWR | libc::O_CLOEXEC | if create { libc::O_CREAT | libc::O_EXCL } else { 0 };
    let fd = syscall!(shm_open(p.as_ptr(), flags, 0o600 as libc::mode_t))?;
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the size of a shared-memory object.
pub(crate) fn set_len(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> io::Result<()> {
    syscall!(ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), len as libc::off_t))?;
    Ok(())
}

/// Removes the name `name`; mappings that exist stay valid.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let p = path(name)?;
    syscall!(shm_unlink(p.as_ptr()))?;
    Ok(())
}
