//! `Condition` kept in a manager's server: [`ConditionProxy`] (Python's `manager.Condition()`,
//! a condition variable with its own reentrant lock).
//!
//! Waiters queue with tickets, so `notify(n)` wakes exactly the `n` longest-waiting ones, as
//! Python's `threading.Condition` does. A waiter whose client disconnects leaves the queue; a
//! holder that disconnects releases the lock.

use super::lock::{acquire, acquirer_methods, AcquireGuard, Holder};
use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{deadline, Builtin, Call, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct CondState {
    holder: Holder,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
}

/// The server side of a condition variable.
pub(crate) struct ServedCondition {
    state: Mutex<CondState>,
    cv: Condvar,
}

impl ServedCondition {
    pub(crate) fn create() -> Arc<dyn Served> {
        Arc::new(ServedCondition { state: Mutex::new(CondState::default()), cv: Condvar::new() })
    }
}

fn not_owner(what: &str) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Runtime, format!("cannot {what} un-acquired lock"))
}

methods! {
    enum ConditionMethod for ServedCondition as "Condition" { acquire, release, wait, notify }
}

impl Builtin<ConditionMethod> for ServedCondition {
    fn serve(&self, method: ConditionMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let me = cx.conn;
        let st = lock(&self.state);
        match method {
            ConditionMethod::acquire => acquire(cx, &self.cv, st, |s| &mut s.holder, true, args, out)?,
            ConditionMethod::release => {
                let mut st = st;
                if st.holder.release(me, true)? {
                    self.cv.notify_all();
                }
            }
            ConditionMethod::wait => {
                let timeout: Option<f64> = decode(args)?;
                let mut st = st;
                if !st.holder.is_held_by(me) {
                    return Err(not_owner("wait on"));
                }
                let held = std::mem::take(&mut st.holder);
                let ticket = st.next_ticket;
                st.next_ticket += 1;
                st.waiting.push_back(ticket);
                self.cv.notify_all();
                let waited = cx.wait_until(&self.cv, st, deadline(timeout), |s| s.notified.contains(&ticket));
                let (mut st, notified) = match waited {
                    Ok(r) => r,
                    Err(e) => {
                        let mut st = lock(&self.state);
                        st.waiting.retain(|t| *t != ticket);
                        st.notified.remove(&ticket);
                        return Err(e);
                    }
                };
                st.notified.remove(&ticket);
                st.waiting.retain(|t| *t != ticket);
                // Take the lock back before returning, as Python does, however long it takes.
                let (mut st, _) = cx.wait_until(&self.cv, st, None::<Instant>, |s| !s.holder.is_held())?;
                st.holder = held;
                encode_into(&notified, out)?;
            }
            ConditionMethod::notify => {
                let n: u64 = decode(args)?;
                let mut st = st;
                if !st.holder.is_held_by(me) {
                    return Err(not_owner("notify on"));
                }
                for _ in 0..n {
                    match st.waiting.pop_front() {
                        Some(t) => {
                            st.notified.insert(t);
                        }
                        None => break,
                    }
                }
                self.cv.notify_all();
            }
        }
        Ok(())
    }

    fn disconnected(&self, conn: u64) {
        if lock(&self.state).holder.let_go(conn) {
            self.cv.notify_all();
        }
    }
}

/// A proxy to a condition variable in a manager's server (Python's `manager.Condition()`).
///
/// ```
/// use std::time::Duration;
/// let manager = multiproc::Manager::start()?;
/// let cond = manager.condition()?;
/// let _held = cond.lock()?;
/// // Nobody notifies: the wait times out, and the lock is held again afterwards.
/// assert!(!cond.wait_timeout(Duration::from_millis(20))?);
/// cond.notify_all()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ConditionProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl ConditionProxy {
    acquirer_methods!();

    /// Releases the lock, waits for a notification, and takes the lock again (Python's
    /// `wait()`). The caller must hold the lock.
    pub fn wait(&self) -> Result<()> {
        self.base.call::<_, bool>(ConditionMethod::wait.name(), &None::<f64>).map(|_| ())
    }

    /// As [`wait`](Self::wait), for at most `timeout`: `false` if no notification came.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.base.call(ConditionMethod::wait.name(), &Some(timeout.as_secs_f64()))
    }

    /// Waits until `predicate()` holds, re-checking after each notification, for at most
    /// `timeout` if given (Python's `wait_for`); returns the predicate's last value.
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool, timeout: Option<Duration>) -> Result<bool> {
        let end = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            match end {
                None => self.wait()?,
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(predicate());
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`). The caller must hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.base.call(ConditionMethod::notify.name(), &(n as u64))
    }

    /// Wakes every waiter (Python's `notify_all`).
    pub fn notify_all(&self) -> Result<()> {
        self.base.call(ConditionMethod::notify.name(), &u64::MAX)
    }
}

proxy_impls!(ConditionProxy, "ConditionProxy", "Condition");
