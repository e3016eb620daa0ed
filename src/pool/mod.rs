//! Process pools: [`Pool`] (Python's `multiprocessing.Pool`) and [`Executor`] (Python's
//! `concurrent.futures.ProcessPoolExecutor`).
//!
//! A pool starts `processes` worker processes that run a loop: read tasks, run them, send
//! results. A task names its function by offset (see `process/target.rs`), so one pool runs any
//! fn item or non-capturing closure of the program; arguments and values are serde values.
//!
//! Rooms:
//! - `mod.rs`: the facade, [`Pool`] and [`PoolBuilder`].
//! - `call.rs`: the one call shape of the map family, [`MapCall`], and the bound of every
//!   method, [`PoolTarget`].
//! - `result.rs`: [`AsyncResult`] (and [`MapResult`], an `AsyncResult<Vec<R>>`) and the
//!   completion it waits on.
//! - `imap.rs`: the lazy [`IMapIterator`].
//! - `dispatcher.rs`: the thread that owns the workers, batches tasks out and results in, and
//!   replaces workers that die.
//! - `worker.rs`: the worker process's loop; `entry.rs`: the per-function call entries;
//!   `protocol.rs`: the frames between them; `slots.rs`: per-worker status in shared memory.
//! - `executor.rs`: [`Executor`], [`PoolFuture`] (and what dropping one does, [`OnDrop`]),
//!   [`as_completed`].
//! - `backend.rs`: the seam between the facade and where tasks run (the dispatcher here, a
//!   broker with the `redis` feature).
//!
//! Unlike Python's pool, this one never hangs when things go wrong: a panicking task gives its
//! caller the panic message, a worker killed mid-task is replaced and that task alone fails, a
//! task over `task_timeout` is killed, and `terminate` returns promptly with every worker reaped.
//! (When a worker dies, the other tasks it had been sent run on another worker; a quick task whose
//! result the dead worker still held for batching may thus run twice.)

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) mod backend;
mod call;
mod dispatcher;
mod entry;
mod executor;
mod imap;
mod protocol;
mod result;
mod slots;
mod with;
mod worker;

pub use crate::error::{TaskError, TaskErrorKind};
pub use call::{MapCall, PoolTarget, TaskValue};
pub use executor::{as_completed, AsCompleted, Executor, ExecutorBuilder, OnDrop, PoolFuture, Shutdown};
pub use imap::{IMapIterator, ImapError, TryIMapIterator};
pub use result::{AsyncResult, MapResult};

use crate::error::{Error, Result};
use crate::process::StartMethod;
use crate::sys;
use crate::target::{self, EntryOffset, Target};
use crate::wire;
use call::{Frame, Options};
use dispatcher::{Dispatcher, Launch, Phase, Shared, Task};
use result::{lock, ApplyJob, MapJob, Sink};
use serde::de::DeserializeOwned;
use serde::Serialize;
use slots::Slots;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use worker::{InitCall, SharedFds, WorkerConfig};

/// Python's default chunk size for `map`: the input split in about four chunks per worker.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = processes.max(1) * 4;
    len / per + usize::from(len % per != 0)
}

/// The bar of [`MapCall::progress`] over `len` items.
#[cfg(feature = "progress")]
fn progress_bar(len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Methods take a target — a fn item or a closure that captures nothing — and serde values.
/// Dropping the pool terminates it, as leaving `with Pool() as p:` does in Python: call
/// [`close`](Self::close) and [`join`](Self::join) first to let queued work finish.
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.map(square, 0..5).get()?, vec![0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(|a: i32, b: i32| a + b, (2, 3))?, 5);
/// let r = pool.apply_async(square, (9,))?;
/// assert_eq!(r.get()?, 81);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A capturing closure is refused at compile time:
///
/// ```compile_fail
/// let pool = multiproc::Pool::new(1).unwrap();
/// let k = 3u64;
/// let _ = pool.map(move |x: u64| x * k, 0..5).get();
/// ```
///
/// State for the function goes as a serde context instead, with [`map_with`](Pool::map_with).
pub struct Pool {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    processes: usize,
}

/// Options for a [`Pool`] (Python's `Pool(processes, initializer, initargs, maxtasksperchild)`
/// and a context's start method), plus a per-task timeout Python does not have.
///
/// ```
/// use multiproc::{Pool, StartMethod};
/// use std::time::Duration;
///
/// static mut GREETING: &str = "";
///
/// fn setup(word: String) {
///     // Runs once in each worker before its first task.
///     unsafe { GREETING = if word == "hi" { "hi" } else { "?" } };
/// }
///
/// fn greet(name: String) -> String {
///     format!("{} {name}", unsafe { GREETING })
/// }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, ("hi".to_string(),))
///     .maxtasksperchild(100)
///     .start_method(StartMethod::Forkserver)
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(pool.apply(greet, ("Ada".to_string(),))?, "hi Ada");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Default)]
#[must_use]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<InitCall>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("maxtasksperchild", &self.maxtasks)
            .field("start_method", &self.method)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// Number of worker processes (Python's `processes`); [`cpu_count`](crate::cpu_count) by
    /// default.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function each worker calls once, with `args`, before its first task (Python's
    /// `initializer` and `initargs`). If it panics the pool is broken: every task fails with
    /// [`TaskErrorKind::Broken`] instead of workers being restarted forever.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + DeserializeOwned + 'static,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let entry = EntryOffset::of_call(entry::init_entry::<F, A>);
        self.init = Some((|| {
            let mut bytes = Vec::new();
            let raw = wire::encode(&args, &mut bytes)?;
            let fds = raw
                .into_iter()
                .map(|fd| sys::dup_cloexec(fd).map_err(Error::io("duplicating a handle for the initializer")))
                .collect::<Result<Vec<_>>>()?;
            Ok(InitCall { entry, args: bytes, fds: SharedFds(Arc::new(fds)) })
        })());
        self
    }

    /// How many tasks a worker runs before it is replaced by a fresh process (Python's
    /// `maxtasksperchild`); unlimited by default. A chunk of a map counts as one task.
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// How the workers are started (Python's `get_context(method).Pool()`); the process-wide
    /// method by default.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The longest a task (or a chunk of a map) may run: past it, its worker is killed and
    /// replaced and the task fails with [`TaskErrorKind::TimedOut`]. No limit by default.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts the workers and the pool's dispatcher thread.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::invalid("number of processes must be at least 1"));
        }
        if self.maxtasks == Some(0) {
            return Err(Error::invalid("maxtasksperchild must be a positive integer"));
        }
        let init = self.init.transpose()?;
        let method = self.method.unwrap_or_else(crate::get_start_method);
        let slots = Slots::new(processes)?;
        let shared = Shared::new()?;
        let config = WorkerConfig { maxtasks: self.maxtasks.map(|m| m as u64), init };
        let mut launch = Launch { method, config, slots, started: 0 };
        let mut workers = Vec::with_capacity(processes);
        for i in 0..processes {
            match launch.start_worker(i) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    workers.into_iter().for_each(dispatcher::Worker::abort);
                    return Err(e);
                }
            }
        }
        let dispatcher = Dispatcher::new(
            shared.clone(),
            launch,
            workers,
            self.maxtasks.map(|m| m as u64),
            self.task_timeout,
        );
        Pool::with_backend(shared, Box::new(dispatcher), processes)
    }
}

impl Pool {
    /// A pool of `processes` workers with default options (Python's `Pool(processes)`).
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Options for a pool: see [`PoolBuilder`].
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Calls `f(args...)` in a worker and waits for the value (Python's `apply`).
    pub fn apply<F: PoolTarget<A>, A>(&self, f: F, args: A) -> Result<F::Output> {
        self.apply_async(f, args)?.get()
    }

    /// Calls `f(args...)` in a worker; the value comes later through the [`AsyncResult`]
    /// (Python's `apply_async`).
    pub fn apply_async<F: PoolTarget<A>, A>(&self, f: F, args: A) -> Result<AsyncResult<F::Output>> {
        Ok(AsyncResult::new(self.apply_job(f, args)?.0))
    }

    /// [`apply_async`](Self::apply_async)'s job, and the task's id.
    pub(crate) fn apply_job<F: PoolTarget<A>, A>(
        &self,
        f: F,
        args: A,
    ) -> Result<(Arc<ApplyJob<F::Output>>, u64)> {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let entries = F::entries();
        let job = ApplyJob::<F::Output>::new();
        let id = self.shared.next_id();
        let frame = (entries.frame)(id, entries.apply, &args)?;
        self.shared.submit([Task::new(id, entries.apply, frame, job.clone(), 0)], false)?;
        Ok((job, id))
    }

    /// Calls `f` on every item, in chunks spread over the workers, for the values in input order
    /// (Python's `map`): `pool.map(f, items).get()?` waits for them, [`submit`](MapCall::submit)
    /// gives a [`MapResult`] at once (Python's `map_async`). The chunk size is Python's default,
    /// about four chunks per worker, unless [`chunksize`](MapCall::chunksize) sets it. The first
    /// failing chunk's error is the map's.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.map(|x: u32| x * 2, 0..4).get()?, vec![0, 2, 4, 6]);
    /// assert_eq!(pool.map(|x: u32| x * 2, 0..4).chunksize(3).get()?, vec![0, 2, 4, 6]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<F, I>(&self, f: F, items: I) -> MapCall<'_, I, MapResult<F::Output>>
    where
        I: IntoIterator,
        F: PoolTarget<(I::Item,)>,
    {
        MapCall::new(self, f, items, |pool, items, o| {
            pool.map_chunks::<F, _>(items.into_iter().map(|x| (x,)).collect(), o)
        })
    }

    /// Like [`map`](Self::map) with each item a tuple of arguments (Python's `starmap`):
    /// `starmap(f, [(1, 2), (3, 4)])` computes `[f(1, 2), f(3, 4)]`.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// let sums = pool.starmap(|a: u32, b: u32| a + b, vec![(1, 2), (3, 4)]).get()?;
    /// assert_eq!(sums, vec![3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<F, I>(&self, f: F, items: I) -> MapCall<'_, I, MapResult<F::Output>>
    where
        I: IntoIterator,
        F: PoolTarget<I::Item>,
    {
        MapCall::new(self, f, items, |pool, items, o| pool.map_chunks::<F, _>(items.into_iter().collect(), o))
    }

    /// [`map`](Self::map) without waiting (Python's `map_async`): `pool.map(f, items).submit()`,
    /// with the default chunk size.
    pub fn map_async<F, I>(&self, f: F, items: I) -> Result<MapResult<F::Output>>
    where
        I: IntoIterator,
        F: PoolTarget<(I::Item,)>,
    {
        self.map(f, items).submit()
    }

    /// [`starmap`](Self::starmap) without waiting (Python's `starmap_async`):
    /// `pool.starmap(f, items).submit()`, with the default chunk size.
    pub fn starmap_async<F, I>(&self, f: F, items: I) -> Result<MapResult<F::Output>>
    where
        I: IntoIterator,
        F: PoolTarget<I::Item>,
    {
        self.starmap(f, items).submit()
    }

    /// Submits `items` in chunks as tasks of a map whose values the [`MapResult`] gathers: each
    /// chunk runs `entry`, encoded by `frame`.
    pub(crate) fn submit_map<T, R: TaskValue>(
        &self,
        items: &[T],
        o: Options,
        entry: EntryOffset,
        frame: impl Fn(u64, EntryOffset, &[T]) -> Result<Frame>,
    ) -> Result<MapResult<R>> {
        let chunksize = o.chunksize_or(default_chunksize(items.len(), self.processes))?;
        let chunks = items.len().div_ceil(chunksize);
        #[cfg(feature = "progress")]
        let job = match o.progress {
            true => MapJob::<R>::with_progress(chunks, progress_bar(items.len())),
            false => MapJob::<R>::new(chunks),
        };
        #[cfg(not(feature = "progress"))]
        let job = MapJob::<R>::new(chunks);
        let sink: Arc<dyn Sink> = job.clone();
        let tasks = items
            .chunks(chunksize)
            .enumerate()
            .map(|(i, chunk)| {
                let id = self.shared.next_id();
                Ok(Task::new(id, entry, frame(id, entry, chunk)?, sink.clone(), i))
            })
            .collect::<Result<Vec<_>>>()?;
        if !tasks.is_empty() {
            self.shared.submit(tasks, false)?;
        }
        Ok(MapResult::new(job))
    }

    /// A map of `F` over argument tuples: each chunk runs `F` on each of its tuples.
    fn map_chunks<F: PoolTarget<A>, A>(&self, items: Vec<A>, o: Options) -> Result<MapResult<F::Output>> {
        let entries = F::entries();
        self.submit_map(&items, o, entries.chunk, entries.chunk_frame)
    }

    /// The feed of a lazy map: chunks of `chunksize` argument tuples taken from `items` on demand.
    pub(crate) fn feed<'a, F: PoolTarget<A>, A>(
        &self,
        items: impl Iterator<Item = A> + 'a,
        chunksize: usize,
    ) -> imap::Feed<'a> {
        let shared = self.shared.clone();
        let entry = F::entries().chunk;
        let mut items = items;
        let mut index = 0;
        Box::new(move |sink: &Arc<dyn Sink>| {
            let chunk: Vec<A> = items.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                return None;
            }
            let id = shared.next_id();
            let i = index;
            index += 1;
            let frame = (F::entries().chunk_frame)(id, entry, &chunk);
            Some(frame.map(|f| Task::new(id, entry, f, sink.clone(), i)))
        })
    }

    /// A lazy map of `F` over argument tuples, in input order (`ordered`) or as they finish.
    fn lazy<'a, F: PoolTarget<A>, A>(
        &self,
        items: impl Iterator<Item = A> + 'a,
        o: Options,
        ordered: bool,
    ) -> Result<IMapIterator<'a, F::Output>> {
        let feed = self.feed::<F, A>(items, o.chunksize_or(1)?);
        IMapIterator::new(self.shared.clone(), feed, ordered, 4 * self.processes + 16)
    }

    /// A lazy map of `F` over the items of a fallible input up to its first error, which waits
    /// in a slot for the iterator to yield.
    fn try_lazy<'a, F: PoolTarget<(T,)>, T, E: 'a>(
        &self,
        items: impl Iterator<Item = std::result::Result<T, E>> + 'a,
        o: Options,
        ordered: bool,
    ) -> Result<TryIMapIterator<'a, F::Output, E>> {
        let slot: imap::ErrorSlot<E> = Default::default();
        let items = imap::UntilError::new(items, slot.clone()).map(|x| (x,));
        Ok(TryIMapIterator::new(self.lazy::<F, _>(items, o, ordered)?, slot))
    }

    /// A lazy, ordered [`map`](Self::map) (Python's `imap`): iterated (or
    /// [`submit`](MapCall::submit)ted for its [`IMapIterator`]), it reads the input as workers
    /// free up (an endless one works) and yields values in input order as soon as each is there.
    /// One item per task unless [`chunksize`](MapCall::chunksize) says otherwise.
    ///
    /// Read-ahead is bounded: at any time at most `(4 × processes + 16) × chunksize` items have
    /// been read from the input and not yet yielded (that many are read when it is submitted).
    /// For an input that can fail, see [`try_imap`](Self::try_imap).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// // An endless input: only what is asked for is computed.
    /// let firsts: Vec<u64> = pool.imap(|x: u64| x * 10, 0u64..).submit()?.take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, vec![0, 10, 20]);
    /// for (i, v) in pool.imap(|x: u64| x + 1, 0..10u64).chunksize(4).into_iter().enumerate() {
    ///     assert_eq!(v?, i as u64 + 1);
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<'p, F, I>(&'p self, f: F, items: I) -> MapCall<'p, I, IMapIterator<'p, F::Output>>
    where
        I: IntoIterator<IntoIter: 'p>,
        F: PoolTarget<(I::Item,)>,
    {
        MapCall::new(self, f, items, |pool, items, o| {
            pool.lazy::<F, _>(items.into_iter().map(|x| (x,)), o, true)
        })
    }

    /// Like [`imap`](Self::imap) but yields values in the order they finish (Python's
    /// `imap_unordered`).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// let mut got: Vec<u32> = pool.imap_unordered(|x: u32| x + 1, 0..10).submit()?.collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, (1..11).collect::<Vec<_>>());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<'p, F, I>(&'p self, f: F, items: I) -> MapCall<'p, I, IMapIterator<'p, F::Output>>
    where
        I: IntoIterator<IntoIter: 'p>,
        F: PoolTarget<(I::Item,)>,
    {
        MapCall::new(self, f, items, |pool, items, o| {
            pool.lazy::<F, _>(items.into_iter().map(|x| (x,)), o, false)
        })
    }

    /// [`imap`](Self::imap) over a fallible input (items `Result<T, E>`, such as lines read from
    /// a file): an `Err` from the input is yielded as [`ImapError::Input`] at its position, after
    /// the values of every item before it, and ends the iteration, as Python's `imap` raises the
    /// input's exception there. The input is not read past its first error (the items read
    /// before it go out as a last, shorter chunk); the pool stays usable. Read-ahead is bounded
    /// as for [`imap`](Self::imap).
    ///
    /// ```
    /// use multiproc::{ImapError, Pool};
    ///
    /// fn parse(s: &str) -> Result<u64, String> {
    ///     s.parse().map_err(|_| format!("not a number: {s:?}"))
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// let lines = ["1", "2", "x", "4"].into_iter().map(parse);
    /// let mut it = pool.try_imap(|n: u64| n * n, lines).submit()?;
    /// assert_eq!(it.next().unwrap().unwrap(), 1);
    /// assert_eq!(it.next().unwrap().unwrap(), 4);
    /// match it.next() {
    ///     Some(Err(ImapError::Input(e))) => assert_eq!(e, "not a number: \"x\""),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(it.next().is_none()); // "4" is never read
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_imap<'p, F, I, T, E>(
        &'p self,
        f: F,
        items: I,
    ) -> MapCall<'p, I, TryIMapIterator<'p, F::Output, E>>
    where
        I: IntoIterator<Item = std::result::Result<T, E>, IntoIter: 'p>,
        E: 'p,
        F: PoolTarget<(T,)>,
    {
        MapCall::new(self, f, items, |pool, items, o| pool.try_lazy::<F, _, _>(items.into_iter(), o, true))
    }

    /// [`imap_unordered`](Self::imap_unordered) over a fallible input: the input's first `Err`
    /// is yielded as [`ImapError::Input`] as soon as it is read, among the values of the items
    /// before it, which all still come; the input is not read past it. Read-ahead is bounded as
    /// for [`imap`](Self::imap).
    ///
    /// ```
    /// use multiproc::Pool;
    ///
    /// let pool = Pool::new(2)?;
    /// let input = (0..10u32).map(|i| if i == 6 { Err(i) } else { Ok(i) });
    /// let (mut values, mut errors) = (Vec::new(), Vec::new());
    /// for r in pool.try_imap_unordered(|x: u32| x + 100, input) {
    ///     match r {
    ///         Ok(v) => values.push(v),
    ///         Err(e) => errors.push(e.into_input()),
    ///     }
    /// }
    /// values.sort();
    /// assert_eq!(values, (100..106).collect::<Vec<_>>());
    /// assert_eq!(errors, vec![Some(6)]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_imap_unordered<'p, F, I, T, E>(
        &'p self,
        f: F,
        items: I,
    ) -> MapCall<'p, I, TryIMapIterator<'p, F::Output, E>>
    where
        I: IntoIterator<Item = std::result::Result<T, E>, IntoIter: 'p>,
        E: 'p,
        F: PoolTarget<(T,)>,
    {
        MapCall::new(self, f, items, |pool, items, o| pool.try_lazy::<F, _, _>(items.into_iter(), o, false))
    }

    /// Stops accepting tasks; the workers exit once the queued ones are done (Python's
    /// `close`). Open [`imap`](Self::imap) iterators may still read the rest of their input.
    pub fn close(&self) {
        self.shared.set_phase(Phase::Closed);
    }

    /// Stops the workers at once (SIGTERM, then SIGKILL after a short grace) and reaps them;
    /// unfinished tasks fail with [`TaskErrorKind::Terminated`] (Python's `terminate`). Returns
    /// once every worker is gone.
    pub fn terminate(&self) {
        self.shared.set_phase(Phase::Terminating);
        self.join_thread();
    }

    /// Waits for the workers to exit (Python's `join`); call [`close`](Self::close) or
    /// [`terminate`](Self::terminate) first, or it is an [`Error::InvalidState`], as Python
    /// raises `ValueError`. After `close`, this also waits for open [`imap`](Self::imap)
    /// iterators to be exhausted or dropped, since they may still read input.
    pub fn join(&self) -> Result<()> {
        if self.shared.phase() == Phase::Running {
            return Err(Error::invalid(
                "the pool is still running: call close() or terminate() before join()",
            ));
        }
        self.join_thread();
        Ok(())
    }

    fn join_thread(&self) {
        let handle = lock(&self.thread).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.phase() {
            Phase::Running => "RUN",
            Phase::Closed => "CLOSE",
            Phase::Terminating | Phase::Finished => "TERMINATE",
        };
        write!(f, "<Pool state={state} pool_size={}>", self.processes)
    }
}

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    #[test]
    fn default_chunksize_matches_python() {
        // chunksize, extra = divmod(len, processes * 4); if extra: chunksize += 1
        assert_eq!(default_chunksize(0, 2), 0);
        assert_eq!(default_chunksize(4, 2), 1);
        assert_eq!(default_chunksize(8, 2), 1);
        assert_eq!(default_chunksize(9, 2), 2);
        assert_eq!(default_chunksize(200_000, 2), 25_000);
        assert_eq!(default_chunksize(100, 3), 9);
    }
}
