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

/// A forked child pushes n u64s into a 4096-slot single-producer single-consumer ring in shared
/// memory, the parent pops them; both spin (`sched_yield` after 1000 tries) when the ring is full
/// or empty. Per item.
pub fn spsc_ring(n: usize) -> Sample {
    const SLOTS: usize = 4096;
    let shm = Shared::new(4096 + SLOTS * 8);
    let (head, tail) = (shm.word(0), shm.word(1)); // head: items pushed, tail: items popped
    let slot = |i: u32| {
        // SAFETY: the slots lie after the control page, inside the mapping, 8-byte aligned.
        unsafe { &*(shm.ptr.add(4096 + (i as usize % SLOTS) * 8) as *const std::sync::atomic::AtomicU64) }
    };
    let total = n as u32;
    let pid = fork();
    if pid == 0 {
        for i in 0..total {
            let mut tries = 0;
            while i.wrapping_sub(tail.load(Ordering::Acquire)) as usize >= SLOTS {
                backoff(&mut tries);
            }
            slot(i).store(i as u64, Ordering::Relaxed);
            head.store(i + 1, Ordering::Release);
        }
        exit_child();
    }
    let m = Meter::start();
    for i in 0..total {
        let mut tries = 0;
        while head.load(Ordering::Acquire) == i {
            backoff(&mut tries);
        }
        assert_eq!(slot(i).load(Ordering::Relaxed), i as u64);
        tail.store(i + 1, Ordering::Release);
    }
    let s = m.stop(n as f64);
    wait(pid);
    s
}

fn backoff(tries: &mut u32) {
    *tries += 1;
    if *tries == 1000 {
        *tries = 0;
        std::thread::yield_now();
    } else {
        spin_loop();
    }
}

/// Compare-and-swap acquire + release of an uncontended word, per operation.
pub fn cas_lock(n: usize) -> Sample {
    let w = AtomicU32::new(0);
    let m = Meter::start();
    for _ in 0..n {
        let w = std::hint::black_box(&w);
        while w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spin_loop();
        }
        w.store(0, Ordering::Release);
    }
    m.stop(n as f64)
}

/// Two forked children, released together through a shared word, each add 1 to a shared counter
/// n/2 times under a CAS spin lock (`sched_yield` after 100 tries); timed from the release to
/// the last increment. Per increment.
pub fn locked_increment(n: usize) -> Sample {
    let per = n.div_ceil(2) as u32;
    let shm = Shared::new(4096);
    let (lock, go, done) = (shm.word(0), shm.word(1), shm.word(2));
    // SAFETY: word 3's slot is inside the mapping and 8-byte aligned; only touched under `lock`.
    let counter = unsafe { &*(shm.ptr.add(3 * 64) as *const std::sync::atomic::AtomicU64) };
    let pids: Vec<i32> = (0..2)
        .map(|_| {
            let pid = fork();
            if pid == 0 {
                await_word(go, 1, Wait::Futex);
                for _ in 0..per {
                    let mut tries = 0;
                    while lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
                        tries += 1;
                        if tries == 100 {
                            tries = 0;
                            std::thread::yield_now();
                        } else {
                            spin_loop();
                        }
                    }
                    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    lock.store(0, Ordering::Release);
                }
                done.fetch_add(1, Ordering::AcqRel);
                futex_wake(done);
                exit_child();
            }
            pid
        })
        .collect();
    let m = Meter::start();
    set_word(go, 1, Wait::Futex);
    loop {
        let d = done.load(Ordering::Acquire);
        if d == 2 {
            break;
        }
        futex_wait(done, d);
    }
    let s = m.stop(2.0 * per as f64);
    for pid in pids {
        wait(pid);
    }
    assert_eq!(counter.load(Ordering::Relaxed), 2 * per as u64);
    s
}

/// `VmRSS` (KiB) of an idle `sleep` process: what any idle process costs. The sample's `secs`
/// holds the figure (not timed).
pub fn rss_sleep(_n: usize) -> Sample {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = child.id() as i32;
    let t = std::time::Instant::now();
    // Until it is asleep in its new image: named `sleep` and in state S (in nanosleep).
    let asleep = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.contains("(sleep)")
            && stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('S'))
    };
    while !asleep() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let rss = crate::host::rss_kib(pid).unwrap_or(f64::NAN);
    let _ = child.kill(); // by pid, our own child
    let _ = child.wait();
    Sample { secs: rss, ops: 1.0, cpu: 0.0 }
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
        assert_eq!(spsc_ring(10_000).ops, 10_000.0);
        assert_eq!(cas_lock(100).ops, 100.0);
        assert_eq!(locked_increment(1000).ops, 1000.0);
        assert!(rss_sleep(1).secs > 0.0);
        assert_eq!(handoff_1mib(3).ops, 3.0);
    }
}
