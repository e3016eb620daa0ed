//! Process-shared synchronisation: [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Condition`], [`Event`], [`Barrier`].
//!
//! Three layers, as in `lock_api`: the public types (guards, timeouts, Python names) over raw
//! state machines on atomics in shared memory (`raw.rs` and each module's state), over the one
//! wait core (`wait.rs`: the lock and the spin-then-sleep policy that the queue, the pipe and
//! the manager use too) and the futex module in `sys`. Every primitive lives in a memfd-backed
//! region (`crate::mem`), so it can be passed to a child as a process argument or sent through a
//! pipe, and leaves nothing in `/dev/shm`.

#[cfg(feature = "tokio")]
pub(crate) mod aio;
pub(crate) mod atomic;
mod barrier;
mod condition;
mod event;
mod lock;
mod raw;
mod semaphore;
pub(crate) mod wait;
#[cfg(feature = "tokio")]
mod waker;

pub use barrier::{Barrier, BarrierBuilder, BrokenBarrier};
pub use condition::Condition;
pub use event::Event;
pub(crate) use lock::LockState;
pub use lock::{Lock, LockGuard, LockResult, OwnerDied, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, BoundedSemaphoreGuard, Semaphore, SemaphoreGuard};

/// Locks a thread mutex of this process, taking it over if a thread panicked while holding it:
/// the state these mutexes guard is left consistent at every step, so a poisoned lock carries
/// nothing to act on.
pub(crate) fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
