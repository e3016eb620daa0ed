//! Process pools: [`Pool`] (Python's `multiprocessing.Pool`) and [`Executor`] (Python's
//! `concurrent.futures.ProcessPoolExecutor`).
//!
//! A pool starts `processes` worker processes that run a loop: read tasks, run them, send
//! results. A task names its function by offset (see `process/target.rs`), so one pool runs any
//! fn item or non-capturing closure of the program; arguments and values are serde values.
//!
//! Rooms:
//! - `mod.rs`: the facade, [`Pool`] and [`PoolBuilder`].
//! - `result.rs`: [`AsyncResult`], [`MapResult`] and the completion they share.
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
pub use executor::{as_completed, AsCompleted, Executor, ExecutorBuilder, OnDrop, PoolFuture, Shutdown};
pub use imap::{IMapIterator, ImapError, TryIMapIterator};
pub use result::{AsyncResult, MapResult};

use crate::error::{Error, Result};
use crate::process::StartMethod;
use crate::sys;
use crate::target::{self, EntryOffset, Target};
use crate::wire;
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
    let per = processes * 4;
    len / per + usize::from(len % per != 0)
}

fn check_chunksize(chunksize: usize) -> Result<usize> {
    if chunksize == 0 {
        return Err(Error::invalid("chunksize must be 1 or more, not 0"));
    }
    Ok(chunksize)
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
/// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
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
/// let _ = pool.map(move |x: u64| x * k, 0..5);
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

    fn task<A: Serialize + ?Sized>(
        &self,
        entry: EntryOffset,
        args: &A,
        sink: Arc<dyn Sink>,
        index: usize,
    ) -> Result<Task> {
        let id = self.shared.next_id();
        Ok(Task::new(id, entry, protocol::task_frame(id, entry, args)?, sink, index))
    }

    /// Calls `f(args...)` in a worker and waits for the value (Python's `apply`).
    pub fn apply<F, A>(&self, f: F, args: A) -> Result<F::Output>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Calls `f(args...)` in a worker; the value comes later through the [`AsyncResult`]
    /// (Python's `apply_async`).
    pub fn apply_async<F, A>(&self, f: F, args: A) -> Result<AsyncResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        Ok(self.apply_tracked(f, args)?.0)
    }

    /// [`apply_async`](Self::apply_async), also giving the task's id.
    pub(crate) fn apply_tracked<F, A>(&self, f: F, args: A) -> Result<(AsyncResult<F::Output>, u64)>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let job = ApplyJob::<F::Output>::new();
        let task = self.task(EntryOffset::of_call(entry::apply_entry::<F, A>), &args, job.clone(), 0)?;
        let id = task.id;
        self.shared.submit([task], false)?;
        Ok((AsyncResult { job }, id))
    }

    fn starmap_job<F, A>(&self, items: Vec<A>, chunksize: Option<usize>) -> Result<MapResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        let chunksize = match chunksize {
            Some(c) => check_chunksize(c)?,
            None => default_chunksize(items.len(), self.processes).max(1),
        };
        let chunks = items.len().div_ceil(chunksize);
        let job = MapJob::<F::Output>::new(chunks);
        self.submit_chunks::<F, A>(&items, chunksize, job.clone())?;
        Ok(MapResult { job })
    }

    fn submit_chunks<F, A>(&self, items: &[A], chunksize: usize, sink: Arc<dyn Sink>) -> Result<()>
    where
        F: Target<A>,
        F::Output: Serialize,
        A: Serialize + DeserializeOwned,
    {
        let entry = EntryOffset::of_call(entry::chunk_entry::<F, A>);
        let tasks = items
            .chunks(chunksize)
            .enumerate()
            .map(|(i, chunk)| self.task(entry, chunk, sink.clone(), i))
            .collect::<Result<Vec<_>>>()?;
        if !tasks.is_empty() {
            self.shared.submit(tasks, false)?;
        }
        Ok(())
    }

    /// Calls `f` on every item, in chunks spread over the workers, and returns the values in
    /// input order (Python's `map`). The chunk size is Python's default: about four chunks per
    /// worker. The first failing chunk's error is returned.
    pub fn map<F, T, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.map_async(f, iterable)?.get()
    }

    /// [`map`](Self::map) with chunks of `chunksize` items (Python's `map(f, it, chunksize)`).
    pub fn map_chunked<F, T, I>(&self, f: F, iterable: I, chunksize: usize) -> Result<Vec<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        self.map_async_chunked(f, iterable, chunksize)?.get()
    }

    /// [`map`](Self::map) without waiting: the values come through the [`MapResult`] (Python's
    /// `map_async`).
    pub fn map_async<F, T, I>(&self, f: F, iterable: I) -> Result<MapResult<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        self.starmap_job::<F, (T,)>(iterable.into_iter().map(|x| (x,)).collect(), None)
    }

    /// [`map_async`](Self::map_async) with chunks of `chunksize` items.
    pub fn map_async_chunked<F, T, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        self.starmap_job::<F, (T,)>(iterable.into_iter().map(|x| (x,)).collect(), Some(chunksize))
    }

    /// Like [`map`](Self::map) with each item a tuple of arguments (Python's `starmap`):
    /// `starmap(f, [(1, 2), (3, 4)])` computes `[f(1, 2), f(3, 4)]`.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// let sums = pool.starmap(|a: u32, b: u32| a + b, vec![(1, 2), (3, 4)])?;
    /// assert_eq!(sums, vec![3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.starmap_async(f, iterable)?.get()
    }

    /// [`starmap`](Self::starmap) with chunks of `chunksize` items.
    pub fn starmap_chunked<F, A, I>(&self, f: F, iterable: I, chunksize: usize) -> Result<Vec<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.starmap_async_chunked(f, iterable, chunksize)?.get()
    }

    /// [`starmap`](Self::starmap) without waiting (Python's `starmap_async`).
    pub fn starmap_async<F, A, I>(&self, f: F, iterable: I) -> Result<MapResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        self.starmap_job::<F, A>(iterable.into_iter().collect(), None)
    }

    /// [`starmap_async`](Self::starmap_async) with chunks of `chunksize` items.
    pub fn starmap_async_chunked<F, A, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<MapResult<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        A: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        self.starmap_job::<F, A>(iterable.into_iter().collect(), Some(chunksize))
    }

    /// The feed of an imap: chunks of `chunksize` argument tuples taken from `items` on demand.
    fn feed<'a, F, A>(&self, items: impl Iterator<Item = A> + 'a, chunksize: usize) -> imap::Feed<'a>
    where
        F: Target<A>,
        F::Output: Serialize,
        A: Serialize + DeserializeOwned + 'a,
    {
        let shared = self.shared.clone();
        let entry = EntryOffset::of_call(entry::chunk_entry::<F, A>);
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
            Some(protocol::task_frame(id, entry, &chunk).map(|f| Task::new(id, entry, f, sink.clone(), i)))
        })
    }

    fn imap_window(&self) -> usize {
        4 * self.processes + 16
    }

    /// A lazy, ordered [`map`](Self::map) (Python's `imap`): the input is read as workers free
    /// up (an endless one works) and values are yielded in input order as soon as each is
    /// there. One item per task; see [`imap_chunked`](Self::imap_chunked).
    ///
    /// Read-ahead is bounded: at any time at most `(4 × processes + 16) × chunksize` items have
    /// been read from the input and not yet yielded (that many are read when the iterator is
    /// made). For an input that can fail, see [`try_imap`](Self::try_imap).
    pub fn imap<'a, F, T, I>(&'a self, f: F, iterable: I) -> Result<IMapIterator<'a, F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'a,
    {
        self.imap_chunked(f, iterable, 1)
    }

    /// [`imap`](Self::imap) with chunks of `chunksize` items per task.
    pub fn imap_chunked<'a, F, T, I>(
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
        self.imap_with(f, iterable, chunksize, true)
    }

    /// Like [`imap`](Self::imap) but yields values in the order they finish (Python's
    /// `imap_unordered`).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2)?;
    /// let mut got: Vec<u32> = pool.imap_unordered(|x: u32| x + 1, 0..10)?.collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, (1..11).collect::<Vec<_>>());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<'a, F, T, I>(&'a self, f: F, iterable: I) -> Result<IMapIterator<'a, F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        I: IntoIterator<Item = T>,
        I::IntoIter: 'a,
    {
        self.imap_unordered_chunked(f, iterable, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with chunks of `chunksize` items per task.
    pub fn imap_unordered_chunked<'a, F, T, I>(
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
        self.imap_with(f, iterable, chunksize, false)
    }

    /// The lazy map behind `imap` (`ordered`) and `imap_unordered`.
    fn imap_with<'a, F, T, I>(
        &'a self,
        f: F,
        iterable: I,
        chunksize: usize,
        ordered: bool,
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
        let feed = self.feed::<F, (T,)>(iterable.into_iter().map(|x| (x,)), check_chunksize(chunksize)?);
        IMapIterator::new(self.shared.clone(), feed, ordered, self.imap_window())
    }

    /// [`imap`](Self::imap) over a fallible input (items `Result<T, E>`, such as lines read from
    /// a file): an `Err` from the input is yielded as [`ImapError::Input`] at its position, after
    /// the values of every item before it, and ends the iteration, as Python's `imap` raises the
    /// input's exception there. The input is not read past its first error; the pool stays
    /// usable. Read-ahead is bounded as for [`imap`](Self::imap): at most
    /// `(4 × processes + 16) × chunksize` items read and not yet yielded.
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
    /// let mut it = pool.try_imap(|n: u64| n * n, lines)?;
    /// assert_eq!(it.next().unwrap().unwrap(), 1);
    /// assert_eq!(it.next().unwrap().unwrap(), 4);
    /// match it.next() {
    ///     Some(Err(ImapError::Input(e))) => assert_eq!(e, "not a number: \"x\""),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(it.next().is_none()); // "4" is never read
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_imap<'a, F, T, E, I>(&'a self, f: F, iterable: I) -> Result<TryIMapIterator<'a, F::Output, E>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        E: 'a,
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        self.try_imap_with(f, iterable, 1, true)
    }

    /// [`try_imap`](Self::try_imap) with chunks of `chunksize` items per task; the items read
    /// before an error go out as a last, shorter chunk.
    pub fn try_imap_chunked<'a, F, T, E, I>(
        &'a self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<TryIMapIterator<'a, F::Output, E>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        E: 'a,
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        self.try_imap_with(f, iterable, chunksize, true)
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
    /// for r in pool.try_imap_unordered(|x: u32| x + 100, input)? {
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
    pub fn try_imap_unordered<'a, F, T, E, I>(
        &'a self,
        f: F,
        iterable: I,
    ) -> Result<TryIMapIterator<'a, F::Output, E>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        E: 'a,
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        self.try_imap_with(f, iterable, 1, false)
    }

    /// [`try_imap_unordered`](Self::try_imap_unordered) with chunks of `chunksize` items per
    /// task.
    pub fn try_imap_unordered_chunked<'a, F, T, E, I>(
        &'a self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<TryIMapIterator<'a, F::Output, E>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        E: 'a,
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        self.try_imap_with(f, iterable, chunksize, false)
    }

    /// The lazy map behind the `try_imap` family: the input up to its first error, which waits in
    /// a slot for the iterator to yield.
    fn try_imap_with<'a, F, T, E, I>(
        &'a self,
        f: F,
        iterable: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<TryIMapIterator<'a, F::Output, E>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned + 'a,
        E: 'a,
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let chunksize = check_chunksize(chunksize)?;
        let slot: imap::ErrorSlot<E> = Default::default();
        let items = imap::UntilError::new(iterable.into_iter(), slot.clone()).map(|x| (x,));
        let feed = self.feed::<F, (T,)>(items, chunksize);
        let inner = IMapIterator::new(self.shared.clone(), feed, ordered, self.imap_window())?;
        Ok(TryIMapIterator::new(inner, slot))
    }

    /// [`map`](Self::map) with a progress bar on stderr that advances as chunks finish, as
    /// mpire's `progress_bar=True` does (cargo feature `progress`).
    #[cfg(feature = "progress")]
    pub fn map_progress<F, T, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>>
    where
        F: Target<(T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let items: Vec<(T,)> = iterable.into_iter().map(|x| (x,)).collect();
        let chunksize = default_chunksize(items.len(), self.processes).max(1);
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let job = MapJob::<F::Output>::with_progress(items.len().div_ceil(chunksize), bar.clone());
        self.submit_chunks::<F, (T,)>(&items, chunksize, job.clone())?;
        let values = MapResult { job }.get();
        bar.finish();
        values
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
