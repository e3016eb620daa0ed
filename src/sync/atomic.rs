//! The atomics of the protocols that live in shared memory, named once so that the model
//! checker can stand in its own: `std::sync::atomic` in every build, `loom::sync::atomic`
//! under `cfg(loom)` (see "Model checking" in `docs/design.md`).
//!
//! The queue ring's and the pipe lanes' headers are laid out with [`AtomicU32`] and
//! [`AtomicU64`] from here. The wait core takes any [`Word`]: the std word, which the locks,
//! events and other shared structures keep using, and under `cfg(loom)` the model's word,
//! whose futex is `futex::model`.

use crate::sys::futex;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(loom)]
pub(crate) use model::{AtomicU32, AtomicU64};

/// loom's atomics, except that each one's initial value is a `SeqCst` store.
///
/// loom treats `SeqCst` loads and stores as acquire/release, with one exception: a `SeqCst`
/// load never returns a `SeqCst` store older than another `SeqCst` store to the same word.
/// The protocols' wake-ups rest on `SeqCst` store-then-load pairs on both sides (a waiter
/// announces itself and then checks the condition, the waker changes the condition and then
/// looks for waiters): with every store to those words `SeqCst`, loom's rule makes each load
/// return the latest store of the interleaving, as sequential consistency does. But the value
/// an atomic starts with is not a `SeqCst` store to loom, so a load could still return it
/// after a newer `SeqCst` store, and every wake-up would be reported lost. Here it is one (in
/// the real memory it is the zero fill, written before any process maps the region).
#[cfg(loom)]
mod model {
    use std::sync::atomic::Ordering::SeqCst;

    macro_rules! seq_cst_init {
        ($name:ident, $int:ty) => {
            #[derive(Debug)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            impl $name {
                #[track_caller]
                pub(crate) fn new(value: $int) -> $name {
                    let a = loom::sync::atomic::$name::new(value);
                    a.store(value, SeqCst);
                    $name(a)
                }
            }

            impl std::ops::Deref for $name {
                type Target = loom::sync::atomic::$name;

                fn deref(&self) -> &Self::Target {
                    &self.0
                }
            }
        };
    }

    seq_cst_init!(AtomicU32, u32);
    seq_cst_init!(AtomicU64, u64);
}

/// A `u32` word in shared memory that the wait core locks, counts or sleeps on: an atomic
/// and its futex.
pub(crate) trait Word {
    fn load(&self, order: Ordering) -> u32;
    fn store(&self, value: u32, order: Ordering);
    fn swap(&self, value: u32, order: Ordering) -> u32;
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
    /// Sleeps while the word holds `expected`, until woken or `deadline` ([`futex::wait`]).
    fn sleep(&self, expected: u32, deadline: Option<Instant>) -> io::Result<futex::Wait>;
    /// Wakes up to `n` sleepers; how many were woken ([`futex::wake`]).
    fn wake(&self, n: i32) -> usize;
    /// Wakes every sleeper.
    fn wake_all(&self) -> usize {
        self.wake(i32::MAX)
    }
}

macro_rules! word {
    ($atomic:ty => $inner:ty, $($futex:ident)::+) => {
        impl Word for $atomic {
            #[inline]
            fn load(&self, order: Ordering) -> u32 {
                <$inner>::load(self, order)
            }
            #[inline]
            fn store(&self, value: u32, order: Ordering) {
                <$inner>::store(self, value, order)
            }
            #[inline]
            fn swap(&self, value: u32, order: Ordering) -> u32 {
                <$inner>::swap(self, value, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                current: u32,
                new: u32,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u32, u32> {
                <$inner>::compare_exchange(self, current, new, success, failure)
            }
            #[inline]
            fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
                <$inner>::fetch_add(self, value, order)
            }
            #[inline]
            fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
                <$inner>::fetch_sub(self, value, order)
            }
            #[inline]
            fn sleep(&self, expected: u32, deadline: Option<Instant>) -> io::Result<futex::Wait> {
                $($futex)::+::wait(self, expected, deadline)
            }
            #[inline]
            fn wake(&self, n: i32) -> usize {
                $($futex)::+::wake(self, n)
            }
        }
    };
}

word!(std::sync::atomic::AtomicU32 => std::sync::atomic::AtomicU32, futex);
#[cfg(loom)]
word!(model::AtomicU32 => loom::sync::atomic::AtomicU32, futex::model);
