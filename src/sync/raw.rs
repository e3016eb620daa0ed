//! The raw process-shared lock: one futex word naming its holder.
//!
//! State table of the word (`u32`):
//!
//! | value | meaning | moved by |
//! | --- | --- | --- |
//! | `0` | free | release (swap to 0) |
//! | `pid` | held by process `pid`, nobody sleeping | acquire (CAS 0 -> pid) |
//! | `pid \| WAITERS` | held, a waiter may sleep on the word | a waiter (CAS pid -> pid\|WAITERS) before sleeping; an acquirer that has slept takes the lock as `me\|WAITERS` |
//!
//! A waiter sleeps on the futex in slices of [`SLICE`]. After each slice it checks that the holder
//! still exists (`kill(pid, 0)`); if not, it takes the word over (CAS holder -> me|WAITERS) and
//! reports the holder's death, the way `std::sync::Mutex` reports poisoning. So a holder killed
//! with SIGKILL is detected within one slice, never a hang. Release swaps 0 in and wakes one
//! sleeper if the WAITERS bit was set. Pids fit in 22 bits (`pid_max` <= 2^22), so bit 31 is free.
//! A pid reused by an unrelated process before a waiter looks delays detection until that process
//! ends; it cannot hand the lock to two holders.

use crate::sys::{self, futex};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = !WAITERS;

/// How long a waiter sleeps before it checks that the holder is alive.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// Spins before the first sleep (a futex round trip costs far more than a short spin).
const SPINS: u32 = 100;

/// How an acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock is ours.
    Yes,
    /// The lock is ours, taken over from this holder, which died holding it.
    FromDead(i32),
    /// The deadline passed.
    TimedOut,
}

fn me() -> u32 {
    sys::getpid() as u32
}

/// Acquires `word`, waiting until `deadline` (`None`: for ever).
pub(crate) fn acquire(word: &AtomicU32, deadline: Option<Instant>) -> Acquired {
    let me = me();
    if word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        return Acquired::Yes;
    }
    for _ in 0..SPINS {
        std::hint::spin_loop();
        if word.load(Ordering::Relaxed) == 0
            && word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            return Acquired::Yes;
        }
    }
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            // Having waited, we cannot know whether others sleep: keep the WAITERS bit.
            if word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Acquired::Yes;
            }
            continue;
        }
        if cur & WAITERS == 0
            && word.compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            continue;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Acquired::TimedOut;
        }
        let slice_end = now + SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        if let Ok(futex::Wait::TimedOut) = futex::wait(word, cur | WAITERS, Some(until)) {
            let holder = (cur & PID_MASK) as i32;
            if holder != 0
                && !sys::pid_alive(holder)
                && word
                    .compare_exchange(cur | WAITERS, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Acquired::FromDead(holder);
            }
        }
    }
}

/// Acquires `word` only if it is free now.
pub(crate) fn try_acquire(word: &AtomicU32) -> Acquired {
    let cur = word.load(Ordering::Relaxed);
    if cur == 0 && word.compare_exchange(0, me(), Ordering::Acquire, Ordering::Relaxed).is_ok() {
        return Acquired::Yes;
    }
    let holder = (cur & PID_MASK) as i32;
    if holder != 0
        && !sys::pid_alive(holder)
        && word.compare_exchange(cur, me() | (cur & WAITERS), Ordering::Acquire, Ordering::Relaxed).is_ok()
    {
        return Acquired::FromDead(holder);
    }
    Acquired::TimedOut
}

/// Releases `word`. `false` if it was not held.
pub(crate) fn release(word: &AtomicU32) -> bool {
    let old = word.swap(0, Ordering::Release);
    if old & WAITERS != 0 {
        futex::wake(word, 1);
    }
    old != 0
}

/// The pid holding `word`, if any.
pub(crate) fn holder(word: &AtomicU32) -> Option<i32> {
    match word.load(Ordering::Relaxed) & PID_MASK {
        0 => None,
        pid => Some(pid as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn uncontended_acquire_and_release() {
        let w = AtomicU32::new(0);
        assert_eq!(acquire(&w, None), Acquired::Yes);
        assert_eq!(holder(&w), Some(sys::getpid()));
        assert_eq!(try_acquire(&w), Acquired::TimedOut);
        assert!(release(&w));
        assert!(!release(&w));
        assert_eq!(try_acquire(&w), Acquired::Yes);
    }

    #[test]
    fn timeout_is_honoured() {
        let w = AtomicU32::new(0);
        acquire(&w, None);
        let t = Instant::now();
        assert_eq!(acquire(&w, Some(t + Duration::from_millis(50))), Acquired::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_dead_holder_is_taken_over() {
        // No process has pid 2^22 - 1 on a default system (pid_max is at most 2^22).
        let w = AtomicU32::new((1 << 22) - 1);
        assert_eq!(
            acquire(&w, Some(Instant::now() + Duration::from_secs(5))),
            Acquired::FromDead((1 << 22) - 1)
        );
    }

    #[test]
    fn threads_exclude_each_other() {
        const ROUNDS: u32 = if cfg!(miri) { 100 } else { 10_000 };
        let w = Arc::new(AtomicU32::new(0));
        let counter = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (w, c) = (w.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        acquire(&w, None);
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                        release(&w);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 4 * ROUNDS);
    }
}
