//! `Semaphore` and `BoundedSemaphore`: a process-shared counter with blocking decrement.
//!
//! State: `value` (the futex word: the number of free permits), `max` (0 = unbounded), `sleepers`
//! (processes possibly asleep on `value`, so a release without sleepers makes no system call).
//! Acquire: CAS `value` from v > 0 to v - 1; at 0, sleep on the word until a release or the
//! deadline. Release: increment (refused past `max` for the bounded form), wake one sleeper.
//! A process that dies holding permits does not give them back — semaphores have no owner, in
//! Python as here — so waiters with a timeout time out; without one they wait, as in Python.

use crate::error::{Error, Result};
use crate::mem::{shared_layout, Shared};
use crate::sys::futex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// SAFETY: atomics; all-zero is a valid (empty) state.
shared_layout! {
    magic: b"SEM1", size: 16;
    pub(crate) unsafe struct SemState {
        value: AtomicU32,
        max: AtomicU32,
        sleepers: AtomicU32,
    }
}

fn acquire(s: &SemState, deadline: Option<Instant>) -> bool {
    loop {
        let v = s.value.load(Ordering::Relaxed);
        if v > 0 {
            if s.value.compare_exchange(v, v - 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return true;
            }
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        let _ = futex::wait(&s.value, 0, deadline);
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(feature = "tokio")]
async fn acquire_async(s: &SemState) {
    loop {
        let v = s.value.load(Ordering::Relaxed);
        if v > 0 {
            if s.value.compare_exchange(v, v - 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
            continue;
        }
        crate::sync::aio::until_word(&s.value, Some(&s.sleepers), true, |v| v > 0).await;
    }
}

fn release(s: &SemState, bounded: bool) -> Result<()> {
    let mut v = s.value.load(Ordering::Relaxed);
    loop {
        if bounded && v >= s.max.load(Ordering::Relaxed) {
            return Err(Error::invalid("semaphore or lock released too many times"));
        }
        match s.value.compare_exchange(v, v + 1, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    if s.sleepers.load(Ordering::SeqCst) > 0 {
        futex::wake(&s.value, 1);
    }
    Ok(())
}

macro_rules! semaphore {
    ($(#[$doc:meta])* $name:ident, $guard:ident, $bounded:expr, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        pub struct $name {
            state: Shared<SemState>,
        }

        #[doc = concat!("One permit of a [`", stringify!($name), "`]; given back when dropped.")]
        #[must_use = "the permit is released when the guard is dropped"]
        pub struct $guard<'a> {
            sem: &'a $name,
        }

        impl $name {
            #[doc = concat!("A ", $tag, " with `value` permits.")]
            pub fn new(value: u32) -> Result<Self> {
                let state: Shared<SemState> = Shared::new(c"mp-semaphore", 0)?;
                state.get().value.store(value, Ordering::Relaxed);
                state.get().max.store(if $bounded { value } else { 0 }, Ordering::Relaxed);
                Ok($name { state })
            }

            /// Blocks until a permit is free and takes it (Python's `acquire()`).
            pub fn acquire(&self) -> $guard<'_> {
                acquire(self.state.get(), None);
                $guard { sem: self }
            }

            /// Waits for a permit without blocking the thread (the async form of `acquire`).
            ///
            /// # Cancel safety
            ///
            /// Cancel-safe: a permit is taken only inside the poll that returns the guard; a
            /// future dropped before holds none, leaves no waiter registered, and passes on a
            /// release's wake it had consumed.
            #[cfg(feature = "tokio")]
            pub async fn acquire_async(&self) -> $guard<'_> {
                acquire_async(self.state.get()).await;
                $guard { sem: self }
            }

            /// Takes a permit if one is free (Python's `acquire(block=False)`).
            pub fn try_acquire(&self) -> Option<$guard<'_>> {
                // `then`, not `then_some`: a guard built on failure would release a permit
                // nobody took when dropped.
                acquire(self.state.get(), Some(Instant::now())).then(|| $guard { sem: self })
            }

            /// Waits at most `timeout` for a permit (Python's `acquire(timeout=...)`).
            pub fn acquire_timeout(&self, timeout: Duration) -> Option<$guard<'_>> {
                acquire(self.state.get(), Some(Instant::now() + timeout)).then(|| $guard { sem: self })
            }

            /// Gives a permit back without a guard (Python's `release()`).
            pub fn release(&self) -> Result<()> {
                release(self.state.get(), $bounded)
            }

            /// Free permits now (Python's `get_value()`).
            pub fn get_value(&self) -> u32 {
                self.state.get().value.load(Ordering::Relaxed)
            }
        }

        impl $guard<'_> {
            /// Keeps the permit after the guard is gone; give it back with `release`.
            pub fn forget(self) {
                std::mem::forget(self);
            }
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                let _ = release(self.sem.state.get(), false);
            }
        }

        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($guard)).field("semaphore", self.sem).finish()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{}(value={})>", stringify!($name), self.get_value())
            }
        }
    };
}

semaphore!(
    /// A process-shared counting semaphore (Python's `multiprocessing.Semaphore`).
    ///
    /// ```
    /// let sem = multiproc::Semaphore::new(2)?;
    /// let a = sem.acquire();
    /// let b = sem.acquire();
    /// assert!(sem.try_acquire().is_none());
    /// drop(a);
    /// assert!(sem.try_acquire().is_some());
    /// # drop(b);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    Semaphore,
    SemaphoreGuard,
    false,
    "semaphore"
);

semaphore!(
    /// A semaphore that refuses to be released above its initial value (Python's
    /// `multiprocessing.BoundedSemaphore`).
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// assert!(sem.release().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    BoundedSemaphore,
    BoundedSemaphoreGuard,
    true,
    "bounded semaphore"
);
