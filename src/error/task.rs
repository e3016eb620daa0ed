//! `TaskError`: why a pool task has no value.
//!
//! One opaque struct with a [`kind`](TaskError::kind) to match on and a message that says what
//! and where ("worker pid 4242 killed by SIGKILL while running task 17"). Python raises the
//! task's exception in the caller; a Rust task cannot throw, so its panic arrives here, and so
//! do the failures Python's `Pool` hangs on: a worker that dies, a task over its deadline.
//!
//! Defined here, below every room, so that [`Error`](crate::Error) can hold it without the error
//! type importing the pool; the pool re-exports it where users look for it.

use std::fmt;

/// What kind of failure a [`TaskError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskErrorKind {
    /// The task panicked; the message is the panic's (Python: the exception the task raised).
    Panicked,
    /// The worker running the task died (killed by a signal, or exited); it was replaced.
    WorkerDied,
    /// The task ran longer than the pool's `task_timeout`; its worker was killed and replaced.
    TimedOut,
    /// The task was cancelled before it started (`PoolFuture::cancel`, `shutdown` with
    /// `cancel_futures`); Python's `CancelledError`.
    Cancelled,
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// The pool cannot run tasks: a worker's initializer failed (Python's `BrokenProcessPool`).
    Broken,
    /// The arguments or the value could not be encoded or decoded.
    Codec,
}

/// Why a task submitted to a [`Pool`](crate::Pool) or [`Executor`](crate::Executor) has no
/// value. Reported as [`Error::Task`](crate::Error::Task).
///
/// ```
/// use multiproc::{Error, Pool, TaskErrorKind};
///
/// fn check(n: u32) -> u32 {
///     assert!(n < 3, "{n} is too big");
///     n
/// }
///
/// let pool = Pool::new(1)?;
/// match pool.apply(check, (7,)) {
///     Err(Error::Task(e)) => {
///         assert_eq!(e.kind(), TaskErrorKind::Panicked);
///         assert!(e.message().contains("7 is too big"));
///     }
///     other => panic!("expected a panic, got {other:?}"),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
    task: Option<u64>,
    pid: Option<i32>,
}

impl TaskError {
    pub(crate) fn new(kind: TaskErrorKind, message: impl Into<String>) -> Self {
        TaskError { kind, message: message.into(), task: None, pid: None }
    }

    pub(crate) fn at(mut self, task: u64, pid: Option<i32>) -> Self {
        self.task = Some(task);
        self.pid = pid;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TaskErrorKind {
        self.kind
    }

    /// The panic message, or a sentence saying what happened and where.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The pool's number for the task (or chunk) that failed, when one was assigned.
    pub fn task(&self) -> Option<u64> {
        self.task
    }

    /// The pid of the worker that ran the task, when one did.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TaskErrorKind::Panicked => {
                write!(f, "task")?;
                if let Some(t) = self.task {
                    write!(f, " {t}")?;
                }
                if let Some(p) = self.pid {
                    write!(f, " (worker pid {p})")?;
                }
                write!(f, " panicked: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TaskError {}
