//! `Queue` and `JoinableQueue` kept in a manager's server: [`QueueProxy<T>`] and
//! [`JoinableQueueProxy<T>`] (Python's `manager.Queue()`, a `queue.Queue` behind a proxy).
//!
//! A blocked `get` waits in the server, on the thread of its own connection; it watches its
//! client, and if the client is gone it gives up without taking an item. If the reply carrying
//! an item cannot be sent, the item goes back to the front of the queue.

use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{block_deadline, deadline, Builtin, Call, Reply, Served};
use super::wire_bytes::{encode_one, Bytes};
use crate::error::Result;
use crate::sync::lock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct QueueState {
    items: VecDeque<Box<[u8]>>,
    unfinished: u64,
}

/// The server side: a FIFO of encoded items with Python's `queue.Queue` semantics.
pub(crate) struct ServedQueue {
    state: Arc<Mutex<QueueState>>,
    maxsize: usize,
    not_empty: Arc<Condvar>,
    not_full: Condvar,
    all_done: Condvar,
}

impl ServedQueue {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let maxsize: u64 = decode(args)?;
        Ok(Arc::new(ServedQueue {
            state: Arc::new(Mutex::new(QueueState { items: VecDeque::new(), unfinished: 0 })),
            maxsize: maxsize as usize,
            not_empty: Arc::new(Condvar::new()),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        }))
    }
}

methods! {
    enum QueueMethod for ServedQueue as "Queue" { put, get, qsize, empty, full, task_done, join }
}

impl Builtin<QueueMethod> for ServedQueue {
    fn serve(&self, method: QueueMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let st = lock(&self.state);
        match method {
            QueueMethod::put => {
                let (block, timeout, item): (bool, Option<f64>, &[u8]) = decode(args)?;
                let max = self.maxsize;
                let (mut st, ok) =
                    cx.wait_until(&self.not_full, st, block_deadline(block, timeout), |s| {
                        max == 0 || s.items.len() < max
                    })?;
                if !ok {
                    return Err(RemoteError::new(RemoteErrorKind::Full, "queue is full"));
                }
                st.items.push_back(item.into());
                st.unfinished += 1;
                self.not_empty.notify_one();
            }
            QueueMethod::get => {
                let (block, timeout): (bool, Option<f64>) = decode(args)?;
                let (mut st, ok) =
                    cx.wait_until(&self.not_empty, st, block_deadline(block, timeout), |s| {
                        !s.items.is_empty()
                    })?;
                if !ok {
                    return Err(RemoteError::new(RemoteErrorKind::Empty, "queue is empty"));
                }
                let item = st.items.pop_front().expect("not empty");
                out.extend_from_slice(&item);
                self.not_full.notify_one();
                let (state, not_empty) = (self.state.clone(), self.not_empty.clone());
                cx.on_undeliverable(move || {
                    lock(&state).items.push_front(item);
                    not_empty.notify_one();
                });
            }
            QueueMethod::qsize => encode_into(&(st.items.len() as u64), out)?,
            QueueMethod::empty => encode_into(&st.items.is_empty(), out)?,
            QueueMethod::full => encode_into(&(self.maxsize > 0 && st.items.len() >= self.maxsize), out)?,
            QueueMethod::task_done => {
                let mut st = st;
                if st.unfinished == 0 {
                    return Err(RemoteError::new(
                        RemoteErrorKind::Value,
                        "task_done() called too many times",
                    ));
                }
                st.unfinished -= 1;
                if st.unfinished == 0 {
                    self.all_done.notify_all();
                }
            }
            QueueMethod::join => {
                let timeout: Option<f64> = decode(args)?;
                let (_st, ok) =
                    cx.wait_until(&self.all_done, st, deadline(timeout), |s| s.unfinished == 0)?;
                encode_into(&ok, out)?;
            }
        }
        Ok(())
    }
}

fn secs(t: Duration) -> f64 {
    t.as_secs_f64()
}

/// A proxy to a queue in a manager's server (Python's `manager.Queue(maxsize)`).
///
/// Errors: a non-blocking or timed `get` on an empty queue fails with kind
/// [`Empty`](super::RemoteErrorKind::Empty), a `put` on a full one with
/// [`Full`](super::RemoteErrorKind::Full), as Python raises `queue.Empty` / `queue.Full`.
///
/// ```
/// use std::time::Duration;
/// use multiproc::manager::RemoteErrorKind;
///
/// let manager = multiproc::Manager::start()?;
/// let q = manager.queue::<String>(0)?;
/// q.put("job".to_string())?;
/// assert_eq!(q.get()?, "job");
/// let e = q.get_timeout(Duration::from_millis(10)).unwrap_err();
/// assert_eq!(e.remote_kind(), Some(RemoteErrorKind::Empty));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct QueueProxy<T> {
    base: BaseProxy,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_with(&self, item: &T, block: bool, timeout: Option<f64>) -> Result<()> {
        let bytes = encode_one(item)?;
        self.base.call(QueueMethod::put.name(), &(block, timeout, Bytes(&bytes)))
    }

    fn get_with(&self, block: bool, timeout: Option<f64>) -> Result<T> {
        self.base.call(QueueMethod::get.name(), &(block, timeout))
    }

    /// Adds an item, waiting for room if the queue is bounded (Python's `put(item)`).
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_with(item.borrow(), true, None)
    }

    /// Adds an item, waiting at most `timeout` for room (Python's `put(item, timeout=t)`).
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.put_with(item.borrow(), true, Some(secs(timeout)))
    }

    /// Adds an item if there is room now (Python's `put_nowait`).
    pub fn put_nowait(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_with(item.borrow(), false, None)
    }

    /// Removes and returns the first item, waiting for one (Python's `get()`).
    pub fn get(&self) -> Result<T> {
        self.get_with(true, None)
    }

    /// Removes and returns the first item, waiting at most `timeout` (Python's
    /// `get(timeout=t)`).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(true, Some(secs(timeout)))
    }

    /// Removes and returns the first item if there is one now (Python's `get_nowait`).
    pub fn get_nowait(&self) -> Result<T> {
        self.get_with(false, None)
    }

    /// The number of items (Python's `qsize`).
    pub fn qsize(&self) -> Result<usize> {
        self.base.call::<_, u64>(QueueMethod::qsize.name(), &()).map(|n| n as usize)
    }

    /// Whether the queue is empty (Python's `empty`).
    pub fn empty(&self) -> Result<bool> {
        self.base.call(QueueMethod::empty.name(), &())
    }

    /// Whether a bounded queue is full (Python's `full`).
    pub fn full(&self) -> Result<bool> {
        self.base.call(QueueMethod::full.name(), &())
    }
}

proxy_impls!(QueueProxy<T>, "QueueProxy", "Queue");

/// A proxy to a joinable queue in a manager's server (Python's `manager.JoinableQueue()`):
/// a [`QueueProxy`] plus [`task_done`](Self::task_done) and [`join`](Self::join).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let q = manager.joinable_queue::<u32>(0)?;
/// q.put(1)?;
/// let job = q.get()?;
/// q.task_done()?;
/// q.join()?; // every item put has been marked done
/// # let _ = job;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinableQueueProxy<T> {
    base: BaseProxy,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    fn queue(&self) -> QueueProxy<T> {
        QueueProxy { base: self.base.clone(), _t: PhantomData }
    }

    /// See [`QueueProxy::put`].
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.queue().put(item)
    }

    /// See [`QueueProxy::put_timeout`].
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.queue().put_timeout(item, timeout)
    }

    /// See [`QueueProxy::put_nowait`].
    pub fn put_nowait(&self, item: impl Borrow<T>) -> Result<()> {
        self.queue().put_nowait(item)
    }

    /// See [`QueueProxy::get`].
    pub fn get(&self) -> Result<T> {
        self.queue().get()
    }

    /// See [`QueueProxy::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue().get_timeout(timeout)
    }

    /// See [`QueueProxy::get_nowait`].
    pub fn get_nowait(&self) -> Result<T> {
        self.queue().get_nowait()
    }

    /// See [`QueueProxy::qsize`].
    pub fn qsize(&self) -> Result<usize> {
        self.queue().qsize()
    }

    /// See [`QueueProxy::empty`].
    pub fn empty(&self) -> Result<bool> {
        self.queue().empty()
    }

    /// Marks one item taken with `get` as processed (Python's `task_done`); a `Value` error if
    /// called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.base.call(QueueMethod::task_done.name(), &())
    }

    /// Waits until every item put has been marked done (Python's `join`).
    pub fn join(&self) -> Result<()> {
        self.base.call::<_, bool>(QueueMethod::join.name(), &None::<f64>).map(|_| ())
    }

    /// As [`join`](Self::join), waiting at most `timeout`; `false` if items are still pending.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.base.call(QueueMethod::join.name(), &Some(secs(timeout)))
    }
}

proxy_impls!(JoinableQueueProxy<T>, "JoinableQueueProxy", "JoinableQueue");
