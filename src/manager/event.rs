//! `Event` kept in a manager's server: [`EventProxy`] (Python's `manager.Event()`).

use super::protocol::{decode, encode_into};
use super::proxy::BaseProxy;
use super::registry::{deadline, Builtin, Call, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
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
    enum EventMethod for ServedEvent as "Event" { set, clear, is_set, wait }
}

impl Builtin<EventMethod> for ServedEvent {
    fn serve(&self, method: EventMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let mut flag = lock(&self.flag);
        match method {
            EventMethod::set => {
                *flag = true;
                self.cv.notify_all();
            }
            EventMethod::clear => *flag = false,
            EventMethod::is_set => encode_into(&*flag, out)?,
            EventMethod::wait => {
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
        self.base.call(EventMethod::set.name(), &())
    }

    /// Clears the flag (Python's `clear`).
    pub fn clear(&self) -> Result<()> {
        self.base.call(EventMethod::clear.name(), &())
    }

    /// Whether the flag is set (Python's `is_set`).
    pub fn is_set(&self) -> Result<bool> {
        self.base.call(EventMethod::is_set.name(), &())
    }

    /// Waits until the flag is set (Python's `wait()`).
    pub fn wait(&self) -> Result<()> {
        self.base.call::<_, bool>(EventMethod::wait.name(), &None::<f64>).map(|_| ())
    }

    /// Waits at most `timeout` (Python's `wait(timeout)`): whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.base.call(EventMethod::wait.name(), &Some(timeout.as_secs_f64()))
    }
}

proxy_impls!(EventProxy, "EventProxy", "Event");
