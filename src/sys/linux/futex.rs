//! Futex waits and wakes on words in memory shared between processes.
//!
//! This is the crate's only futex code; every lock, semaphore, event and queue waits here.
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed on the address space and silently
//! never wakes a waiter in another process.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// Outcome of [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken, or the word no longer held `expected`, or a signal arrived: re-check the state.
    Retry,
    /// The deadline passed.
    TimedOut,
}

fn to_timespec(deadline: Instant) -> libc::timespec {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; `Instant` is CLOCK_MONOTONIC
    // on Linux, so convert through the distance from now.
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let left = deadline.saturating_duration_since(Instant::now());
    let mut sec = now.tv_sec + left.as_secs() as libc::time_t;
    let mut nsec = now.tv_nsec + left.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// Sleeps while `*word == expected`, until woken or `deadline`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> io::Result<Wait> {
    let ts = deadline.map(to_timespec);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; the kernel only reads
    // it. The timespec, if any, lives on this stack frame.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            // The kernel reads the mask as a u32 (all bits set); libc spells it as -1i32.
            libc::FUTEX_BITSET_MATCH_ANY as u32,
        )
    };
    if r == 0 {
        return Ok(Wait::Retry);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Wait::Retry),
        Some(libc::ETIMEDOUT) => Ok(Wait::TimedOut),
        _ => Err(e),
    }
}

/// Wakes up to `n` waiters on `word`; returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, n: i32) -> usize {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access it.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// Wakes every waiter on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX)
}

/// One word of a [`wait_any`] call (the kernel's `struct futex_waitv`).
#[cfg(feature = "tokio")]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitV {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// The most words one [`wait_any`] call sleeps on.
#[cfg(feature = "tokio")]
pub(crate) const WAITV_MAX: usize = 128;

#[cfg(feature = "tokio")]
impl WaitV {
    /// Sleep while the u32 at `addr` holds `expected`. `addr` is only an address here: the
    /// kernel checks it, and an unmapped one makes the call fail with `EFAULT`.
    pub(crate) fn new(addr: usize, expected: u32) -> WaitV {
        // FUTEX2_SIZE_U32, and never FUTEX2_PRIVATE (the words live in shared memory).
        WaitV { val: expected as u64, uaddr: addr as u64, flags: 0x02, reserved: 0 }
    }
}

/// Outcome of [`wait_any`].
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitAny {
    /// A wake reached the word at this index.
    Woken(usize),
    /// A word did not hold its value, or an address was bad.
    Mismatch,
    /// A signal arrived.
    Interrupted,
    /// The deadline passed.
    TimedOut,
}

/// `futex_waitv(2)` (Linux 5.16+): sleeps until a wake reaches any of `words`, or `deadline`.
#[cfg(feature = "tokio")]
pub(crate) fn wait_any(words: &[WaitV], deadline: Option<Instant>) -> io::Result<WaitAny> {
    let ts = deadline.map(to_timespec);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let n = words.len().min(WAITV_MAX) as libc::c_uint;
    // SAFETY: `words` is a live array of `n` kernel-layout entries and the timespec lives on
    // this frame; the kernel only reads both. The addresses inside are checked by the kernel
    // (a stale one fails with EFAULT, or compares against whatever is mapped there now, which
    // only makes the call return early); the kernel never writes through them.
    let r = unsafe {
        libc::syscall(libc::SYS_futex_waitv, words.as_ptr(), n, 0u32, ts_ptr, libc::CLOCK_MONOTONIC)
    };
    if r >= 0 {
        return Ok(WaitAny::Woken(r as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EFAULT) => Ok(WaitAny::Mismatch),
        Some(libc::EINTR) => Ok(WaitAny::Interrupted),
        Some(libc::ETIMEDOUT) => Ok(WaitAny::TimedOut),
        _ => Err(e),
    }
}

/// Wakes up to `n` waiters on the u32 at `addr`, which may no longer be mapped (then nothing
/// happens) or may now hold another word (whose waiters see a spurious wake-up, which every
/// futex wait tolerates).
#[cfg(feature = "tokio")]
pub(crate) fn wake_addr(addr: usize, n: i32) -> usize {
    // SAFETY: FUTEX_WAKE never reads or writes the word; the kernel checks the address.
    let r = unsafe { libc::syscall(libc::SYS_futex, addr as *const u32, libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// The futex under the model checker (`cfg(loom)`), for words of loom's atomics: sleepers in a
/// table keyed by the word's address, behind one loom mutex and condition variable. A wait
/// compares the word and enters the table under that mutex, as the kernel does under its
/// hash-bucket lock, and a wake marks sleepers under it: so a wake that follows a change of the
/// word either finds the sleeper or the sleeper's comparison sees the change.
///
/// Deadlines are not modelled: a sleep ends only with a wake (never spuriously), so a lost
/// wake-up leaves a thread asleep for ever, a deadlock that the checker reports, where the real
/// waits' slices would only bound its cost.
#[cfg(loom)]
pub(crate) mod model {
    use super::Wait;
    use loom::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use loom::sync::{Condvar, Mutex};
    use std::io;
    use std::time::Instant;

    #[derive(Default)]
    struct Sleepers {
        next: u64,
        /// Address of the word, ticket, woken.
        list: Vec<(usize, u64, bool)>,
    }

    struct Table {
        sleepers: Mutex<Sleepers>,
        woken: Condvar,
    }

    loom::lazy_static! {
        static ref TABLE: Table = Table { sleepers: Mutex::new(Sleepers::default()), woken: Condvar::new() };
    }

    fn addr(word: &AtomicU32) -> usize {
        word as *const AtomicU32 as usize
    }

    /// Sleeps while `*word == expected`, until woken (`_deadline` is not modelled).
    pub(crate) fn wait(word: &AtomicU32, expected: u32, _deadline: Option<Instant>) -> io::Result<Wait> {
        let mut s = TABLE.sleepers.lock().unwrap();
        if word.load(SeqCst) != expected {
            return Ok(Wait::Retry);
        }
        let ticket = s.next;
        s.next += 1;
        s.list.push((addr(word), ticket, false));
        loop {
            s = TABLE.woken.wait(s).unwrap();
            if let Some(i) = s.list.iter().position(|&(_, t, woken)| t == ticket && woken) {
                s.list.remove(i);
                return Ok(Wait::Retry);
            }
        }
    }

    /// Wakes up to `n` sleepers on `word`; how many were woken.
    pub(crate) fn wake(word: &AtomicU32, n: i32) -> usize {
        let at = addr(word);
        let mut s = TABLE.sleepers.lock().unwrap();
        let mut woken = 0;
        for entry in s.list.iter_mut().filter(|e| e.0 == at && !e.2).take(n.max(0) as usize) {
            entry.2 = true;
            woken += 1;
        }
        if woken > 0 {
            TABLE.woken.notify_all();
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wait_times_out_after_the_deadline() {
        let w = AtomicU32::new(0);
        let t = Instant::now();
        let mut r = Wait::Retry;
        while r == Wait::Retry {
            r = wait(&w, 0, Some(t + Duration::from_millis(50))).unwrap();
        }
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn wait_returns_at_once_when_the_value_differs() {
        let w = AtomicU32::new(1);
        assert_eq!(wait(&w, 0, None).unwrap(), Wait::Retry);
    }

    #[test]
    fn wake_releases_a_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let h = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, None).unwrap();
            }
        });
        w.store(1, Ordering::Release);
        wake_all(&w);
        h.join().unwrap();
    }
}
