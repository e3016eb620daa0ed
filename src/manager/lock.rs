//! `Lock` and `RLock` kept in a manager's server: [`LockProxy`] and [`RLockProxy`] (Python's
//! `manager.Lock()` / `manager.RLock()`, an `AcquirerProxy`).
//!
//! The holder is the client *connection* (one per thread of a process, as Python's server
//! thread per client thread). Unlike Python, a lock whose holder disconnects (its thread
//! ended, its process died) is released, so the other clients do not wait forever.

use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{block_deadline, Builtin, Call, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Holder {
    pub(crate) owner: Option<u64>,
    pub(crate) count: u32,
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
            LockMethod::acquire => {
                let (block, timeout): (bool, Option<f64>) = decode(args)?;
                let me = cx.conn;
                let reentrant = self.reentrant;
                let (mut st, ok) = cx.wait_until(&self.cv, st, block_deadline(block, timeout), |h| {
                    h.owner.is_none() || (reentrant && h.owner == Some(me))
                })?;
                if ok {
                    st.owner = Some(me);
                    st.count += 1;
                }
                encode_into(&ok, out)?;
            }
            LockMethod::release => {
                let mut st = st;
                let held_by_me = st.owner == Some(cx.conn);
                if st.owner.is_none() || (self.reentrant && !held_by_me) {
                    let msg = if self.reentrant {
                        "cannot release un-acquired lock"
                    } else {
                        "release unlocked lock"
                    };
                    return Err(RemoteError::new(RemoteErrorKind::Runtime, msg));
                }
                st.count -= 1;
                if st.count == 0 || !self.reentrant {
                    st.owner = None;
                    st.count = 0;
                    self.cv.notify_all();
                }
            }
            LockMethod::locked => encode_into(&st.owner.is_some(), out)?,
        }
        Ok(())
    }

    fn disconnected(&self, conn: u64) {
        let mut st = lock(&self.state);
        if st.owner == Some(conn) {
            *st = Holder::default();
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
