//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor` over a [`Pool`].
//!
//! `submit` returns a [`PoolFuture`] (Python's `Future`): `result`, `done`, `cancel`, and a
//! `std::future::Future` impl. [`as_completed`] yields futures as they finish. Where Python's
//! executor breaks (`BrokenProcessPool`) and fails every pending future when one worker dies,
//! this one replaces the worker and fails only the task it was running.
//!
//! What dropping a [`PoolFuture`] does to its task is the caller's choice ([`OnDrop`]): nothing,
//! as in Python (the default); or, as async code expects of a future, withdraw the task if no
//! worker has taken it yet, and leave a running one to finish or kill it.

use super::dispatcher::Shared;
use super::imap::IMapIterator;
use super::result::ApplyJob;
use super::{AsyncResult, MapCall, Pool, PoolBuilder, PoolTarget, TaskError};
use crate::error::{Error, Result};
use crate::process::StartMethod;
use crate::target::Target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

/// A pool of worker processes with the interface of Python's `ProcessPoolExecutor`.
///
/// ```
/// use multiproc::{as_completed, Executor};
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
/// let squares: Vec<u64> = ex.map(|x: u64| x * x, 0..4).submit()?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, vec![0, 1, 4, 9]);
/// ex.shutdown();
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Executor {
    pool: Pool,
    on_drop: OnDrop,
}

/// What dropping a [`PoolFuture`] before its task finished does to the task: set for every
/// future of an executor with [`ExecutorBuilder::on_drop`], or for one future with
/// [`PoolFuture::on_drop`].
///
/// A task counts as *queued* until a worker takes it, and as *running* from then on (as
/// [`PoolFuture::running`] says): a worker may take a quick task while it still runs another,
/// so a running task may not have begun yet.
///
/// ```
/// use multiproc::{Executor, OnDrop};
/// use std::time::Duration;
///
/// fn slow(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// let ex = Executor::builder().max_workers(1).on_drop(OnDrop::Kill).build()?;
/// let busy = ex.submit(slow, (60_000,))?;
/// let queued = ex.submit(slow, (1,))?;
/// drop(queued); // withdrawn: it never runs
/// drop(busy); // its worker is killed and replaced
/// assert_eq!(ex.submit(slow, (2,))?.result()?, 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnDrop {
    /// Nothing: the task runs as if the future were kept, and its value is dropped (Python's
    /// `concurrent.futures`, where a `Future` that goes away cancels nothing). The default.
    #[default]
    Keep,
    /// A queued task is withdrawn and never runs (its arguments' handles are closed); a running
    /// one is left to finish, and its value is dropped.
    Detach,
    /// A queued task is withdrawn, as with [`Detach`](OnDrop::Detach); a running one is stopped:
    /// its worker is killed (`SIGKILL`) as soon as it runs that task, and replaced, and the other
    /// tasks that worker had taken run on another worker. On a pool whose workers this process
    /// does not own (the `redis` and `mpi` backends) a running task is left to finish, as with
    /// `Detach`.
    Kill,
}

/// How [`Executor::shutdown_with`] stops an executor: Python's keyword arguments of
/// `shutdown(wait=True, cancel_futures=False)`, whose defaults [`Shutdown::new`] has.
///
/// ```
/// use multiproc::Shutdown;
///
/// let python_default = Shutdown::new(); // wait=True, cancel_futures=False
/// let drain_nothing = Shutdown::new().cancel_futures(); // wait=True, cancel_futures=True
/// let at_once = Shutdown::new().no_wait(); // wait=False
/// assert_ne!(python_default, drain_nothing);
/// assert_ne!(python_default, at_once);
/// assert_eq!(Shutdown::default(), python_default);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct Shutdown {
    wait: bool,
    cancel_futures: bool,
}

impl Shutdown {
    /// Python's defaults: wait for the tasks already submitted and for the workers to exit,
    /// cancel nothing.
    pub const fn new() -> Shutdown {
        Shutdown { wait: true, cancel_futures: false }
    }

    /// Return at once (Python's `wait=False`): the tasks already submitted still run, and the
    /// workers exit after them.
    pub const fn no_wait(self) -> Shutdown {
        Shutdown { wait: false, ..self }
    }

    /// Cancel the tasks no worker has taken yet (Python's `cancel_futures=True`): their
    /// futures report cancelled.
    pub const fn cancel_futures(self) -> Shutdown {
        Shutdown { cancel_futures: true, ..self }
    }
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

/// Options for an [`Executor`] (Python's `max_workers`, `mp_context`, `initializer`,
/// `initargs`, `max_tasks_per_child`), plus what dropping a future does ([`OnDrop`]).
#[derive(Debug, Default)]
#[must_use]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
    on_drop: OnDrop,
}

impl ExecutorBuilder {
    /// Number of worker processes (Python's `max_workers`); the CPU count by default.
    pub fn max_workers(self, n: usize) -> Self {
        ExecutorBuilder { pool: self.pool.processes(n), ..self }
    }

    /// A function each worker runs once before its first task (Python's `initializer`).
    pub fn initializer<F, A>(self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + 'static,
    {
        ExecutorBuilder { pool: self.pool.initializer(f, args), ..self }
    }

    /// Tasks per worker before it is replaced (Python's `max_tasks_per_child`).
    pub fn max_tasks_per_child(self, n: usize) -> Self {
        ExecutorBuilder { pool: self.pool.maxtasksperchild(n), ..self }
    }

    /// How workers are started (Python's `mp_context`).
    pub fn start_method(self, method: StartMethod) -> Self {
        ExecutorBuilder { pool: self.pool.start_method(method), ..self }
    }

    /// The longest one task may run before its worker is killed (see
    /// [`PoolBuilder::task_timeout`]).
    pub fn task_timeout(self, timeout: Duration) -> Self {
        ExecutorBuilder { pool: self.pool.task_timeout(timeout), ..self }
    }

    /// What dropping a [`PoolFuture`] of this executor before its task finished does (see
    /// [`OnDrop`]); [`OnDrop::Keep`] by default. A future can override it with
    /// [`PoolFuture::on_drop`].
    pub fn on_drop(self, on_drop: OnDrop) -> Self {
        ExecutorBuilder { on_drop, ..self }
    }

    /// Starts the executor's workers.
    pub fn build(self) -> Result<Executor> {
        Ok(Executor { pool: self.pool.build()?, on_drop: self.on_drop })
    }
}

impl Executor {
    pub(crate) fn wrap(pool: Pool) -> Executor {
        Executor { pool, on_drop: OnDrop::Keep }
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
    /// [`Error::Closed`], as Python raises `RuntimeError`. What dropping the future before the
    /// task finished does is the executor's [`OnDrop`] (see [`ExecutorBuilder::on_drop`]), or
    /// the future's own ([`PoolFuture::on_drop`]).
    pub fn submit<F: PoolTarget<A>, A>(&self, f: F, args: A) -> Result<PoolFuture<F::Output>> {
        let (job, id) = self.pool.apply_job(f, args)?;
        Ok(PoolFuture {
            result: AsyncResult::new(job.clone()),
            job,
            id,
            shared: Arc::downgrade(&self.pool.shared),
            on_drop: self.on_drop,
        })
    }

    /// Calls `f` on every item and yields the values in input order (Python's `map`): all items
    /// are submitted when it is iterated (or [`submit`](MapCall::submit)ted), one per task
    /// unless [`chunksize`](MapCall::chunksize) says otherwise (Python's `chunksize=`).
    pub fn map<'p, F, I>(&'p self, f: F, items: I) -> MapCall<'p, I, IMapIterator<'p, F::Output>>
    where
        I: IntoIterator<IntoIter: 'p>,
        F: PoolTarget<(I::Item,)>,
    {
        MapCall::new(&self.pool, f, items, |pool, items, o| {
            let feed = pool.feed::<F, _>(items.into_iter().map(|x| (x,)), o.chunksize_or(1)?);
            IMapIterator::eager(pool.shared.clone(), feed)
        })
    }

    /// Stops accepting work and waits until the tasks already submitted have run and the
    /// workers have exited (Python's `shutdown()`, that is `wait=True, cancel_futures=False`).
    /// [`shutdown_with`](Self::shutdown_with) chooses otherwise.
    pub fn shutdown(&self) {
        self.shutdown_with(Shutdown::new());
    }

    /// Stops accepting work as `how` says (Python's `shutdown(wait=..., cancel_futures=...)`).
    ///
    /// ```
    /// use multiproc::{Executor, Shutdown, TaskErrorKind};
    ///
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    ///
    /// let ex = Executor::new(1)?;
    /// let f = ex.submit(double, (21,))?;
    /// // Python's `shutdown(wait=False, cancel_futures=True)`: tasks no worker has taken are
    /// // cancelled, and the call returns at once.
    /// ex.shutdown_with(Shutdown::new().no_wait().cancel_futures());
    /// assert!(ex.submit(double, (1,)).is_err(), "no more work after shutdown");
    /// match f.result() {
    ///     Ok(v) => assert_eq!(v, 42), // a worker had taken it
    ///     Err(multiproc::Error::Task(e)) => assert_eq!(e.kind(), TaskErrorKind::Cancelled),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown_with(&self, how: Shutdown) {
        if how.cancel_futures {
            self.pool.shared.cancel_queued();
        }
        self.pool.close();
        if how.wait {
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
///
/// Dropped before its task finished, it does what its [`OnDrop`] says: by default nothing
/// (the task runs on); with [`OnDrop::Detach`] or [`OnDrop::Kill`] a queued task is withdrawn,
/// and with `Kill` a running one is killed.
///
/// # Cancel safety
///
/// Awaiting it takes the value only in the poll that returns it. A future dropped at an await
/// point (a `tokio::time::timeout` that expired, a `select!` branch that lost) has taken
/// nothing, and its task is then treated by its `OnDrop`, as for any drop: with the default
/// `Keep` the task still runs and its value is dropped.
///
/// ```
/// use multiproc::{Executor, OnDrop};
/// use std::time::Duration;
///
/// fn slow(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let ex = Executor::new(1)?;
/// let f = ex.submit(slow, (60_000,))?.on_drop(OnDrop::Kill);
/// // Gives up after 100 ms: the dropped future has the task's worker killed.
/// assert!(tokio::time::timeout(Duration::from_millis(100), f).await.is_err());
/// assert_eq!(ex.submit(slow, (1,))?.await?, 1);
/// # Ok::<(), multiproc::Error>(())
/// # }).unwrap();
/// ```
pub struct PoolFuture<R> {
    result: AsyncResult<R>,
    job: Arc<ApplyJob<R>>,
    /// The task's id in its pool.
    id: u64,
    shared: Weak<Shared>,
    on_drop: OnDrop,
}

impl<R> PoolFuture<R> {
    fn job(&self) -> &Arc<ApplyJob<R>> {
        &self.job
    }

    /// This future with `on_drop` as what dropping it before its task finished does, in place
    /// of its executor's ([`ExecutorBuilder::on_drop`]).
    #[must_use]
    pub fn on_drop(mut self, on_drop: OnDrop) -> Self {
        self.on_drop = on_drop;
        self
    }

    /// Waits for the value (Python's `result()`).
    pub fn result(self) -> Result<R> {
        self.result.wait();
        self.job().completion.take()
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
        self.withdraw()
    }

    /// Cancels the task if it is queued, and tells the pool that one of its queued tasks was.
    fn withdraw(&self) -> bool {
        let was_queued = !self.job().cancelled();
        let cancelled = self.job().try_cancel();
        if cancelled && was_queued {
            if let Some(shared) = self.shared.upgrade() {
                shared.withdrawn();
            }
        }
        cancelled
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

impl<R> Drop for PoolFuture<R> {
    fn drop(&mut self) {
        if self.on_drop == OnDrop::Keep || self.done() {
            return;
        }
        if self.withdraw() {
            return;
        }
        if self.on_drop == OnDrop::Kill && self.job().started() {
            if let Some(shared) = self.shared.upgrade() {
                shared.kill_task(self.id);
            }
        }
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
