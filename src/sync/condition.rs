//! `Condition`: wait for a notification while releasing a lock (Python's
//! `multiprocessing.Condition`).
//!
//! State: the lock (see `raw.rs`) and a table of waiter slots. A waiter, holding the lock,
//! claims a free slot (its pid and a ticket from a counter), releases the lock and sleeps on the
//! slot's state word until a notifier marks it notified or its deadline passes; then it takes the
//! lock back. `notify(n)`, holding the lock, marks the `n` waiting slots with the lowest tickets
//! and wakes each, so exactly the `n` longest waiters are notified, as in Python; a waiter that
//! timed out frees its slot with a compare-and-swap, so it is either notified or timed out,
//! never both, and a notification is never spent on it. A slot whose process died is freed
//! instead of notified.
//!
//! State table of a slot's `state` word:
//!
//! | value | meaning | moved by |
//! | --- | --- | --- |
//! | `FREE` | unused | a waiter holding the lock claims it (-> `WAITING`) |
//! | `WAITING` | a waiter sleeps on it | a notifier holding the lock (-> `NOTIFIED`); the waiter at its deadline (-> `FREE`); a notifier that finds the waiter's process gone (-> `FREE`) |
//! | `NOTIFIED` | notified, the waiter has not seen it yet | the waiter (-> `FREE`) |
//!
//! Beyond [`SLOTS`] waiters at once, further waiters sleep on `seq`, which every notify bumps:
//! they wake on any notify (a spurious wake-up, which Python's condition variables allow too), so
//! callers re-check their predicate, as [`Condition::wait_for`] does.

use super::lock::{Lock, LockGuard, LockState};
use crate::error::{Error, Result};
use crate::mem::{shared_layout, Shared, SharedLayout};
use crate::sys::{self, futex};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Waiters that can be queued in order at once.
const SLOTS: usize = 1024;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

#[repr(C)]
struct Slot {
    state: AtomicU32,
    pid: AtomicU32,
    ticket: AtomicU64,
}

// SAFETY: atomics, a LockState and an array of repr(C) atomics; all-zero is valid (unlocked,
// no waiter, every slot FREE).
shared_layout! {
    magic: b"CON2", size: 40 + 16 * SLOTS;
    pub(crate) unsafe struct CondState {
        /// Bumped by every notify, for waiters that found no slot.
        seq: AtomicU32,
        lock: LockState,
        /// The next waiter's ticket; moved only by lock holders.
        next_ticket: AtomicU64,
        /// Slots below this index have been used; moved only by lock holders.
        used: AtomicU32,
        /// Waiters sleeping on `seq` (no slot was free).
        overflow: AtomicU32,
        slots: [Slot; SLOTS],
    }
}

/// Where a waiter sleeps.
enum Place<'a> {
    Slot(&'a Slot),
    /// No slot was free: on `seq`, last seen with this value.
    Overflow(u32),
}

/// A process-shared condition variable with its own lock.
///
/// ```
/// use multiproc::Condition;
/// use std::time::Duration;
/// let cond = Condition::new()?;
/// let guard = cond.acquire().unwrap();
/// let (guard, notified) = cond.wait_timeout(guard, Duration::from_millis(10));
/// assert!(!notified);
/// cond.notify_all()?;
/// drop(guard);
/// # Ok::<(), multiproc::Error>(())
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
        unsafe { (lock_state.as_mut_ptr() as *mut u32).write(LockState::MAGIC) };
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

    /// Claims a slot for the calling waiter, or counts it among the overflow. The caller holds
    /// the lock.
    fn enqueue(&self) -> Place<'_> {
        let s = self.state.get();
        let me = sys::getpid() as u32;
        let claim = |slot: &Slot, from: u32| {
            slot.pid.store(me, Ordering::Relaxed);
            slot.ticket.store(s.next_ticket.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
            slot.state.compare_exchange(from, WAITING, Ordering::Release, Ordering::Relaxed).is_ok()
        };
        let used = (s.used.load(Ordering::Relaxed) as usize).min(SLOTS);
        for slot in &s.slots[..used] {
            if slot.state.load(Ordering::Acquire) == FREE && claim(slot, FREE) {
                return Place::Slot(slot);
            }
        }
        if used < SLOTS {
            s.used.store(used as u32 + 1, Ordering::Relaxed);
            let slot = &s.slots[used];
            if claim(slot, FREE) {
                return Place::Slot(slot);
            }
        }
        // Every slot taken: take back those of waiters whose process is gone.
        for slot in &s.slots {
            let state = slot.state.load(Ordering::Acquire);
            let pid = slot.pid.load(Ordering::Relaxed);
            if state != FREE && pid != me && !sys::pid_alive(pid as i32) && claim(slot, state) {
                return Place::Slot(slot);
            }
        }
        s.overflow.fetch_add(1, Ordering::SeqCst);
        Place::Overflow(s.seq.load(Ordering::SeqCst))
    }

    fn wait_until<'a>(&'a self, guard: LockGuard<'a>, deadline: Option<Instant>) -> (LockGuard<'a>, bool) {
        let place = self.enqueue();
        drop(guard);
        let notified = match place {
            Place::Slot(slot) => Self::sleep_in(slot, deadline),
            Place::Overflow(seen) => {
                let seq = &self.state.get().seq;
                let r = futex::wait(seq, seen, deadline);
                self.state.get().overflow.fetch_sub(1, Ordering::SeqCst);
                seq.load(Ordering::Acquire) != seen || !matches!(r, Ok(futex::Wait::TimedOut))
            }
        };
        let guard = self.lock.acquire().unwrap_or_else(|died| {
            log::warn!("multiproc: {died}");
            died.into_inner()
        });
        (guard, notified)
    }

    /// Sleeps in `slot` until notified (`true`) or past `deadline` (`false`); frees the slot.
    fn sleep_in(slot: &Slot, deadline: Option<Instant>) -> bool {
        loop {
            if slot.state.load(Ordering::Acquire) == NOTIFIED {
                slot.state.store(FREE, Ordering::Release);
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // A notifier may mark the slot at this very moment: whichever CAS wins decides.
                return match slot.state.compare_exchange(WAITING, FREE, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => false,
                    Err(_) => {
                        slot.state.store(FREE, Ordering::Release);
                        true
                    }
                };
            }
            let _ = futex::wait(&slot.state, WAITING, deadline);
        }
    }

    /// Releases the lock, waits without blocking the thread until notified, takes the lock
    /// back (the async form of [`wait`](Self::wait); it may wake spuriously, as `wait` may).
    ///
    /// # Cancel safety
    ///
    /// The guard is given up when the future is first polled. Dropped while waiting for the
    /// notification or for the lock, the future leaves the lock released (not held), no waiter
    /// registered (its slot is freed), and passes a notification it had been given on to the
    /// longest waiter left.
    #[cfg(feature = "tokio")]
    pub async fn wait_async<'a>(&'a self, guard: LockGuard<'a>) -> LockGuard<'a> {
        /// Leaves the waiter's place if the future is dropped before it saw its notification.
        struct Leave<'c> {
            cond: &'c Condition,
            place: Option<Place<'c>>,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                match self.place.take() {
                    // Notified meanwhile: free the slot and hand the notification on.
                    Some(Place::Slot(slot))
                        if slot
                            .state
                            .compare_exchange(WAITING, FREE, Ordering::AcqRel, Ordering::Acquire)
                            .is_err() =>
                    {
                        slot.state.store(FREE, Ordering::Release);
                        self.cond.pass_on();
                    }
                    Some(Place::Slot(_)) => {}
                    Some(Place::Overflow(_)) => {
                        self.cond.state.get().overflow.fetch_sub(1, Ordering::SeqCst);
                    }
                    None => {}
                }
            }
        }
        let place = self.enqueue();
        drop(guard);
        let mut leave = Leave { cond: self, place: Some(place) };
        match leave.place {
            Some(Place::Slot(slot)) => {
                crate::sync::aio::until_word(&slot.state, None, true, |v| v != WAITING).await;
                leave.place = None;
                slot.state.store(FREE, Ordering::Release);
            }
            Some(Place::Overflow(seen)) => {
                let s = self.state.get();
                crate::sync::aio::until_word(&s.seq, None, true, |v| v != seen).await;
                leave.place = None;
                s.overflow.fetch_sub(1, Ordering::SeqCst);
            }
            None => {}
        }
        self.lock.acquire_async().await.unwrap_or_else(|died| {
            log::warn!("multiproc: {died}");
            died.into_inner()
        })
    }

    /// Hands a notification that a cancelled async waiter had been given to the longest waiter
    /// left (without the lock: each slot's move is a compare-and-swap, so no waiter is both
    /// notified and timed out).
    #[cfg(feature = "tokio")]
    fn pass_on(&self) {
        let s = self.state.get();
        let slots = &s.slots[..(s.used.load(Ordering::Relaxed) as usize).min(SLOTS)];
        loop {
            let oldest = slots
                .iter()
                .filter(|slot| slot.state.load(Ordering::Acquire) == WAITING)
                .min_by_key(|slot| slot.ticket.load(Ordering::Relaxed));
            let Some(slot) = oldest else { break };
            if slot.state.compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                futex::wake(&slot.state, 1);
                return;
            }
        }
        self.wake_overflow(Some(1));
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

    /// Wakes up to `n` waiters, those that have waited longest (Python's `notify(n)`); the lock
    /// must be held.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.check_held()?;
        let s = self.state.get();
        let me = sys::getpid() as u32;
        let slots = &s.slots[..(s.used.load(Ordering::Relaxed) as usize).min(SLOTS)];
        let mut woken = 0;
        while woken < n {
            let oldest = slots
                .iter()
                .filter(|slot| slot.state.load(Ordering::Acquire) == WAITING)
                .min_by_key(|slot| slot.ticket.load(Ordering::Relaxed));
            let Some(slot) = oldest else { break };
            let pid = slot.pid.load(Ordering::Relaxed);
            if pid != me && !sys::pid_alive(pid as i32) {
                // Its process is gone: the notification goes to the next waiter.
                let _ = slot.state.compare_exchange(WAITING, FREE, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            // Fails only if the waiter timed out just now; then the next one is notified.
            if slot.state.compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                futex::wake(&slot.state, 1);
                woken += 1;
            }
        }
        if woken < n {
            self.wake_overflow(Some(n - woken));
        }
        Ok(())
    }

    /// Wakes every waiter (Python's `notify_all()`); the lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.check_held()?;
        let s = self.state.get();
        for slot in &s.slots[..(s.used.load(Ordering::Relaxed) as usize).min(SLOTS)] {
            if slot.state.compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                futex::wake(&slot.state, 1);
            }
        }
        self.wake_overflow(None);
        Ok(())
    }

    /// Wakes waiters that found no slot: `n` of them, or all.
    fn wake_overflow(&self, n: Option<u32>) {
        let s = self.state.get();
        if s.overflow.load(Ordering::SeqCst) == 0 {
            return;
        }
        s.seq.fetch_add(1, Ordering::Release);
        match n {
            Some(n) => futex::wake(&s.seq, n.min(i32::MAX as u32) as i32),
            None => futex::wake_all(&s.seq),
        };
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Condition({:?})>", self.lock)
    }
}

#[cfg(test)]
mod tests {
    //! A condition between threads of one process, over the same shared-memory state as between
    //! processes; under Miri the region is heap memory
    //! (`MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test --lib sync::condition`).
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_waiter_is_notified_by_another_thread_and_notify_needs_the_lock() {
        let c = Condition::new().unwrap();
        assert!(c.notify(1).is_err(), "notify without the lock is refused");
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let g = c.acquire().unwrap();
            s.spawn(|| {
                // Gets the lock only once the waiter below has released it by waiting.
                let _g = c.acquire().unwrap();
                done.store(true, Ordering::Relaxed);
                c.notify_all().unwrap();
            });
            let (_g, held) = c.wait_for(g, || done.load(Ordering::Relaxed), Some(Duration::from_secs(60)));
            assert!(held, "the notifier's change seen within the timeout");
        });
    }
}
