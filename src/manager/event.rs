//! `Event` kept in a manager's server: [`EventProxy`] (Python's `manager.Event()`).

use super::protocol::{decode, encode_into};
use super::proxy::BaseProxy;
use super::registry::{deadline, Call, Reply, Served};
use crate::error::Result;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The server side: a flag and its waiters.
pub(crate) struct ServedEvent {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl ServedEvent {
    pub(crate) fn create() -> Arc<dyn Served> {
        Arc::new(ServedEvent { flag: Mutex::new(false), cv: Condvar::new() })
    }
}

methods! {
    enum EventMethod {
        Set = "set",
        Clear = "clear",
        IsSet = "is_set",
        Wait = "wait",
    }
}

impl Served for ServedEvent {
    fn call(&self, Call { cx, method, args, out }: Call<'_, '_>) -> Reply {
        let mut flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        match EventMethod::parse(method, "Event")? {
            EventMethod::Set => {
                *flag = true;
                self.cv.notify_all();
            }
            EventMethod::Clear => *flag = false,
            EventMethod::IsSet => encode_into(&*flag, out)?,
            EventMethod::Wait => {
                let timeout: Option<f64> = decode(args)?;
                let (_f, ok) = cx.wait_until(&self.cv, flag, deadline(timeout), |f| *f)?;
                encode_into(&ok, out)?;
            }
        }
        Ok(())
    }
}

/// A proxy to an event in a manager's server (Python's `manager.Event()`).
///
/// ```
/// use std::time::Duration;
/// let manager = multiproc::Manager::start()?;
/// let e = manager.event()?;
/// assert!(!e.wait_timeout(Duration::from_millis(10))?);
/// e.set()?;
/// assert!(e.is_set()?);
/// e.wait()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct EventProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl EventProxy {
    /// Sets the flag and wakes every waiter (Python's `set`).
    pub fn set(&self) -> Result<()> {
        self.base.call(EventMethod::Set.name(), &())
    }

    /// Clears the flag (Python's `clear`).
    pub fn clear(&self) -> Result<()> {
        self.base.call(EventMethod::Clear.name(), &())
    }

    /// Whether the flag is set (Python's `is_set`).
    pub fn is_set(&self) -> Result<bool> {
        self.base.call(EventMethod::IsSet.name(), &())
    }

    /// Waits until the flag is set (Python's `wait()`).
    pub fn wait(&self) -> Result<()> {
        self.base.call::<_, bool>(EventMethod::Wait.name(), &None::<f64>).map(|_| ())
    }

    /// Waits at most `timeout` (Python's `wait(timeout)`): whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.base.call(EventMethod::Wait.name(), &Some(timeout.as_secs_f64()))
    }
}

proxy_impls!(EventProxy, "EventProxy", "Event");
