//! The raw process-shared lock under the names `sync` uses: the wait core's lock
//! ([`super::wait`], where its word layout, owner-death detection and spin policy are
//! described).

use super::wait;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

pub(crate) use wait::{holder, Acquired};

/// Acquires `word`, waiting until `deadline` (`None`: for ever).
#[inline]
pub(crate) fn acquire(word: &AtomicU32, deadline: Option<Instant>) -> Acquired {
    wait::lock(word, deadline)
}

/// Acquires `word` only if it is free now (or its holder is dead).
#[inline]
pub(crate) fn try_acquire(word: &AtomicU32) -> Acquired {
    wait::try_lock(word)
}

/// Releases `word`. `false` if it was not held.
#[inline]
pub(crate) fn release(word: &AtomicU32) -> bool {
    wait::unlock(word)
}
