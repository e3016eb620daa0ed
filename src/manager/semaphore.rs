//! `Semaphore` and `BoundedSemaphore` kept in a manager's server: [`SemaphoreProxy`] (Python's
//! `manager.Semaphore(value)` / `manager.BoundedSemaphore(value)`).

use super::lock::{acquirer_methods, AcquireGuard};
use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{block_deadline, Builtin, Call, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The server side: a counter, with an upper bound for a bounded semaphore.
pub(crate) struct ServedSemaphore {
    value: Mutex<u64>,
    cv: Condvar,
    bound: Option<u64>,
}

impl ServedSemaphore {
    pub(crate) fn create(args: &[u8], bounded: bool) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let value: u64 = decode(args)?;
        Ok(Arc::new(ServedSemaphore {
            value: Mutex::new(value),
            cv: Condvar::new(),
            bound: bounded.then_some(value),
        }))
    }
}

methods! {
    enum SemaphoreMethod for ServedSemaphore as "Semaphore" { acquire, release, get_value }
}

impl Builtin<SemaphoreMethod> for ServedSemaphore {
    fn serve(&self, method: SemaphoreMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let v = lock(&self.value);
        match method {
            SemaphoreMethod::acquire => {
                let (block, timeout): (bool, Option<f64>) = decode(args)?;
                let (mut v, ok) = cx.wait_until(&self.cv, v, block_deadline(block, timeout), |v| *v > 0)?;
                if ok {
                    *v -= 1;
                }
                encode_into(&ok, out)?;
            }
            SemaphoreMethod::release => {
                let n: u64 = if args.is_empty() { 1 } else { decode(args)? };
                let mut v = v;
                if self.bound.is_some_and(|b| *v + n > b) {
                    return Err(RemoteError::new(
                        RemoteErrorKind::Value,
                        "Semaphore released too many times",
                    ));
                }
                *v += n;
                self.cv.notify_all();
            }
            SemaphoreMethod::get_value => encode_into(&*v, out)?,
        }
        Ok(())
    }
}

/// A proxy to a semaphore in a manager's server (Python's `manager.Semaphore(value)`, and
/// `manager.BoundedSemaphore(value)`, whose `release` above the initial value is a `Value`
/// error).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let s = manager.bounded_semaphore(2)?;
/// s.acquire()?;
/// assert_eq!(s.get_value()?, 1);
/// s.release()?;
/// assert!(s.release().is_err()); // above the bound
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SemaphoreProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl SemaphoreProxy {
    acquirer_methods!();

    /// Releases `n` times at once (Python's `release(n)`).
    pub fn release_n(&self, n: usize) -> Result<()> {
        self.base.call(SemaphoreMethod::release.name(), &(n as u64))
    }

    /// The counter's current value (Python's `get_value`).
    pub fn get_value(&self) -> Result<usize> {
        self.base.call::<_, u64>(SemaphoreMethod::get_value.name(), &()).map(|v| v as usize)
    }
}

proxy_impls!(SemaphoreProxy, "AcquirerProxy", "Semaphore", ["Semaphore", "BoundedSemaphore"]);
