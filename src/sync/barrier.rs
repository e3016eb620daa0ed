//! `Barrier`: `parties` participants wait until all have arrived (Python's
//! `multiprocessing.Barrier(parties, action, timeout)`).
//!
//! State: `count` (arrivals in this round), `generation` (the futex word; bumped when a round
//! completes), `resets` (bumped by `reset`), `broken`. The last arrival runs the action (if any),
//! then zeroes `count` and bumps `generation` before waking the others, so the next round's
//! arrivals never mix with this one. A waiter whose timeout passes breaks the barrier (as in
//! Python): every waiter, now and later, gets [`BrokenBarrier`] until `reset`. A participant that
//! dies before arriving leaves the others waiting: use a timeout (or `abort`) when participants
//! may die.
//!
//! The action and the default timeout travel in the handle (as Python pickles them with the
//! barrier); the action as the offset of its entry, found in any process of the same binary the
//! way a process target is (see `process/target.rs`).

use crate::error::{Error, Result};
use crate::mem::{shared_layout, Shared};
use crate::sys::futex;
use crate::target::{self, EntryOffset, Target};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// SAFETY: atomics; all-zero is valid.
shared_layout! {
    magic: b"BAR1", size: 24;
    pub(crate) unsafe struct BarrierState {
        parties: AtomicU32,
        count: AtomicU32,
        generation: AtomicU32,
        resets: AtomicU32,
        broken: AtomicU32,
    }
}

/// The barrier was broken (by a timeout, `abort` or `reset`) while or before waiting (Python's
/// `BrokenBarrierError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken")]
pub struct BrokenBarrier;

/// A process-shared barrier (Python's `multiprocessing.Barrier`).
///
/// ```
/// let b = multiproc::Barrier::new(1)?;
/// assert_eq!(b.wait(), Ok(0)); // one party: released at once
/// assert_eq!(b.parties(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// With an action and a default timeout (Python's `Barrier(parties, action, timeout)`), see
/// [`Barrier::builder`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "BarrierWire")]
pub struct Barrier {
    state: Shared<BarrierState>,
    action: Option<EntryOffset>,
    timeout: Option<Duration>,
}

/// A barrier as it arrives from another process, before its action is checked.
#[derive(Deserialize)]
struct BarrierWire {
    state: Shared<BarrierState>,
    action: Option<EntryOffset>,
    timeout: Option<Duration>,
}

impl TryFrom<BarrierWire> for Barrier {
    type Error = Error;
    fn try_from(w: BarrierWire) -> Result<Barrier> {
        if let Some(action) = w.action {
            // A different binary cannot run this action: refuse the handle, not the wait.
            action.resolve_action()?;
        }
        Ok(Barrier { state: w.state, action: w.action, timeout: w.timeout })
    }
}

/// Options for a [`Barrier`]: Python's `Barrier(parties, action=None, timeout=None)`.
///
/// ```
/// use multiproc::{Barrier, BrokenBarrier};
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// static ROUNDS: AtomicU32 = AtomicU32::new(0);
///
/// fn end_of_round() {
///     ROUNDS.fetch_add(1, Ordering::Relaxed);
/// }
///
/// let b = Barrier::builder(1).action(end_of_round).timeout(Duration::from_secs(5)).build()?;
/// assert_eq!(b.wait(), Ok(0));
/// assert_eq!(b.wait(), Ok(0));
/// assert_eq!(ROUNDS.load(Ordering::Relaxed), 2); // once per round
/// assert_eq!(b.timeout(), Some(Duration::from_secs(5)));
///
/// // A wait that times out (here, the default timeout) breaks the barrier.
/// let b = Barrier::builder(2).timeout(Duration::from_millis(10)).build()?;
/// assert_eq!(b.wait(), Err(BrokenBarrier));
/// assert!(b.broken());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct BarrierBuilder {
    parties: u32,
    action: Option<EntryOffset>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// A function that the last party to arrive runs, once per round, before any party is
    /// released (Python's `action`). It must be a fn item or a closure that captures nothing,
    /// as a process target (it may run in any process holding the barrier); state it needs lives
    /// in statics or shared memory. If it panics, the barrier is broken: the other waiters get
    /// [`BrokenBarrier`] and the panic goes on in the party that ran it, as Python re-raises the
    /// action's exception there.
    ///
    /// The action travels with the handle as a position in this program's code, as a process
    /// target does: a handle arriving from a differently built program is refused when it is
    /// decoded, and a handle should come only from processes of this program (as Python unpickles
    /// a barrier's action only from peers it trusts).
    ///
    /// A capturing closure is refused at compile time:
    ///
    /// ```compile_fail
    /// let n = 3u32;
    /// let _ = multiproc::Barrier::builder(2).action(move || println!("{n}"));
    /// ```
    pub fn action<F: Target<(), Output = ()>>(mut self, action: F) -> Self {
        const { target::assert_zero_sized::<F>() };
        let _ = action;
        self.action = Some(EntryOffset::of_action(target::action_entry::<F>));
        self
    }

    /// The timeout [`Barrier::wait`] uses (Python's `timeout`); none by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the barrier; an error if `parties` is 0.
    pub fn build(self) -> Result<Barrier> {
        if self.parties == 0 {
            return Err(Error::invalid("parties must be > 0"));
        }
        let state: Shared<BarrierState> = Shared::new(c"mp-barrier", 0)?;
        state.get().parties.store(self.parties, Ordering::Relaxed);
        Ok(Barrier { state, action: self.action, timeout: self.timeout })
    }
}

impl Barrier {
    /// A barrier for `parties` participants (at least one), without action or default timeout.
    pub fn new(parties: u32) -> Result<Barrier> {
        Barrier::builder(parties).build()
    }

    /// Options for a barrier of `parties` participants: an action and a default timeout.
    pub fn builder(parties: u32) -> BarrierBuilder {
        BarrierBuilder { parties, action: None, timeout: None }
    }

    /// The default timeout of [`wait`](Self::wait) (Python's `timeout`), if one was given.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Number of participants.
    pub fn parties(&self) -> u32 {
        self.state.get().parties.load(Ordering::Relaxed)
    }

    /// Participants waiting now (Python's `n_waiting`).
    pub fn n_waiting(&self) -> u32 {
        self.state.get().count.load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.get().broken.load(Ordering::Acquire) != 0
    }

    /// Counts this party in: `Ok(Err(index))` when this arrival released the round, else
    /// what the wait needs (`generation`, `resets`, `index`).
    fn arrive(&self) -> std::result::Result<std::result::Result<(u32, u32, u32), u32>, BrokenBarrier> {
        let s = self.state.get();
        if self.broken() {
            return Err(BrokenBarrier);
        }
        let generation = s.generation.load(Ordering::Acquire);
        let resets = s.resets.load(Ordering::Acquire);
        let index = s.count.fetch_add(1, Ordering::AcqRel);
        if index + 1 == self.parties() {
            if let Some(action) = self.action {
                let run = action.resolve_action().expect("checked when the handle was made");
                if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(run)) {
                    self.abort();
                    std::panic::resume_unwind(panic);
                }
                // A waiter that timed out, an abort or a reset during the action ended the round.
                if self.broken() || s.resets.load(Ordering::Acquire) != resets {
                    return Err(BrokenBarrier);
                }
            }
            s.count.store(0, Ordering::Release);
            s.generation.fetch_add(1, Ordering::Release);
            futex::wake_all(&s.generation);
            return Ok(Err(index));
        }
        Ok(Ok((generation, resets, index)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> std::result::Result<u32, BrokenBarrier> {
        let s = self.state.get();
        let (generation, resets, index) = match self.arrive()? {
            Ok(waiting) => waiting,
            Err(index) => return Ok(index),
        };
        loop {
            if s.generation.load(Ordering::Acquire) != generation {
                return Ok(index);
            }
            if self.broken() || s.resets.load(Ordering::Acquire) != resets {
                return Err(BrokenBarrier);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.abort();
                return Err(BrokenBarrier);
            }
            let _ = futex::wait(&s.generation, generation, deadline);
        }
    }

    /// Waits until every party has arrived; returns this arrival's index in `0..parties`
    /// (Python's `wait()`). The last to arrive runs the action, if any, before all are released.
    /// With a default [`timeout`](BarrierBuilder::timeout), waits at most that long; a timeout
    /// breaks the barrier.
    pub fn wait(&self) -> std::result::Result<u32, BrokenBarrier> {
        match self.timeout {
            Some(t) => self.wait_timeout(t),
            None => self.wait_until(None),
        }
    }

    /// As [`wait`](Self::wait), at most `timeout` instead of the default; a timeout breaks the
    /// barrier (Python's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<u32, BrokenBarrier> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits until every party has arrived without blocking the thread (the async form of
    /// [`wait`](Self::wait), with the same default timeout and action).
    ///
    /// # Cancel safety
    ///
    /// A party counts as arrived from the first poll. Dropping the future before the round
    /// is released breaks the barrier, as a timeout does (the others get [`BrokenBarrier`]
    /// rather than wait for a party that left); it leaves no waiter registered.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) -> std::result::Result<u32, BrokenBarrier> {
        let s = self.state.get();
        let (generation, resets, index) = match self.arrive()? {
            Ok(waiting) => waiting,
            Err(index) => return Ok(index),
        };
        /// Breaks the barrier unless the round ended.
        struct Leave<'a>(Option<&'a Barrier>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                if let Some(b) = self.0 {
                    b.abort();
                }
            }
        }
        let mut leave = Leave(Some(self));
        let ended = || {
            s.generation.load(Ordering::Acquire) != generation
                || self.broken()
                || s.resets.load(Ordering::Acquire) != resets
        };
        let wait = crate::sync::aio::until_word(&s.generation, None, false, |_| ended());
        let in_time = match self.timeout {
            Some(t) => tokio::time::timeout(t, wait).await.is_ok(),
            None => {
                wait.await;
                true
            }
        };
        if s.generation.load(Ordering::Acquire) != generation {
            leave.0 = None;
            return Ok(index);
        }
        if in_time {
            leave.0 = None;
        }
        Err(BrokenBarrier)
    }

    /// Breaks the barrier: current and future waiters get [`BrokenBarrier`] (Python's
    /// `abort()`).
    pub fn abort(&self) {
        let s = self.state.get();
        s.broken.store(1, Ordering::Release);
        futex::wake_all(&s.generation);
    }

    /// Returns the barrier to its initial state; current waiters get [`BrokenBarrier`]
    /// (Python's `reset()`).
    pub fn reset(&self) {
        let s = self.state.get();
        s.resets.fetch_add(1, Ordering::AcqRel);
        s.count.store(0, Ordering::Release);
        s.broken.store(0, Ordering::Release);
        futex::wake_all(&s.generation);
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Barrier(parties={}, waiting={}, broken={})>",
            self.parties(),
            self.n_waiting(),
            self.broken()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn nothing() {}

    fn round_trip(b: &Barrier) -> Result<Barrier> {
        let mut bytes = Vec::new();
        let raw = crate::wire::encode(b, &mut bytes)?;
        let fds = raw.into_iter().map(|fd| sys::dup_cloexec(fd).unwrap()).collect();
        crate::wire::decode(&bytes, fds)
    }

    #[test]
    #[cfg_attr(miri, ignore = "under Miri a region mapped again from its descriptor is fresh heap memory")]
    fn action_and_timeout_travel_with_the_handle() {
        let b = Barrier::builder(1).action(nothing).timeout(Duration::from_millis(1500)).build().unwrap();
        let c = round_trip(&b).unwrap();
        assert_eq!(c.action, b.action);
        assert_eq!(c.timeout(), Some(Duration::from_millis(1500)));
        assert_eq!(c.wait(), Ok(0));
    }

    #[test]
    fn an_action_as_if_in_another_binary_is_refused_when_the_handle_arrives() {
        let b = Barrier::builder(2).action(nothing).build().unwrap();
        let foreign = BarrierWire {
            state: b.state.clone(),
            action: b.action.map(EntryOffset::as_if_in_another_binary),
            timeout: None,
        };
        assert!(matches!(Barrier::try_from(foreign), Err(Error::InvalidState(_))));
        let own = BarrierWire { state: b.state.clone(), action: b.action, timeout: None };
        assert!(Barrier::try_from(own).is_ok());
    }
}
