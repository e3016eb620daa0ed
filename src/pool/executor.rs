//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor` over a [`Pool`].
//!
//! `submit` returns a [`PoolFuture`] (Python's `Future`): `result`, `done`, `cancel`, and a
//! `std::future::Future` impl. [`as_completed`] yields futures as they finish. Where Python's
//! executor breaks (`BrokenProcessPool`) and fails every pending future when one worker dies,
//! this one replaces the worker and fails only the task it was running.

use super::imap::IMapIterator;
use super::result::ApplyJob;
use super::{AsyncResult, Pool, PoolBuilder, TaskError};
use crate::error::{Error, Result};
use crate::process::StartMethod;
use crate::target::{self, Target};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;

/// A pool of worker processes with the interface of Python's `ProcessPoolExecutor`.
///
/// ```
/// use multiprocessing::{as_completed, Executor};
///
/// fn cube(x: u64) -> u64 {
///     x * x * x
/// }
///
/// let ex = Executor::new(2)?;
/// let futures: Vec<_> = (1..=3).map(|x| ex.submit(cube, (x,))).collect::<Result<_, _>>()?;
/// let mut done: Vec<u64> = as_completed(futures).map(|f| f.result()).collect::<Result<_, _>>()?;
/// done.sort();
/// assert_eq!(done, vec![1, 8, 27]);
/// let squares: Vec<u64> = ex.map(|x: u64| x * x, 0..4)?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, vec![0, 1, 4, 9]);
/// ex.shutdown(true, false);
/// # Ok::<(), multiprocessing::Error>(())
/// ```
pub struct Executor {
    pool: Pool,
}

/// Options for an [`Executor`] (Python's `max_workers`, `mp_context`, `initializer`,
/// `initargs`, `max_tasks_per_child`).
#[derive(Debug, Default)]
#[must_use]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
}

impl ExecutorBuilder {
    /// Number of worker processes (Python's `max_workers`); the CPU count by default.
    pub fn max_workers(self, n: usize) -> Self {
        ExecutorBuilder { pool: self.pool.processes(n) }
    }

    /// A function each worker runs once before its first task (Python's `initializer`).
    pub fn initializer<F, A>(self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + 'static,
    {
        ExecutorBuilder { pool: self.pool.initializer(f, args) }
    }

    /// Tasks per worker before it is replaced (Python's `max_tasks_per_child`).
    pub fn max_tasks_per_child(self, n: usize) -> Self {
        ExecutorBuilder { pool: self.pool.maxtasksperchild(n) }
    }

    /// How workers are started (Python's `mp_context`).
    pub fn start_method(self, method: StartMethod) -> Self {
        ExecutorBuilder { pool: self.pool.start_method(method) }
    }

    /// The longest one task may run before its worker is killed (see
    /// [`PoolBuilder::task_timeout`]).
    pub fn task_timeout(self, timeout: Duration) -> Self {
        ExecutorBuilder { pool: self.pool.task_timeout(timeout) }
    }

    /// Starts the executor's workers.
    pub fn build(self) -> Result<Executor> {
        Ok(Executor { pool: self.pool.build()? })
    }
}

impl Executor {
    pub(crate) fn wrap(pool: Pool) -> Executor {
        Executor { pool }
    }

    /// An executor with `max_workers` worker processes.
    pub fn new(max_workers: usize) -> Result<Executor> {
        Executor::builder().max_workers(max_workers).build()
    }

    /// Options for an executor: see [`ExecutorBuilder`].
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// Schedules `f(args...)` (Python's `submit`). After [`shutdown`](Self::shutdown) it is an
    /// [`Error::Closed`], as Python raises `RuntimeError`.
    pub fn submit<F, A>(&self, f: F, args: A) -> Result<PoolFuture<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        Ok(PoolFuture { result: self.pool.apply_async(f, args)? })
    }

    /// Calls `f` on every item and yields the values in input order (Python's `map`). All items
    /// are submitted now, one per task; see [`map_chunked`](Self::map_chunked).
    pub fn map<'a, F, T, I>(&'a self, f: F, iterable: I) -> Result<IMapIterator<'a, F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'a,
    {
        self.map_chunked(f, iterable, 1)
    }

    /// [`map`](Self::map) with `chunksize` items per task (Python's `chunksize=`).
    pub fn map_chunked<'a, F, T, I>(
        &'a self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<IMapIterator<'a, F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'a,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let feed =
            self.pool.feed::<F, (T,)>(iterable.into_iter().map(|x| (x,)), super::check_chunksize(chunksize)?);
        IMapIterator::eager(self.pool.shared.clone(), feed)
    }

    /// Stops accepting work (Python's `shutdown(wait, cancel_futures)`). With `cancel_futures`,
    /// tasks that have not started are cancelled; with `wait`, returns once the rest has run
    /// and the workers have exited.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        if cancel_futures {
            self.pool.shared.cancel_queued();
        }
        self.pool.close();
        if wait {
            let _ = self.pool.join();
        }
    }

    /// The pool underneath, for what only [`Pool`] offers.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor").field("pool", &self.pool).finish()
    }
}

/// A task submitted to an [`Executor`] (Python's `concurrent.futures.Future`); also a
/// `std::future::Future` whose output is the task's value.
pub struct PoolFuture<R> {
    result: AsyncResult<R>,
}

impl<R> PoolFuture<R> {
    fn job(&self) -> &Arc<ApplyJob<R>> {
        &self.result.job
    }

    /// Waits for the value (Python's `result()`).
    pub fn result(self) -> Result<R> {
        self.result.get()
    }

    /// Waits at most `timeout` (Python's `result(timeout)`): [`Error::Timeout`] if not done,
    /// and the future stays usable.
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        self.result.get_timeout(timeout)
    }

    /// The error, if the task failed (Python's `exception()`); waits for the task.
    pub fn exception(&self) -> Option<TaskError> {
        self.result.wait();
        self.job().completion.error()
    }

    /// Whether the task finished or was cancelled (Python's `done()`).
    pub fn done(&self) -> bool {
        self.result.ready()
    }

    /// Whether a worker has taken the task (Python's `running()`; true also once done).
    pub fn running(&self) -> bool {
        self.job().started() && !self.done()
    }

    /// Cancels the task if no worker has taken it yet (Python's `cancel()`); whether it is
    /// cancelled.
    pub fn cancel(&self) -> bool {
        self.job().try_cancel()
    }

    /// Whether the task was cancelled (Python's `cancelled()`).
    pub fn cancelled(&self) -> bool {
        self.job().cancelled()
    }
}

impl<R> Future for PoolFuture<R> {
    type Output = Result<R>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        Pin::new(&mut self.result).poll(cx)
    }
}

impl<R> fmt::Debug for PoolFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.cancelled() {
            "cancelled"
        } else if self.done() {
            "finished"
        } else if self.running() {
            "running"
        } else {
            "pending"
        };
        write!(f, "<PoolFuture state={state}>")
    }
}

/// Yields futures as they finish, whatever the order they were given in (Python's
/// `concurrent.futures.as_completed`).
pub fn as_completed<R>(futures: impl IntoIterator<Item = PoolFuture<R>>) -> AsCompleted<R> {
    let (tx, rx) = mpsc::channel();
    let futures: Vec<Option<PoolFuture<R>>> = futures.into_iter().map(Some).collect();
    for (i, f) in futures.iter().enumerate() {
        let tx = tx.clone();
        let fut = f.as_ref().expect("just wrapped");
        fut.job().completion.on_done(Box::new(move || {
            let _ = tx.send(i);
        }));
    }
    AsCompleted { left: futures.len(), futures, done: rx }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<R> {
    futures: Vec<Option<PoolFuture<R>>>,
    done: mpsc::Receiver<usize>,
    left: usize,
}

impl<R> AsCompleted<R> {
    /// The next future to finish, waiting at most `timeout`: `Ok(None)` when all were
    /// yielded, [`Error::Timeout`] if none finished in time (Python's `as_completed(timeout=)`).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<PoolFuture<R>>> {
        if self.left == 0 {
            return Ok(None);
        }
        match self.done.recv_timeout(timeout) {
            Ok(i) => Ok(self.take(i)),
            Err(_) => Err(Error::Timeout),
        }
    }

    fn take(&mut self, i: usize) -> Option<PoolFuture<R>> {
        self.left -= 1;
        self.futures[i].take()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = PoolFuture<R>;
    fn next(&mut self) -> Option<PoolFuture<R>> {
        if self.left == 0 {
            return None;
        }
        let i = self.done.recv().ok()?;
        self.take(i)
    }
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted").field("left", &self.left).finish()
    }
}
