//! `Barrier`: `parties` participants wait until all have arrived (Python's
//! `multiprocessing.Barrier`).
//!
//! State: `count` (arrivals in this round), `generation` (the futex word; bumped when a round
//! completes), `resets` (bumped by `reset`), `broken`. The last arrival zeroes `count` and bumps
//! `generation` before waking the others, so the next round's arrivals never mix with this one.
//! A waiter whose timeout passes breaks the barrier (as in Python): every waiter, now and later,
//! gets [`BrokenBarrier`] until `reset`. A participant that dies before arriving leaves the others
//! waiting: use the timeout form (or `abort`) when participants may die.

use super::cell::{Shared, SharedLayout};
use crate::error::{Error, Result};
use crate::sys::futex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[repr(C)]
pub(crate) struct BarrierState {
    magic: u32,
    parties: AtomicU32,
    count: AtomicU32,
    generation: AtomicU32,
    resets: AtomicU32,
    broken: AtomicU32,
}

// SAFETY: repr(C), atomics and a u32, magic first; all-zero is valid.
unsafe impl SharedLayout for BarrierState {
    const MAGIC: u32 = 0x4241_5231; // "BAR1"
}

const _: () = assert!(std::mem::size_of::<BarrierState>() == 24);

/// The barrier was broken (by a timeout, `abort` or `reset`) while or before waiting (Python's
/// `BrokenBarrierError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken")]
pub struct BrokenBarrier;

/// A process-shared barrier.
///
/// ```
/// let b = multiprocessing::Barrier::new(1)?;
/// assert_eq!(b.wait(), Ok(0)); // one party: released at once
/// assert_eq!(b.parties(), 1);
/// # Ok::<(), multiprocessing::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    state: Shared<BarrierState>,
}

impl Barrier {
    /// A barrier for `parties` participants (at least one).
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::invalid("parties must be > 0"));
        }
        let state: Shared<BarrierState> = Shared::new(c"mp-barrier", 0)?;
        state.get().parties.store(parties, Ordering::Relaxed);
        Ok(Barrier { state })
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

    fn wait_until(&self, deadline: Option<Instant>) -> std::result::Result<u32, BrokenBarrier> {
        let s = self.state.get();
        if self.broken() {
            return Err(BrokenBarrier);
        }
        let generation = s.generation.load(Ordering::Acquire);
        let resets = s.resets.load(Ordering::Acquire);
        let index = s.count.fetch_add(1, Ordering::AcqRel);
        if index + 1 == self.parties() {
            s.count.store(0, Ordering::Release);
            s.generation.fetch_add(1, Ordering::Release);
            futex::wake_all(&s.generation);
            return Ok(index);
        }
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
    /// (Python's `wait()`).
    pub fn wait(&self) -> std::result::Result<u32, BrokenBarrier> {
        self.wait_until(None)
    }

    /// As [`wait`](Self::wait), at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<u32, BrokenBarrier> {
        self.wait_until(Some(Instant::now() + timeout))
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
