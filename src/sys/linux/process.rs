//! Process creation, pidfds, signals and exit.
//!
//! Code that runs in a child between `fork` and `exec` may only call what is here (raw,
//! async-signal-safe system calls): the parent may have had other threads holding locks.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Result of a fork-like call, seen from one side.
pub(crate) enum Forked {
    /// In the parent, with the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// `fork(2)` through libc, so its `atfork` handlers (malloc's among them) run.
pub(crate) fn fork() -> io::Result<Forked> {
    let pid = syscall!(fork())?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}

/// A fork whose child becomes a child of the caller's parent (`CLONE_PARENT`).
///
/// The fork server uses it so that workers are children of the user's process, which can then
/// wait for them, signal them through pidfds and read their exit status directly. Only a
/// single-threaded caller may use it: libc's `atfork` handlers do not run.
pub(crate) fn fork_as_sibling() -> io::Result<Forked> {
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with no CLONE_VM and a null stack, clone behaves as fork: the child gets a
    // copy-on-write copy of the single-threaded caller's address space and resumes here.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // A raw clone runs no atfork handler: forget the parent's pid by hand.
            forget_pid();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `pidfd_open(2)`: a file descriptor that refers to `pid` and becomes readable when it exits.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signals the process the pidfd refers to, immune to pid reuse.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call; a null siginfo means "as kill(2) would send it".
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<u8>(), 0)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a child ended, as `waitid(2)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Reaps the child behind `pidfd`. With `block == false` returns `None` if it still runs.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<WaitStatus>> {
    const P_PIDFD: libc::idtype_t = 3;
    let mut options = libc::WEXITED;
    if !block {
        options |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero bytes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let id = pidfd.as_raw_fd() as libc::id_t;
        match syscall!(waitid(P_PIDFD, id, &mut info, options)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // SAFETY: waitid filled `info` for a child event (or left si_pid 0 with WNOHANG).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => WaitStatus::Exited(status),
            _ => WaitStatus::Signaled(status),
        }));
    }
}

/// This process's pid, cached: glibc's `getpid` is a system call, and locks ask on every
/// acquisition. 0 means "not known"; every fork resets it in the child.
static PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// 0: the fork handler that resets `PID` is not registered; 1: being registered; 2: registered.
/// Not a `Once`: a `Fork` child of a thread that was inside `call_once` would wait for ever.
static PID_RESET: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

extern "C" fn forget_pid() {
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// The caller's process id.
pub(crate) fn getpid() -> libc::pid_t {
    let cached = PID.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
    match PID_RESET.compare_exchange(0, 1, AcqRel, Acquire) {
        Ok(_) => {
            // SAFETY: registers a plain C function, run in the child of every libc fork.
            unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
            PID_RESET.store(2, Release);
        }
        Err(2) => {}
        // Another thread is registering the handler: answer without caching until it is in.
        // SAFETY: getpid cannot fail.
        Err(_) => return unsafe { libc::getpid() },
    }
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    pid
}

/// The caller's parent's process id.
pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// Whether the calling thread is the process's main thread.
pub(crate) fn is_main_thread() -> bool {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Asks for SIGKILL when the parent (the thread that created us) exits, then closes the race
/// where the parent died before the request: if the parent is no longer `expected_parent`, exit.
/// Async-signal-safe.
pub(crate) fn die_with_parent(expected_parent: libc::pid_t) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if getppid() != expected_parent {
        exit_now(1);
    }
}

/// `_exit(2)`: ends the process at once, running no `atexit` handler and no destructor.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Sets the disposition of SIGPIPE to "ignore", as Rust's runtime does before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Flushes C stdio buffers, so that a fork does not copy unwritten output into the child.
pub(crate) fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes every open C stream.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// In a freshly forked child about to exec: moves `keep` to `target`, marks every other
/// descriptor from 3 up close-on-exec, and clears close-on-exec on `target`.
/// Async-signal-safe.
pub(crate) fn prepare_fds_for_exec(keep: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    if keep.as_raw_fd() != target {
        syscall!(dup2(keep.as_raw_fd(), target))?;
    }
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    syscall!(fcntl(target, libc::F_SETFD, 0))?;
    Ok(())
}

/// `execve(2)` of this very program (`/proc/self/exe`, which names the running executable even
/// if its path was replaced on disk). Returns only on failure. Async-signal-safe.
pub(crate) fn exec_self(argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> io::Error {
    const SELF_EXE: &CStr = c"/proc/self/exe";
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv and envp are null-terminated arrays of pointers to NUL-terminated strings
    // that the caller keeps alive; on success execve does not return.
    unsafe { libc::execve(SELF_EXE.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Duplicates `fd` to a new close-on-exec descriptor that the caller owns.
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    let new = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Number of threads in the calling process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1)
}

/// Number of CPUs online.
pub(crate) fn cpu_count() -> usize {
    // SAFETY: sysconf with a valid name cannot cause harm.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        1
    } else {
        n as usize
    }
}

/// Registers `f` to run at normal process exit (`exit(3)`, returning from `main`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function with the C ABI and no arguments.
    unsafe { libc::atexit(f) };
}

/// Signal names for messages ("SIGKILL").
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// Closes a descriptor number this process owns but no `OwnedFd` represents any more (an
/// inherited copy after `fork`).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closing an integer descriptor has no memory effects; the caller guarantees no live
    // object in this process will use the number again.
    unsafe { libc::close(fd) };
}

/// Whether a process with this pid exists and has not exited (`kill(pid, 0)`, then its state in
/// `/proc`: a zombie counts as dead; a process we may not signal exists). Zero and negative
/// numbers name no process here (for `kill` they mean process groups).
pub(crate) fn pid_alive(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return false;
    }
    if cfg!(miri) {
        // Miri interprets one process and has no kill(2): only we exist.
        return pid == getpid();
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // kill(2) also succeeds for a zombie (exited, not yet reaped by its parent), so a waiter in
    // that parent would never see its child dead: the state letter in /proc tells. This runs
    // once per sleep slice of a waiter, never on a fast path.
    !matches!(proc_state(pid), Some(b'Z' | b'X') | None)
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`R`, `S`, `Z`...); `None` if the process
/// is gone. Where `/proc` cannot be read at all, `Some(b'?')`: nothing is known beyond kill(2).
fn proc_state(pid: libc::pid_t) -> Option<u8> {
    let stat = match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            // Gone between the two checks, unless /proc itself is missing.
            return if std::path::Path::new("/proc/self/stat").exists() { None } else { Some(b'?') };
        }
        Err(_) => return Some(b'?'),
    };
    // `pid (comm) S ...`: comm may hold spaces and parentheses, so go by the last ')'.
    let rest = &stat[stat.iter().rposition(|&b| b == b')').map_or(stat.len(), |i| i + 1)..];
    Some(rest.iter().copied().find(|b| !b.is_ascii_whitespace()).unwrap_or(b'?'))
}

/// How many CPUs this thread may run on (its affinity mask), at least 1.
pub(crate) fn affinity_cpu_count() -> usize {
    if cfg!(miri) {
        return cpu_count();
    }
    // SAFETY: cpu_set_t is plain data for which all-zero bytes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`, which we own.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        // A mask wider than 1024 CPUs: the online count is the best bound known.
        return cpu_count();
    }
    // SAFETY: `set` was filled by the kernel above.
    (unsafe { libc::CPU_COUNT(&set) } as usize).max(1)
}

/// The CPU the calling thread runs on as of this call, plus one; 0 where that is unknown
/// (glibc reads it from the thread's rseq area or the vDSO, without a system call).
pub(crate) fn current_cpu() -> u32 {
    if cfg!(miri) {
        return 0;
    }
    // SAFETY: sched_getcpu takes no arguments and only returns a number (-1 on failure).
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).map_or(0, |c| c.wrapping_add(1))
}

/// Binds the calling thread to CPU `cpu` alone (tests that need two sides on known CPUs).
#[cfg(test)]
pub(crate) fn pin_thread_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data for which all-zero bytes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: CPU_SET writes one bit of the set we own; cpu is below CPU_SETSIZE (checked).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes of `set`, which we own.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// In a new child: waits on its end of a *start gate* (a socket pair) for the parent to open it
/// with one byte; `false` when every copy of the other end closed without it (the start
/// failed, and the child must not run the target). Async-signal-safe.
pub(crate) fn wait_gate(fd: BorrowedFd<'_>) -> bool {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local.
        let r = unsafe { libc::read(fd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return r == 1;
    }
}

/// In a new child: writes its pid (4 bytes, little-endian) on `fd`, so that a parent that never
/// learnt it otherwise can still find, kill and reap it. Async-signal-safe.
pub(crate) fn report_pid(fd: BorrowedFd<'_>) {
    // SAFETY: getpid cannot fail (no cache here: this may run right after a raw clone).
    let pid = unsafe { libc::getpid() }.to_le_bytes();
    loop {
        // SAFETY: sends 4 bytes from a live local; a closed peer is EPIPE, never SIGPIPE.
        let r = unsafe { libc::send(fd.as_raw_fd(), pid.as_ptr().cast(), pid.len(), libc::MSG_NOSIGNAL) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Lets the child waiting on the other end of a gate go on (one byte). A child already gone is
/// not an error here: its exit status tells.
pub(crate) fn open_gate(fd: BorrowedFd<'_>) {
    loop {
        // SAFETY: sends one byte from a static; MSG_NOSIGNAL: a closed peer is EPIPE, never
        // SIGPIPE, whatever the program's SIGPIPE disposition.
        let r = unsafe { libc::send(fd.as_raw_fd(), b"g".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Kills (SIGKILL) and reaps a child of this process that no pidfd refers to. An unreaped child
/// keeps its pid, so the number cannot name another process here.
pub(crate) fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signals a child of this process by pid (see above).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    loop {
        // SAFETY: waits for that child; a null status pointer is allowed.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

/// Sets the send and receive timeouts of a socket: a blocking send or receive that makes no
/// progress for `limit` fails with `WouldBlock`.
pub(crate) fn set_io_timeouts(fd: BorrowedFd<'_>, limit: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_usec: limit.subsec_micros() as libc::suseconds_t,
    };
    for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
        syscall!(setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t
        ))?;
    }
    Ok(())
}
