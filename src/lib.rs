//! Python's `multiprocessing` for Rust: real processes that run Rust functions, with pipes,
//! queues, process-shared locks and memory between them.
//!
//! ```
//! use multiprocessing::{Pipe, Process, Connection};
//!
//! fn square(n: u64) {
//!     println!("The Square is {}", n * n);
//! }
//!
//! fn echo(conn: Connection) -> multiprocessing::Result<()> {
//!     let v: String = conn.recv()?;
//!     conn.send(&v.to_uppercase())
//! }
//!
//! # fn main() -> multiprocessing::Result<()> {
//! let p = Process::new(square, (5,)).name("sq").start()?;
//! assert_eq!(p.join()?.exitcode(), 0);
//!
//! let (parent, child) = Pipe::new(true)?;
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
#![deny(unsafe_op_in_unsafe_fn, unreachable_pub, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod error;
#[macro_use]
mod sys;
pub mod connection;
mod logging;
mod pool;
mod process;
mod queue;
mod shared_memory;
mod sync;
mod wire;

#[doc(hidden)]
pub mod fuzzing;

pub use connection::{Connection, Pipe};
pub use error::{ChildError, ChildFailure, Error, Result};
pub use logging::log_to_stderr;
pub use pool::{
    as_completed, AsCompleted, AsyncResult, Executor, ExecutorBuilder, IMapIterator, MapResult, Pool,
    PoolBuilder, PoolFuture, TaskError, TaskErrorKind,
};
pub use process::{
    active_children, cpu_count, current_process, get_all_start_methods, get_context, get_start_method,
    parent_process, set_start_method, spawn, Context, CurrentProcess, ExitStatus, JoinHandle, ParentProcess,
    Process, ProcessOutput, StartMethod, Target,
};
pub use queue::{
    Bytes, GetError, JoinableQueue, PutError, Queue, SimpleQueue, TaskDoneError, DEFAULT_RING_BYTES,
};
pub use shared_memory::{Array, Pod, SharedMemory, Value};
pub use sync::{
    Barrier, BoundedSemaphore, BoundedSemaphoreGuard, BrokenBarrier, Condition, Event, Lock, LockGuard,
    LockResult, OwnerDied, RLock, RLockGuard, Semaphore, SemaphoreGuard,
};
