//! `Lock` and `RLock` kept in a manager's server: [`LockProxy`] and [`RLockProxy`] (Python's
//! `manager.Lock()` / `manager.RLock()`, an `AcquirerProxy`).
//!
//! The holder is the client *connection* (one per thread of a process, as Python's server
//! thread per client thread). Unlike Python, a lock whose holder disconnects (its thread
//! ended, its process died) is released, so the other clients do not wait forever.

use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{block_deadline, Builtin, Call, CallCx, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Which connection holds a lock, and how many times over (only a reentrant lock is taken
/// again by its holder). A condition's lock is one too.
#[derive(Default)]
pub(crate) struct Holder {
    owner: Option<u64>,
    count: u32,
}

impl Holder {
    /// Whether some connection holds the lock.
    pub(crate) fn is_held(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether connection `conn` holds the lock.
    pub(crate) fn is_held_by(&self, conn: u64) -> bool {
        self.owner == Some(conn)
    }

    /// Python's `release()` by connection `conn`: a `Runtime` error unless it holds the lock
    /// (a plain lock: unless anyone does). Whether the lock is free now.
    pub(crate) fn release(&mut self, conn: u64, reentrant: bool) -> std::result::Result<bool, RemoteError> {
        if !self.is_held() || (reentrant && !self.is_held_by(conn)) {
            let msg = if reentrant { "cannot release un-acquired lock" } else { "release unlocked lock" };
            return Err(RemoteError::new(RemoteErrorKind::Runtime, msg));
        }
        self.count -= 1;
        let free = self.count == 0 || !reentrant;
        if free {
            *self = Holder::default();
        }
        Ok(free)
    }

    /// Lets the lock go if connection `conn` holds it (the connection closed): whether it did.
    pub(crate) fn let_go(&mut self, conn: u64) -> bool {
        let held = self.is_held_by(conn);
        if held {
            *self = Holder::default();
        }
        held
    }
}

/// Python's `acquire(blocking, timeout)` (the encoded `args`) by the calling connection, of the
/// lock `holder` finds in the state behind `state`: waits on `cv` until the lock is free (or,
/// when `reentrant`, already the caller's), takes it, and encodes whether it did.
pub(crate) fn acquire<S>(
    cx: &CallCx<'_>,
    cv: &Condvar,
    state: MutexGuard<'_, S>,
    holder: impl Fn(&mut S) -> &mut Holder,
    reentrant: bool,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Reply {
    let (block, timeout): (bool, Option<f64>) = decode(args)?;
    let me = cx.conn;
    let free = |s: &mut S| {
        let h = holder(s);
        !h.is_held() || (reentrant && h.is_held_by(me))
    };
    let (mut state, ok) = cx.wait_until(cv, state, block_deadline(block, timeout), free)?;
    if ok {
        let h = holder(&mut state);
        h.owner = Some(me);
        h.count += 1;
    }
    encode_into(&ok, out)
}

/// The server side of a lock (reentrant or not).
pub(crate) struct ServedLock {
    state: Mutex<Holder>,
    cv: Condvar,
    reentrant: bool,
}

impl ServedLock {
    pub(crate) fn create(reentrant: bool) -> Arc<dyn Served> {
        Arc::new(ServedLock { state: Mutex::new(Holder::default()), cv: Condvar::new(), reentrant })
    }
}

methods! {
    enum LockMethod for ServedLock as "Lock" { acquire, release, locked }
}

impl Builtin<LockMethod> for ServedLock {
    fn type_name(&self) -> &'static str {
        if self.reentrant {
            "RLock"
        } else {
            "Lock"
        }
    }

    fn serve(&self, method: LockMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let st = lock(&self.state);
        match method {
            LockMethod::acquire => acquire(cx, &self.cv, st, |h| h, self.reentrant, args, out)?,
            LockMethod::release => {
                let mut st = st;
                if st.release(cx.conn, self.reentrant)? {
                    self.cv.notify_all();
                }
            }
            LockMethod::locked => encode_into(&st.is_held(), out)?,
        }
        Ok(())
    }

    fn disconnected(&self, conn: u64) {
        if lock(&self.state).let_go(conn) {
            self.cv.notify_all();
        }
    }
}

/// What the acquire-style proxies share: `acquire(blocking, timeout)`, `release`, and a guard.
/// The calls are named from the lock's method table; the condition's and the semaphore's
/// tables use the same two names.
macro_rules! acquirer_methods {
    () => {
        /// Acquires, waiting as long as it takes (Python's `acquire()`).
        pub fn acquire(&self) -> Result<()> {
            self.base
                .call::<_, bool>(super::lock::LockMethod::acquire.name(), &(true, None::<f64>))
                .map(|_| ())
        }

        /// Acquires if that is possible now (Python's `acquire(blocking=False)`).
        pub fn try_acquire(&self) -> Result<bool> {
            self.base.call(super::lock::LockMethod::acquire.name(), &(false, None::<f64>))
        }

        /// Acquires, waiting at most `timeout` (Python's `acquire(timeout=t)`): `false` if it
        /// timed out.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            self.base.call(super::lock::LockMethod::acquire.name(), &(true, Some(timeout.as_secs_f64())))
        }

        /// Releases (Python's `release()`).
        pub fn release(&self) -> Result<()> {
            self.base.call(super::lock::LockMethod::release.name(), &())
        }

        /// Acquires and returns a guard that releases on drop (Python's `with lock:`).
        pub fn lock(&self) -> Result<AcquireGuard<'_>> {
            self.acquire()?;
            Ok(AcquireGuard { base: &self.base })
        }
    };
}
pub(crate) use acquirer_methods;

/// Releases a manager lock, semaphore or condition when dropped (the end of Python's `with`).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AcquireGuard<'a> {
    pub(crate) base: &'a BaseProxy,
}

impl Drop for AcquireGuard<'_> {
    fn drop(&mut self) {
        let _ = self.base.call::<_, ()>(super::lock::LockMethod::release.name(), &());
    }
}

impl std::fmt::Debug for AcquireGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireGuard").field("typeid", &self.base.typeid()).finish()
    }
}

/// A proxy to a lock in a manager's server (Python's `manager.Lock()`).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _held = lock.lock()?;
///     assert!(lock.locked()?);
/// }
/// assert!(lock.try_acquire()?);
/// lock.release()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct LockProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl LockProxy {
    acquirer_methods!();

    /// Whether some client holds the lock.
    pub fn locked(&self) -> Result<bool> {
        self.base.call(LockMethod::locked.name(), &())
    }
}

proxy_impls!(LockProxy, "AcquirerProxy", "Lock");

/// A proxy to a reentrant lock in a manager's server (Python's `manager.RLock()`): the holding
/// thread may acquire it again, and must release it as many times.
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let r = manager.rlock()?;
/// r.acquire()?;
/// r.acquire()?;
/// r.release()?;
/// r.release()?;
/// assert!(r.release().is_err()); // not held any more
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RLockProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl RLockProxy {
    acquirer_methods!();
}

proxy_impls!(RLockProxy, "AcquirerProxy", "RLock");

#[cfg(test)]
mod tests {
    use super::Holder;

    fn held(owner: u64, count: u32) -> Holder {
        Holder { owner: Some(owner), count }
    }

    #[test]
    fn a_reentrant_holder_is_free_after_as_many_releases_and_only_its_own() {
        let mut h = held(1, 2);
        assert_eq!(h.release(2, true).unwrap_err().message(), "cannot release un-acquired lock");
        assert_eq!(h.release(1, true), Ok(false));
        assert!(h.is_held_by(1));
        assert_eq!(h.release(1, true), Ok(true));
        assert!(!h.is_held());
        assert!(h.release(1, true).is_err());
    }

    #[test]
    fn a_plain_lock_is_released_by_anyone_once_and_let_go_only_by_its_holder() {
        let mut h = held(1, 1);
        assert_eq!(h.release(2, false), Ok(true));
        assert_eq!(h.release(2, false).unwrap_err().message(), "release unlocked lock");
        let mut h = held(1, 3);
        assert!(!h.let_go(2) && h.is_held_by(1));
        assert!(h.let_go(1) && !h.is_held());
    }
}
