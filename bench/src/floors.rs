//! Physical floors, written on libc: what the kernel and the memory system allow for each kind of
//! workload on this machine, in this placement, measured in the same run.

use crate::host::{Meter, Sample};
use std::hint::spin_loop;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

const MIB: usize = 1 << 20;

fn fork() -> i32 {
    // SAFETY: the children of these floors only touch memory mapped before the fork, atomics and
    // async-signal-safe calls, then `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    pid
}

fn exit_child() -> ! {
    // SAFETY: `_exit` ends the forked child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

fn wait(pid: i32) {
    let mut st = 0;
    // SAFETY: `st` is a valid out-pointer; `pid` is our child.
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
}

/// fork + `_exit(0)` + waitpid, per process.
pub fn fork_exit_wait(n: usize) -> Sample {
    let m = Meter::start();
    for _ in 0..n {
        let pid = fork();
        if pid == 0 {
            exit_child();
        }
        wait(pid);
    }
    m.stop(n as f64)
}

/// posix_spawn of /bin/true + waitpid, per process.
pub fn posix_spawn_wait(n: usize) -> Sample {
    let path = c"/bin/true";
    let argv = [path.as_ptr() as *mut libc::c_char, ptr::null_mut()];
    let envp = [ptr::null_mut::<libc::c_char>()];
    let m = Meter::start();
    for _ in 0..n {
        let mut pid = 0;
        // SAFETY: path, argv and envp are NUL-terminated and outlive the call.
        let r = unsafe {
            libc::posix_spawn(&mut pid, path.as_ptr(), ptr::null(), ptr::null(), argv.as_ptr(), envp.as_ptr())
        };
        assert_eq!(r, 0, "posix_spawn");
        wait(pid);
    }
    m.stop(n as f64)
}

/// 8-byte ping-pong over an AF_UNIX stream socketpair with a forked child, per round trip.
pub fn socketpair_roundtrip(n: usize) -> Sample {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }, 0);
    let pid = fork();
    let mut buf = [0u8; 8];
    if pid == 0 {
        // SAFETY: reads and writes into `buf`, which is 8 bytes, on our own descriptors.
        unsafe {
            libc::close(fds[0]);
            while libc::read(fds[1], buf.as_mut_ptr().cast(), 8) == 8 {
                libc::write(fds[1], buf.as_ptr().cast(), 8);
            }
        }
        exit_child();
    }
    // SAFETY: closes the child's end in the parent.
    unsafe { libc::close(fds[1]) };
    let rt = |buf: &mut [u8; 8]| {
        // SAFETY: as in the child.
        unsafe {
            assert_eq!(libc::write(fds[0], buf.as_ptr().cast(), 8), 8);
            assert_eq!(libc::read(fds[0], buf.as_mut_ptr().cast(), 8), 8);
        }
    };
    rt(&mut buf);
    let m = Meter::start();
    for _ in 0..n {
        rt(&mut buf);
    }
    let s = m.stop(n as f64);
    // SAFETY: our descriptor; closing it ends the child's loop.
    unsafe { libc::close(fds[0]) };
    wait(pid);
    s
}

/// Shared anonymous memory that survives fork, as `len` bytes.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        // SAFETY: a fresh anonymous shared mapping; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared { ptr: ptr.cast(), len }
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        assert!((i + 1) * 64 <= self.len);
        // SAFETY: in bounds (checked), 64-byte aligned inside a page-aligned mapping, and
        // AtomicU32 has the layout of u32; the mapping lives as long as `self`.
        unsafe { &*(self.ptr.add(i * 64) as *const AtomicU32) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`, no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn futex_wait(w: &AtomicU32, val: u32) {
    // SAFETY: FUTEX_WAIT on a valid shared word; returns at once if the word is not `val`.
    unsafe {
        libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAIT, val, ptr::null::<libc::timespec>())
    };
}

fn futex_wake(w: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid shared word.
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// How a floor's side waits for the word to reach `want`.
#[derive(Clone, Copy)]
enum Wait {
    /// Sleep in the kernel at once (FUTEX_WAIT), wake with FUTEX_WAKE every time.
    Futex,
    /// Spin; `sched_yield` after every 1000 tries, so that on one core the peer gets the CPU.
    Spin,
    /// Spin 1000 tries, then sleep in the kernel.
    SpinThenFutex,
}

fn await_word(w: &AtomicU32, want: u32, how: Wait) {
    let mut tries = 0u32;
    loop {
        let cur = w.load(Ordering::Acquire);
        if cur == want {
            return;
        }
        match how {
            Wait::Futex => futex_wait(w, cur),
            Wait::Spin => {
                tries += 1;
                if tries == 1000 {
                    tries = 0;
                    std::thread::yield_now();
                } else {
                    spin_loop();
                }
            }
            Wait::SpinThenFutex => {
                tries += 1;
                if tries > 1000 {
                    futex_wait(w, cur);
                } else {
                    spin_loop();
                }
            }
        }
    }
}

fn set_word(w: &AtomicU32, v: u32, how: Wait) {
    w.store(v, Ordering::Release);
    if !matches!(how, Wait::Spin) {
        futex_wake(w);
    }
}

fn shared_roundtrip(n: usize, how: Wait) -> Sample {
    let shm = Shared::new(4096);
    let w = shm.word(0);
    let total = n as u32 + 1;
    let pid = fork();
    if pid == 0 {
        for i in 0..total {
            await_word(w, 2 * i + 1, how);
            set_word(w, 2 * i + 2, how);
        }
        exit_child();
    }
    set_word(w, 1, how);
    await_word(w, 2, how);
    let m = Meter::start();
    for i in 1..total {
        set_word(w, 2 * i + 1, how);
        await_word(w, 2 * i + 2, how);
    }
    let s = m.stop(n as f64);
    wait(pid);
    s
}

/// Round trip through one shared word, both sides sleeping in FUTEX_WAIT, per round trip.
pub fn futex_roundtrip(n: usize) -> Sample {
    shared_roundtrip(n, Wait::Futex)
}

/// Round trip through one shared word, both sides spinning, per round trip.
pub fn spin_roundtrip(n: usize) -> Sample {
    shared_roundtrip(n, Wait::Spin)
}

/// memcpy of 1 MiB inside one process, MiB/s.
pub fn memcpy_1mib(n: usize) -> Sample {
    let src = vec![7u8; MIB];
    let mut dst = vec![0u8; MIB];
    let m = Meter::start();
    for _ in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    m.stop(n as f64)
}

/// A forked child hands 1 MiB blocks to the parent through two shared 1 MiB slots: the child
/// copies its block in, the parent copies it out (the two copies a queue makes); MiB/s.
pub fn handoff_1mib(n: usize) -> Sample {
    let shm = Shared::new(2 * MIB + 4096);
    let slot = |i: usize| {
        // SAFETY: the two slots lie after the control page, inside the mapping.
        unsafe { shm.ptr.add(4096 + (i % 2) * MIB) }
    };
    let full = [shm.word(0), shm.word(1)];
    let how = Wait::SpinThenFutex;
    let src = vec![7u8; MIB];
    let mut dst = vec![0u8; MIB];
    let pid = fork();
    if pid == 0 {
        for i in 0..n + 1 {
            let k = i % 2;
            await_word(full[k], 0, how);
            // SAFETY: the slot is the child's while its word is 0.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), slot(i), MIB) };
            set_word(full[k], 1, how);
        }
        exit_child();
    }
    let take = |i: usize, dst: &mut [u8]| {
        let k = i % 2;
        await_word(full[k], 1, how);
        // SAFETY: the slot is the parent's while its word is 1.
        unsafe { ptr::copy_nonoverlapping(slot(i), dst.as_mut_ptr(), MIB) };
        set_word(full[k], 0, how);
    };
    take(0, &mut dst);
    let m = Meter::start();
    for i in 1..n + 1 {
        take(i, &mut dst);
    }
    let s = m.stop(n as f64);
    wait(pid);
    assert_eq!(dst[MIB - 1], 7);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_complete_and_count_their_operations() {
        for f in [fork_exit_wait, posix_spawn_wait, socketpair_roundtrip, futex_roundtrip, spin_roundtrip] {
            let s = f(20);
            assert_eq!(s.ops, 20.0);
            assert!(s.secs > 0.0);
        }
        assert_eq!(memcpy_1mib(3).ops, 3.0);
        assert_eq!(handoff_1mib(3).ops, 3.0);
    }
}
