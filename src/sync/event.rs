//! `Event`: a process-shared flag that processes can wait for.
//!
//! State: one futex word, 0 (clear) or 1 (set). `set` stores 1 and wakes every sleeper; `wait`
//! sleeps while the word is 0. No participant owns it, so a dying process leaves it as it was.

use crate::error::Result;
use crate::mem::{shared_layout, Shared};
use crate::sys::futex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// SAFETY: an atomic; all-zero is "clear".
shared_layout! {
    magic: b"EVT1", size: 8;
    pub(crate) unsafe struct EventState {
        flag: AtomicU32,
    }
}

/// A process-shared event (Python's `multiprocessing.Event`).
///
/// ```
/// let ev = multiproc::Event::new()?;
/// assert!(!ev.wait_timeout(std::time::Duration::from_millis(1)));
/// ev.set();
/// assert!(ev.is_set());
/// ev.wait();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    state: Shared<EventState>,
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Result<Event> {
        Ok(Event { state: Shared::new(c"mp-event", 0)? })
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.get().flag.load(Ordering::Acquire) == 1
    }

    /// Sets the flag and wakes every waiter, in every process.
    pub fn set(&self) {
        let flag = &self.state.get().flag;
        if flag.swap(1, Ordering::Release) == 0 {
            futex::wake_all(flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.get().flag.store(0, Ordering::Release);
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let flag = &self.state.get().flag;
        loop {
            if flag.load(Ordering::Acquire) == 1 {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let _ = futex::wait(flag, 0, deadline);
        }
    }

    /// Waits until the flag is set without blocking the thread (the async form of
    /// [`wait`](Self::wait); wrap it in `tokio::time::timeout` for `wait(timeout)`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing; dropping it leaves no waiter registered.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) {
        crate::sync::aio::until_word(&self.state.get().flag, None, false, |v| v == 1).await
    }

    /// Blocks until the flag is set (Python's `wait()`).
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`; returns whether the flag is set (Python's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Event({})>", if self.is_set() { "set" } else { "unset" })
    }
}
