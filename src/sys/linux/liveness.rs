//! Whether a process that holds a shared lock still exists.

/// True unless `pid` is certainly gone (`kill(pid, 0)` fails with `ESRCH`). A pid we may not
/// signal (`EPERM`) counts as alive.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match syscall!(kill(pid as libc::pid_t, 0)) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}
