//! `Condition`: wait for a notification while releasing a lock (Python's
//! `multiprocessing.Condition`).
//!
//! State: the lock (see `raw.rs`) and `seq`, a futex word bumped by every notify. A waiter reads
//! `seq`, releases the lock, sleeps while `seq` is unchanged, then takes the lock back. Like
//! Python's (and POSIX's) condition variables it can wake spuriously, so callers re-check their
//! predicate: [`Condition::wait_for`] does that loop. A waiter whose notifier died never hangs
//! with the timeout forms.

use super::cell::{Shared, SharedLayout};
use super::lock::{Lock, LockGuard, LockState};
use crate::error::{Error, Result};
use crate::sys::{self, futex};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[repr(C)]
pub(crate) struct CondState {
    magic: u32,
    seq: AtomicU32,
    lock: LockState,
}

// SAFETY: repr(C), atomics and a LockState, magic first; all-zero is valid.
unsafe impl SharedLayout for CondState {
    const MAGIC: u32 = 0x434f_4e31; // "CON1"
}

const _: () = assert!(std::mem::size_of::<CondState>() == 24);

/// A process-shared condition variable with its own lock.
///
/// ```
/// use multiprocessing::Condition;
/// use std::time::Duration;
/// let cond = Condition::new()?;
/// let guard = cond.acquire().unwrap();
/// let (guard, notified) = cond.wait_timeout(guard, Duration::from_millis(10));
/// assert!(!notified);
/// cond.notify_all()?;
/// drop(guard);
/// # Ok::<(), multiprocessing::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    state: Shared<CondState>,
    lock: Lock,
}

fn lock_of(state: &Shared<CondState>) -> Lock {
    Lock::from_state(state.project::<LockState>(std::mem::offset_of!(CondState, lock)))
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let state = Shared::<CondState>::deserialize(d)?;
        let lock = lock_of(&state);
        Ok(Condition { state, lock })
    }
}

impl Condition {
    /// A new condition with a new lock.
    pub fn new() -> Result<Condition> {
        let state: Shared<CondState> = Shared::new(c"mp-condition", 0)?;
        let lock_state = state.project::<LockState>(std::mem::offset_of!(CondState, lock));
        // SAFETY: the embedded lock's magic is its first u32; fresh region, no other handle.
        unsafe { (lock_state.get() as *const LockState as *mut u32).write(LockState::MAGIC) };
        let lock = lock_of(&state);
        Ok(Condition { state, lock })
    }

    /// The condition's lock (Python's `Condition._lock`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Acquires the condition's lock (Python's `acquire()` / `with cond:`).
    pub fn acquire(&self) -> super::LockResult<LockGuard<'_>> {
        self.lock.acquire()
    }

    fn wait_until<'a>(&'a self, guard: LockGuard<'a>, deadline: Option<Instant>) -> (LockGuard<'a>, bool) {
        let seq = &self.state.get().seq;
        let seen = seq.load(Ordering::Acquire);
        drop(guard);
        let r = futex::wait(seq, seen, deadline);
        let notified = seq.load(Ordering::Acquire) != seen || !matches!(r, Ok(futex::Wait::TimedOut));
        let guard = self.lock.acquire().unwrap_or_else(|died| {
            log::warn!("multiprocessing: {died}");
            died.into_inner()
        });
        (guard, notified)
    }

    /// Releases the lock, waits without blocking the thread until notified, takes the lock
    /// back (the async form of [`wait`](Self::wait); it may wake spuriously, as `wait` may).
    ///
    /// # Cancel safety
    ///
    /// The guard is given up when the future is first polled. Dropped while waiting for the
    /// notification or for the lock, the future leaves the lock released (not held), no waiter
    /// registered, and passes a notification it consumed on to another waiter.
    #[cfg(feature = "tokio")]
    pub async fn wait_async<'a>(&'a self, guard: LockGuard<'a>) -> LockGuard<'a> {
        let seq = &self.state.get().seq;
        let seen = seq.load(Ordering::Acquire);
        drop(guard);
        crate::aio::until_word(seq, None, true, |v| v != seen).await;
        self.lock.acquire_async().await.unwrap_or_else(|died| {
            log::warn!("multiprocessing: {died}");
            died.into_inner()
        })
    }

    /// Releases the lock, sleeps until notified, takes the lock back (Python's `wait()`).
    pub fn wait<'a>(&'a self, guard: LockGuard<'a>) -> LockGuard<'a> {
        self.wait_until(guard, None).0
    }

    /// As [`wait`](Self::wait), at most `timeout`; the flag is `false` if it timed out.
    pub fn wait_timeout<'a>(&'a self, guard: LockGuard<'a>, timeout: Duration) -> (LockGuard<'a>, bool) {
        self.wait_until(guard, Some(Instant::now() + timeout))
    }

    /// Waits until `predicate()` holds, re-checking after every wake-up, at most `timeout` if
    /// given (Python's `wait_for`). Returns the last value of the predicate.
    pub fn wait_for<'a>(
        &'a self,
        mut guard: LockGuard<'a>,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> (LockGuard<'a>, bool) {
        let deadline = sys::deadline_after(timeout);
        loop {
            if predicate() {
                return (guard, true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return (guard, false);
            }
            guard = self.wait_until(guard, deadline).0;
        }
    }

    fn check_held(&self) -> Result<()> {
        if !self.lock.held_by_me() {
            return Err(Error::invalid("cannot notify on un-acquired lock"));
        }
        Ok(())
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`); the lock must be held.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.check_held()?;
        let seq = &self.state.get().seq;
        seq.fetch_add(1, Ordering::Release);
        futex::wake(seq, n.min(i32::MAX as u32) as i32);
        Ok(())
    }

    /// Wakes every waiter (Python's `notify_all()`); the lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.check_held()?;
        let seq = &self.state.get().seq;
        seq.fetch_add(1, Ordering::Release);
        futex::wake_all(seq);
        Ok(())
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Condition({:?})>", self.lock)
    }
}
