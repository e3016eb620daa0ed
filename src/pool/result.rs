//! Results of pool tasks: [`AsyncResult`], for one call and (as [`MapResult`], an
//! `AsyncResult<Vec<R>>`) for a whole map, waitable with timeouts, with callbacks, and awaitable
//! as a `std::future::Future`.
//!
//! The dispatcher thread hands each finished task to its job through the [`Sink`] trait; the
//! job decodes the value and completes a [`Completion`], which wakes whatever waits on it:
//! parked threads, async tasks (their `Waker`), and hooks such as `as_completed`'s. The two jobs
//! ([`ApplyJob`] for one call, [`MapJob`] for the chunks of a map) differ only in how they get to
//! their value; a result sees either through [`Job`], so its methods are written once.

use crate::error::{Error, Result};
use crate::error::{TaskError, TaskErrorKind};
pub(crate) use crate::sync::lock;
use crate::wire;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Where the dispatcher delivers the outcome of each unit (task or chunk) of a job.
pub(crate) trait Sink: Send + Sync {
    /// Called when unit `index` is about to be sent to a worker; `false` drops it (cancelled).
    fn start(&self, _index: usize) -> bool {
        true
    }
    /// Cancels unit `index` if it has not started; whether it was cancelled.
    fn cancel(&self, _index: usize) -> bool {
        false
    }
    /// Whether unit `index` was cancelled (a queued one is then dropped, not run).
    fn cancelled(&self, _index: usize) -> bool {
        false
    }
    /// The outcome of unit `index`: its encoded value, or why there is none.
    fn complete(&self, index: usize, outcome: std::result::Result<&[u8], TaskError>);
}

type OkCallback<T> = Box<dyn FnOnce(&T) + Send>;
type ErrCallback = Box<dyn FnOnce(&TaskError) + Send>;

enum Waiter {
    Thread(Thread),
    Hook(Box<dyn FnOnce() + Send>),
}

struct Cell<T> {
    value: Option<std::result::Result<T, TaskError>>,
    success: Option<bool>,
    completing: bool,
    waiters: Vec<Waiter>,
    waker: Option<Waker>,
    on_ok: Vec<OkCallback<T>>,
    on_err: Vec<ErrCallback>,
}

/// A value that arrives once, with everything that waits for it.
pub(crate) struct Completion<T> {
    done: AtomicBool,
    cell: Mutex<Cell<T>>,
}

fn run_guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("multiproc: a pool {what} panicked; the panic was contained");
    }
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Self {
        Completion {
            done: AtomicBool::new(false),
            cell: Mutex::new(Cell {
                value: None,
                success: None,
                completing: false,
                waiters: Vec::new(),
                waker: None,
                on_ok: Vec::new(),
                on_err: Vec::new(),
            }),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Stores the outcome (the first one wins), runs the callbacks, then wakes the waiters, in
    /// Python's order.
    pub(crate) fn set(&self, value: std::result::Result<T, TaskError>) {
        {
            let mut c = lock(&self.cell);
            if c.completing || c.success.is_some() {
                return;
            }
            c.completing = true;
        }
        loop {
            let (oks, errs) = {
                let mut c = lock(&self.cell);
                if c.on_ok.is_empty() && c.on_err.is_empty() {
                    c.success = Some(value.is_ok());
                    c.value = Some(value);
                    c.completing = false;
                    self.done.store(true, Ordering::Release);
                    let waiters = std::mem::take(&mut c.waiters);
                    let waker = c.waker.take();
                    drop(c);
                    for w in waiters {
                        match w {
                            Waiter::Thread(t) => t.unpark(),
                            Waiter::Hook(h) => run_guarded("completion hook", h),
                        }
                    }
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return;
                }
                (std::mem::take(&mut c.on_ok), std::mem::take(&mut c.on_err))
            };
            match &value {
                Ok(v) => oks.into_iter().for_each(|cb| run_guarded("callback", || cb(v))),
                Err(e) => errs.into_iter().for_each(|cb| run_guarded("error callback", || cb(e))),
            }
        }
    }

    /// Registers callbacks; when the outcome is already there they run now, on this thread.
    pub(crate) fn callbacks(&self, on_ok: Option<OkCallback<T>>, on_err: Option<ErrCallback>) {
        let mut c = lock(&self.cell);
        if c.success.is_none() {
            c.on_ok.extend(on_ok);
            c.on_err.extend(on_err);
            return;
        }
        match &c.value {
            Some(Ok(v)) => {
                if let Some(cb) = on_ok {
                    run_guarded("callback", || cb(v));
                }
            }
            Some(Err(e)) => {
                if let Some(cb) = on_err {
                    run_guarded("error callback", || cb(e));
                }
            }
            None => {}
        }
    }

    /// Runs `hook` once the outcome is there (now, if it is).
    pub(crate) fn on_done(&self, hook: Box<dyn FnOnce() + Send>) {
        let mut c = lock(&self.cell);
        if c.success.is_none() {
            c.waiters.push(Waiter::Hook(hook));
            return;
        }
        drop(c);
        hook();
    }

    /// Waits until the outcome is there or `deadline` passes; whether it is there.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut registered = false;
        loop {
            if self.is_done() {
                return true;
            }
            if !registered {
                let mut c = lock(&self.cell);
                if c.success.is_some() {
                    return true;
                }
                c.waiters.push(Waiter::Thread(std::thread::current()));
                registered = true;
                continue;
            }
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return self.is_done();
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }

    /// Takes the outcome out (once it is there).
    pub(crate) fn take(&self) -> Result<T> {
        let mut c = lock(&self.cell);
        match c.value.take() {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(Error::Task(e)),
            None if c.success.is_some() => Err(Error::invalid("the result was already taken")),
            None => Err(Error::invalid("the result is not ready")),
        }
    }

    /// `Future::poll`: takes the outcome if there, else remembers the waker.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if !self.is_done() {
            let mut c = lock(&self.cell);
            if c.success.is_none() {
                match &c.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => c.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take())
    }

    /// The error, if the outcome is there and is one.
    pub(crate) fn error(&self) -> Option<TaskError> {
        lock(&self.cell).value.as_ref().and_then(|v| v.as_ref().err().cloned())
    }

    /// `Some(true)` if it succeeded, `Some(false)` if it failed, `None` while pending.
    pub(crate) fn success(&self) -> Option<bool> {
        if !self.is_done() {
            return None;
        }
        lock(&self.cell).success
    }
}

// ---- one call -----------------------------------------------------------------------------

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

/// The job behind an [`AsyncResult`]: one task.
pub(crate) struct ApplyJob<R> {
    state: AtomicU8,
    pub(crate) completion: Completion<R>,
}

impl<R> ApplyJob<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ApplyJob { state: AtomicU8::new(QUEUED), completion: Completion::new() })
    }

    /// Cancels the task unless it has started; whether it is cancelled now.
    pub(crate) fn try_cancel(&self) -> bool {
        match self.state.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.completion.set(Err(TaskError::new(
                    TaskErrorKind::Cancelled,
                    "the task was cancelled before it started",
                )));
                true
            }
            Err(state) => state == CANCELLED,
        }
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    pub(crate) fn started(&self) -> bool {
        self.state.load(Ordering::Acquire) == STARTED
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for ApplyJob<R> {
    fn start(&self, _index: usize) -> bool {
        match self.state.compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == STARTED,
        }
    }

    fn cancel(&self, _index: usize) -> bool {
        self.try_cancel()
    }

    fn cancelled(&self, _index: usize) -> bool {
        ApplyJob::cancelled(self)
    }

    fn complete(&self, _index: usize, outcome: std::result::Result<&[u8], TaskError>) {
        let value = outcome.and_then(|bytes| {
            wire::decode::<R>(bytes, Vec::new()).map_err(|e| {
                TaskError::new(TaskErrorKind::Codec, format!("cannot decode the task's value: {e}"))
            })
        });
        self.completion.set(value);
    }
}

// ---- a whole map --------------------------------------------------------------------------

struct Parts<R> {
    chunks: Vec<Option<Vec<R>>>,
    left: usize,
    failed: bool,
}

/// The job behind a [`MapResult`]: one unit per chunk.
pub(crate) struct MapJob<R> {
    parts: Mutex<Parts<R>>,
    pub(crate) completion: Completion<Vec<R>>,
    #[cfg(feature = "progress")]
    pub(crate) progress: Option<indicatif::ProgressBar>,
}

impl<R> MapJob<R> {
    pub(crate) fn new(chunks: usize) -> Arc<Self> {
        let job = MapJob {
            parts: Mutex::new(Parts {
                chunks: (0..chunks).map(|_| None).collect(),
                left: chunks,
                failed: false,
            }),
            completion: Completion::new(),
            #[cfg(feature = "progress")]
            progress: None,
        };
        if chunks == 0 {
            job.completion.set(Ok(Vec::new()));
        }
        Arc::new(job)
    }

    #[cfg(feature = "progress")]
    pub(crate) fn with_progress(chunks: usize, bar: indicatif::ProgressBar) -> Arc<Self> {
        let mut job = Arc::into_inner(Self::new(chunks)).expect("fresh");
        if chunks == 0 {
            bar.finish();
        }
        job.progress = Some(bar);
        Arc::new(job)
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for MapJob<R> {
    fn complete(&self, index: usize, outcome: std::result::Result<&[u8], TaskError>) {
        let decoded = outcome.and_then(|bytes| {
            wire::decode::<Vec<R>>(bytes, Vec::new()).map_err(|e| {
                TaskError::new(TaskErrorKind::Codec, format!("cannot decode a chunk's values: {e}"))
            })
        });
        let mut parts = lock(&self.parts);
        if parts.failed || parts.chunks[index].is_some() {
            return;
        }
        match decoded {
            Err(e) => {
                parts.failed = true;
                drop(parts);
                #[cfg(feature = "progress")]
                if let Some(bar) = &self.progress {
                    bar.abandon();
                }
                self.completion.set(Err(e));
            }
            Ok(values) => {
                #[cfg(feature = "progress")]
                if let Some(bar) = &self.progress {
                    bar.inc(values.len() as u64);
                }
                parts.chunks[index] = Some(values);
                parts.left -= 1;
                if parts.left == 0 {
                    let chunks = std::mem::take(&mut parts.chunks);
                    drop(parts);
                    let total = chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum();
                    let mut all = Vec::with_capacity(total);
                    for c in chunks.into_iter().flatten() {
                        all.extend(c);
                    }
                    #[cfg(feature = "progress")]
                    if let Some(bar) = &self.progress {
                        bar.finish();
                    }
                    self.completion.set(Ok(all));
                }
            }
        }
    }
}

// ---- the result -----------------------------------------------------------------------------

/// A job as its result sees it: the completion its value arrives in.
pub(crate) trait Job<T>: Send + Sync {
    fn completion(&self) -> &Completion<T>;
}

impl<R: Send> Job<R> for ApplyJob<R> {
    fn completion(&self) -> &Completion<R> {
        &self.completion
    }
}

impl<R: Send> Job<Vec<R>> for MapJob<R> {
    fn completion(&self) -> &Completion<Vec<R>> {
        &self.completion
    }
}

/// The pending result of a pool task (Python's `AsyncResult`): of one call
/// ([`Pool::apply_async`](crate::Pool::apply_async)), or, as [`MapResult<R>`] (an
/// `AsyncResult<Vec<R>>`), of a whole map ([`Pool::map_async`](crate::Pool::map_async),
/// [`MapCall::submit`](crate::MapCall::submit)). Wait for it, poll it, attach callbacks, or
/// `.await` it.
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(square, (12,))?;
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful()?, true);
/// assert_eq!(r.get()?, 144);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct AsyncResult<T> {
    job: Arc<dyn Job<T>>,
}

/// The pending result of a whole map (Python's `MapResult`): all values in input order, or the
/// first error. Ready as soon as any chunk fails, as in Python.
///
/// ```
/// use multiproc::Pool;
///
/// let pool = Pool::new(2)?;
/// let r = pool.map_async(|x: i32| x + 1, vec![1, 2, 3])?;
/// r.callback(|values| assert_eq!(values.len(), 3));
/// assert_eq!(r.get()?, vec![2, 3, 4]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub type MapResult<R> = AsyncResult<Vec<R>>;

impl<T> AsyncResult<T> {
    pub(crate) fn new(job: Arc<dyn Job<T>>) -> Self {
        AsyncResult { job }
    }

    fn completion(&self) -> &Completion<T> {
        self.job.completion()
    }

    /// Waits for the value (Python's `get()`). A task that panicked, whose worker died, that
    /// timed out or was cancelled gives [`Error::Task`]; for a map, the first chunk that failed.
    pub fn get(self) -> Result<T> {
        self.completion().wait_until(None);
        self.completion().take()
    }

    /// Waits at most `timeout` for the value (Python's `get(timeout)`): [`Error::Timeout`] if it
    /// is not there yet, and the result stays usable. The value is taken out: a later call
    /// reports [`Error::InvalidState`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if !self.wait_timeout(timeout) {
            return Err(Error::Timeout);
        }
        self.completion().take()
    }

    /// Waits until the result is there (Python's `wait()`): for a map, until every chunk is done
    /// or one failed.
    pub fn wait(&self) {
        self.completion().wait_until(None);
    }

    /// Waits at most `timeout` (Python's `wait(timeout)`); whether the result is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.completion().wait_until(crate::sys::deadline_after(Some(timeout)))
    }

    /// Whether the result is there (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.completion().is_done()
    }

    /// Whether the task (for a map, every chunk) succeeded (Python's `successful()`);
    /// [`Error::InvalidState`] while it is not ready, as Python raises `ValueError`.
    pub fn successful(&self) -> Result<bool> {
        self.completion().success().ok_or_else(|| Error::invalid("the result is not ready"))
    }

    /// Calls `callback` with the value when the task succeeds (Python's `callback=`); for a map,
    /// with all its values. It runs on the pool's dispatcher thread, or right here if the result
    /// is already there; it should be quick and must not wait on this same result.
    pub fn callback(&self, callback: impl FnOnce(&T) + Send + 'static) -> &Self {
        self.completion().callbacks(Some(Box::new(callback)), None);
        self
    }

    /// Calls `callback` with the error when the task fails (Python's `error_callback=`); for a
    /// map, with the first error. Runs where [`callback`](Self::callback) runs.
    pub fn error_callback(&self, callback: impl FnOnce(&TaskError) + Send + 'static) -> &Self {
        self.completion().callbacks(None, Some(Box::new(callback)));
        self
    }
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.completion().poll_take(cx)
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}
