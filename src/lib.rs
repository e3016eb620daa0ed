//! Python's `multiprocessing` for Rust: real processes that run Rust functions, with pipes,
//! queues, process-shared locks and memory between them.
//!
//! ```
//! use multiproc::{Pipe, Process, Connection};
//!
//! fn square(n: u64) {
//!     println!("The Square is {}", n * n);
//! }
//!
//! fn echo(conn: Connection) -> multiproc::Result<()> {
//!     let v: String = conn.recv()?;
//!     conn.send(&v.to_uppercase())
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! let p = Process::builder(square, (5,)).name("sq").start()?;
//! assert_eq!(p.join()?.exitcode(), 0);
//!
//! let (parent, child) = Pipe::duplex()?;
//! let p = Process::new(echo, (child,)).start()?;
//! parent.send(&"hello".to_string())?;
//! assert_eq!(parent.recv::<String>()?, "HELLO");
//! p.join()?;
//! # Ok(())
//! # }
//! ```
//!
//! Children start with one of three [`StartMethod`]s (`Forkserver` by default). No call is
//! needed in `main`: a re-executed child is intercepted before `main` runs.
//!
//! A target is a fn item or a closure that captures nothing (see [`Target`]); state it needs
//! goes as a serde context with [`partial`], [`Process::with_context`] or [`Pool::map_with`].
//!
//! # From Python's names
//!
//! | Python `multiprocessing` | Rust |
//! |---|---|
//! | `Process(target=f, args=a)`, `.start()`, `.join()`, `.sentinel` | [`Process::new`], [`Process::start`], [`Process::join`], [`Process::sentinel`] |
//! | `Process(target=f, args=a, name=n, daemon=d)` | [`Process::builder`]: `Process::builder(f, a).name(n).daemon(d).build()` ([`ProcessBuilder`]; `.start()?` builds and starts) |
//! | `p.name`, `p.name = n`, `p.daemon`, `p.daemon = d` | [`Process::name`], [`Process::set_name`], [`Process::daemon`], [`Process::set_daemon`] |
//! | `p.pid`, `p.exitcode`, `p.is_alive()`, `p.terminate()`, `p.kill()`, `p.close()` | [`Process::pid`], [`Process::exitcode`], [`Process::is_alive`], [`Process::terminate`], [`Process::kill`], [`Process::close`] |
//! | `get_context(m).Process(...)` | [`Context::process`], [`Context::process_builder`] |
//! | `class W(Process): def run(self)` | [`Run`], [`Process::from_run`], [`ProcessBuilder::from_run`] |
//! | `functools.partial(f, ctx)` as a target | [`partial`], [`Partial`], [`Process::with_context`], [`ProcessBuilder::with_context`] |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`] |
//! | `get_context()`, `set_start_method(m)`, `set_start_method(m, force=True)`, `get_start_method()` | [`get_context`], [`set_start_method`], [`force_start_method`], [`get_start_method`] |
//! | (a thread's `join()` value, across processes) | [`spawn`], [`JoinHandle`] |
//! | `Pipe()`, `Pipe(duplex=False)`, `Connection` | [`Pipe::duplex`], [`Pipe::one_way`], [`Connection`] |
//! | `connection.Listener`, `Client`, `wait` | [`connection::Listener`], [`connection::Client`], [`connection::wait`] |
//! | `Queue`, `SimpleQueue`, `JoinableQueue` | [`Queue`], [`SimpleQueue`], [`JoinableQueue`] |
//! | `queue.Empty`, `queue.Full` | [`TryGetError::Empty`], [`TryPutError::Full`]; a timed-out `get(timeout=t)` / `put(obj, timeout=t)`: [`GetTimeoutError::Timeout`], [`PutTimeoutError::Timeout`] |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`] |
//! | `Condition`, `Event`, `Barrier`, `BrokenBarrierError` | [`Condition`], [`Event`], [`Barrier`], [`BrokenBarrier`] |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] |
//! | `shared_memory.SharedMemory` | [`SharedMemory`] |
//! | `Pool`, `.apply`, `.apply_async` | [`Pool`], [`Pool::apply`], [`Pool::apply_async`] |
//! | `.map(f, it)`, `.starmap(f, it)` | [`Pool::map`], [`Pool::starmap`]: `pool.map(f, it).get()?` |
//! | `.map(f, it, chunksize=n)` (any of the maps) | [`MapCall::chunksize`]: `pool.map(f, it).chunksize(n).get()?` |
//! | `.map_async`, `.starmap_async` | [`Pool::map_async`], [`Pool::starmap_async`], or [`MapCall::submit`] |
//! | `.imap`, `.imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`]: `for v in pool.imap(f, it)`; [`Pool::try_imap`] over a fallible input |
//! | `pool.map(partial(f, ctx), items)` | [`Pool::map_with`] |
//! | `AsyncResult`, `MapResult` | [`AsyncResult`], [`MapResult`] (an `AsyncResult<Vec<R>>`) |
//! | `concurrent.futures.ProcessPoolExecutor`, `.submit`, `.map`, `as_completed`, `.shutdown(wait, cancel_futures)` | [`Executor`], [`Executor::submit`], [`Executor::map`], [`as_completed`], [`Executor::shutdown`], [`Executor::shutdown_with`] ([`Shutdown`]) |
//! | `Manager()`, `BaseManager.register` | [`Manager`], [`register`] |
//! | `manager.list()`, `.dict()`, `.Namespace()`, `.Queue()`, `.Lock()` | [`Manager::list`], [`Manager::dict`], [`Manager::namespace`], [`Manager::queue`], [`Manager::lock`] |
//! | `BaseProxy`, `RemoteError` | [`manager::BaseProxy`], [`manager::RemoteError`] |
//! | `ProcessError`, `AuthenticationError`, `TimeoutError` | [`Error`] ([`Error::Authentication`], [`Error::Timeout`]), [`ChildError`] |
//! | `log_to_stderr()` | [`log_to_stderr`] |
#![deny(unsafe_op_in_unsafe_fn, unreachable_pub, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "tokio")]
mod aio;
mod error;
#[macro_use]
mod sys;
pub mod connection;
mod logging;
pub mod manager;
mod mem;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
mod process;
mod queue;
#[cfg(feature = "redis")]
pub mod redis;
mod shared_memory;
mod sync;
mod target;
mod wire;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(all(test, loom))]
mod loom_models;

#[cfg(feature = "tokio")]
pub use aio::sink::{ItemSink, MessageSink};
#[cfg(feature = "tokio")]
pub use aio::stream::{ImapStream, Items, Messages};
pub use connection::{Connection, Pipe};
pub use error::{ChildError, ChildFailure, Error, Result};
/// The stream trait the async adapters implement (`futures_core::Stream`).
#[cfg(feature = "tokio")]
pub use futures_core::Stream;
/// The sink trait the async adapters implement (`futures_sink::Sink`).
#[cfg(feature = "tokio")]
pub use futures_sink::Sink;
pub use logging::log_to_stderr;
pub use manager::Manager;
/// Registers a type with the managers of this program and generates its proxy (Python's
/// `BaseManager.register(typeid, callable)`), as an attribute on the type's `impl` block.
///
/// The server keeps the object; the generated `TypeProxy` (or `#[register(proxy = "Name")]`)
/// has one method per `pub` method of the block, with the same name and parameters, returning
/// `multiproc::Result<R>` of the method's `R`. `pub` associated functions returning `Self`
/// become constructors that take the [`Manager`] first. Methods taking `&self` run concurrently
/// in the server, `&mut self` ones one at a time. Parameters and results must be serde types;
/// `&str`, `&[T]` and `&T` parameters are accepted. The type id defaults to the type's name
/// (`#[register(typeid = "...")]` to choose), and a remote client's program must register the
/// same type under the same id.
///
/// ```
/// use multiproc::{Manager, Process};
///
/// pub struct Counter {
///     value: i64,
/// }
///
/// #[multiproc::register]
/// impl Counter {
///     pub fn new(start: i64) -> Self {
///         Counter { value: start }
///     }
///     pub fn add(&mut self, n: i64) -> i64 {
///         self.value += n;
///         self.value
///     }
///     pub fn get(&self) -> i64 {
///         self.value
///     }
/// }
///
/// fn work(c: CounterProxy) -> i64 {
///     c.add(10).expect("the manager is running")
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let manager = Manager::start()?;
/// let c = CounterProxy::new(&manager, 5)?;
/// assert_eq!(c.add(1)?, 6);
/// assert_eq!(multiproc::spawn(work, (c.clone(),))?.join()?, 16);
/// assert_eq!(c.get()?, 16);
/// # Ok(())
/// # }
/// ```
pub use multiproc_macros::register;
pub use pool::{
    as_completed, AsCompleted, AsyncResult, Executor, ExecutorBuilder, IMapIterator, ImapError, MapCall,
    MapResult, OnDrop, Pool, PoolBuilder, PoolFuture, PoolTarget, Shutdown, TaskError, TaskErrorKind,
    TaskValue, TryIMapIterator,
};
pub use process::{
    active_children, cpu_count, current_process, force_start_method, get_all_start_methods, get_context,
    get_start_method, parent_process, partial, set_start_method, spawn, Context, ContextTarget,
    CurrentProcess, ExitStatus, JoinHandle, ParentProcess, Partial, Process, ProcessBuilder, ProcessOutput,
    RunProcess as Run, StartMethod, Target,
};
pub use queue::{
    Bytes, GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, SimpleQueue,
    TaskDoneError, TryGetError, TryPutError, DEFAULT_RING_BYTES,
};
pub use shared_memory::{Array, ArrayGuard, Pod, RawArray, RawValue, SharedMemory, Value, ValueGuard};
pub use sync::{
    Barrier, BarrierBuilder, BoundedSemaphore, BoundedSemaphoreGuard, BrokenBarrier, Condition, Event, Lock,
    LockGuard, LockResult, OwnerDied, RLock, RLockGuard, Semaphore, SemaphoreGuard,
};

/// What the code generated by [`register`] refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::manager::__private::*;
    pub use linkme;
    pub use serde;
}
