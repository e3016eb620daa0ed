//! `Lock` and `RLock`: process-shared mutual exclusion that reports a dead holder instead of
//! hanging (see `raw.rs` for the futex word's state table).
//!
//! Across processes: any process holding a handle can acquire. If the holder dies, the next
//! waiter gets the lock within about 10 ms together with [`OwnerDied`], as `std::sync::Mutex`
//! reports poisoning; the data the lock protected may be half-updated. An `RLock` also records the
//! holding thread and a recursion count; only that thread may release it. The top bit of the
//! count ([`LENT`]) marks data guarded by the lock as lent out by reference (a `Value`'s guard),
//! so that the holder's other accesses to it refuse, as `RefCell` does.

use super::raw::{self, Acquired};
use crate::error::{Error, Result};
use crate::mem::{shared_layout, Shared};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The holder of a lock died while holding it; the lock now belongs to the caller, whose guard
/// this carries (like `std::sync::PoisonError`).
pub struct OwnerDied<G> {
    guard: G,
    pid: i32,
}

impl<G> OwnerDied<G> {
    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }
    /// The pid of the process that died holding the lock.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the process holding the lock (pid {}) died; the lock was taken over", self.pid)
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// What `acquire` returns: the guard, or the guard inside [`OwnerDied`].
pub type LockResult<G> = std::result::Result<G, OwnerDied<G>>;

// SAFETY: atomics; all-zero is "free".
shared_layout! {
    magic: b"LOK1", size: 16;
    /// The shared state of a `Lock`/`RLock`.
    pub(crate) unsafe struct LockState {
        word: AtomicU32,
        owner_tid: AtomicU32,
        count: AtomicU32,
    }
}

/// Bit of an `RLock`'s `count`: the holder has lent out references to the data it guards.
const LENT: u32 = 1 << 31;

/// The calling thread's id, cached per thread (`gettid` is a system call). The cache remembers
/// the pid it was taken in: a forked child's thread has a new id and a new pid.
#[inline]
fn thread_id() -> u32 {
    thread_local! {
        static TID: std::cell::Cell<(i32, u32)> = const { std::cell::Cell::new((0, 0)) };
    }
    let pid = sys::getpid();
    TID.with(|c| match c.get() {
        (p, tid) if p == pid => tid,
        _ => {
            let tid = sys::gettid() as u32;
            c.set((pid, tid));
            tid
        }
    })
}

fn wrap<G>(acquired: Acquired, guard: impl FnOnce() -> G) -> Option<LockResult<G>> {
    match acquired {
        Acquired::Yes => Some(Ok(guard())),
        Acquired::FromDead(pid) => Some(Err(OwnerDied { guard: guard(), pid })),
        Acquired::TimedOut => None,
    }
}

/// A process-shared lock (Python's `multiprocessing.Lock`).
///
/// ```
/// use multiproc::Lock;
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.acquire().unwrap();
///     // only one process at a time runs here
/// }
/// assert!(lock.try_acquire().unwrap().is_some());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    state: Shared<LockState>,
}

#[cfg(feature = "tokio")]
impl Lock {
    /// Waits for the lock without blocking the thread (the async form of
    /// [`acquire`](Self::acquire)); a holder that died is taken over as `acquire` does, within
    /// a 10 ms slice.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the lock is taken only inside the poll that returns the guard, so a future
    /// dropped at an await point holds nothing, leaves no waiter registered, and passes on a
    /// release's wake it had consumed to the next waiter.
    pub async fn acquire_async(&self) -> LockResult<LockGuard<'_>> {
        wrap(crate::sync::aio::lock(&self.state.get().word).await, || self.guard()).expect("no deadline")
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock { state: Shared::new(c"mp-lock", 0)? })
    }

    pub(crate) fn from_state(state: Shared<LockState>) -> Lock {
        Lock { state }
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard { lock: self }
    }

    /// Blocks until the lock is held (Python's `acquire()`).
    #[doc(alias = "__enter__")]
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        wrap(raw::acquire(&self.state.get().word, None), || self.guard()).expect("no deadline")
    }

    /// Takes the lock if it is free (Python's `acquire(block=False)`).
    pub fn try_acquire(&self) -> LockResult<Option<LockGuard<'_>>> {
        wrap_option(wrap(raw::try_acquire(&self.state.get().word), || self.guard()))
    }

    /// Waits at most `timeout` (Python's `acquire(timeout=...)`): `Ok(None)` if it timed out.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult<Option<LockGuard<'_>>> {
        let deadline = Instant::now() + timeout;
        wrap_option(wrap(raw::acquire(&self.state.get().word, Some(deadline)), || self.guard()))
    }

    /// Releases the lock without a guard (Python's `release()`, for a guard that was
    /// [`forget`](LockGuard::forget)-ed). Any process may release it; releasing an unlocked lock
    /// is an error.
    pub fn release(&self) -> Result<()> {
        if !raw::release(&self.state.get().word) {
            return Err(Error::invalid("release of an unlocked lock"));
        }
        Ok(())
    }

    /// Whether this process holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        raw::holder(&self.state.get().word) == Some(sys::getpid())
    }

    /// Whether some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        raw::holder(&self.state.get().word).is_some()
    }
}

fn wrap_option<G>(r: Option<LockResult<G>>) -> LockResult<Option<G>> {
    match r {
        None => Ok(None),
        Some(Ok(g)) => Ok(Some(g)),
        Some(Err(OwnerDied { guard, pid })) => Err(OwnerDied { guard: Some(guard), pid }),
    }
}

impl LockGuard<'_> {
    /// Keeps the lock held after the guard is gone; release it with [`Lock::release`].
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        raw::release(&self.lock.state.get().word);
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match raw::holder(&self.state.get().word) {
            Some(pid) => write!(f, "<Lock(owner=pid {pid})>"),
            None => write!(f, "<Lock(owner=None)>"),
        }
    }
}

/// A process-shared recursive lock (Python's `multiprocessing.RLock`): the holding thread may
/// acquire it again; it is free once released as many times. Only the holder may release it.
///
/// ```
/// use multiproc::RLock;
/// let lock = RLock::new()?;
/// let a = lock.acquire().unwrap();
/// let b = lock.acquire().unwrap(); // same thread: recursion
/// drop(b);
/// drop(a);
/// assert!(lock.release().is_err()); // not held any more
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    state: Shared<LockState>,
}

/// Holds an [`RLock`] once; releases one level when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl RLock {
    /// A new, unlocked recursive lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock { state: Shared::new(c"mp-rlock", 0)? })
    }

    pub(crate) fn from_state(state: Shared<LockState>) -> RLock {
        RLock { state }
    }

    #[inline]
    fn mine(&self) -> bool {
        let s = self.state.get();
        raw::holder(&s.word) == Some(sys::getpid()) && s.owner_tid.load(Ordering::Relaxed) == thread_id()
    }

    #[inline]
    fn take(&self, acquired: Acquired) -> Option<LockResult<RLockGuard<'_>>> {
        let s = self.state.get();
        if matches!(acquired, Acquired::Yes | Acquired::FromDead(_)) {
            // From a dead holder: its recursion levels and its loan ended with it.
            s.owner_tid.store(thread_id(), Ordering::Relaxed);
            s.count.store(1, Ordering::Relaxed);
        }
        wrap(acquired, || RLockGuard { lock: self })
    }

    #[inline]
    fn recurse(&self) -> RLockGuard<'_> {
        // Only the holding thread writes `count`: a plain load and store, no locked instruction.
        let count = &self.state.get().count;
        count.store(count.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        RLockGuard { lock: self }
    }

    /// Blocks until held; immediate if this thread already holds it.
    #[inline]
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        if self.mine() {
            return Ok(self.recurse());
        }
        self.take(raw::acquire(&self.state.get().word, None)).expect("no deadline")
    }

    /// Takes the lock if it is free or already this thread's.
    pub fn try_acquire(&self) -> LockResult<Option<RLockGuard<'_>>> {
        if self.mine() {
            return Ok(Some(self.recurse()));
        }
        wrap_option(self.take(raw::try_acquire(&self.state.get().word)))
    }

    /// Waits at most `timeout`: `Ok(None)` if it timed out.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult<Option<RLockGuard<'_>>> {
        if self.mine() {
            return Ok(Some(self.recurse()));
        }
        wrap_option(self.take(raw::acquire(&self.state.get().word, Some(Instant::now() + timeout))))
    }

    /// Releases one level without a guard (Python's `release()`). An error unless this thread
    /// holds the lock ("cannot release un-acquired lock"), and while a `Value` or `Array` guard
    /// on this thread lends out the data the lock guards.
    pub fn release(&self) -> Result<()> {
        if !self.mine() {
            return Err(Error::invalid("cannot release un-acquired lock"));
        }
        if self.lent() {
            return Err(Error::invalid("cannot release a lock whose data is borrowed through a guard"));
        }
        self.release_level();
        Ok(())
    }

    #[inline]
    fn release_level(&self) {
        let s = self.state.get();
        let now = s.count.load(Ordering::Relaxed);
        s.count.store(now.wrapping_sub(1), Ordering::Relaxed);
        if now & !LENT == 1 {
            s.owner_tid.store(0, Ordering::Relaxed);
            raw::release(&s.word);
        }
    }

    /// The recursion depth held by this thread (0 if it does not hold the lock).
    pub fn count(&self) -> u32 {
        if self.mine() {
            self.state.get().count.load(Ordering::Relaxed) & !LENT
        } else {
            0
        }
    }

    /// Marks the data this lock guards as lent out by reference; `false` if it already is. The
    /// caller holds the lock.
    #[inline]
    pub(crate) fn lend(&self) -> bool {
        debug_assert!(self.mine());
        let count = &self.state.get().count;
        let now = count.load(Ordering::Relaxed);
        if now & LENT != 0 {
            return false;
        }
        count.store(now | LENT, Ordering::Relaxed);
        true
    }

    /// Ends a [`lend`](Self::lend). The caller holds the lock.
    #[inline]
    pub(crate) fn end_loan(&self) {
        debug_assert!(self.mine());
        let count = &self.state.get().count;
        count.store(count.load(Ordering::Relaxed) & !LENT, Ordering::Relaxed);
    }

    /// Whether the data this lock guards is lent out. The caller holds the lock.
    #[inline]
    pub(crate) fn lent(&self) -> bool {
        self.state.get().count.load(Ordering::Relaxed) & LENT != 0
    }
}

impl RLockGuard<'_> {
    /// Keeps this level held after the guard is gone; release it with [`RLock::release`].
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release_level();
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.get();
        match raw::holder(&s.word) {
            Some(pid) => write!(f, "<RLock(pid {pid}, {})>", s.count.load(Ordering::Relaxed) & !LENT),
            None => write!(f, "<RLock(None, 0)>"),
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("lock", self.lock).finish()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").field("lock", self.lock).finish()
    }
}
