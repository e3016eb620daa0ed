//! The crate's error type.

mod remote;
mod task;

pub use remote::{RemoteError, RemoteErrorKind};
pub use task::{TaskError, TaskErrorKind};

use std::fmt;
use std::io;

/// What went wrong in a `multiproc` call.
///
/// Timeouts, end-of-file, closed handles and misuse are distinct, matchable cases; an
/// operating-system failure keeps its `io::Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the library was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer closed its end: nothing more will arrive (Python's `EOFError`).
    #[error("end of file: the peer closed the connection")]
    Eof,
    /// The handle was closed with `close()` (Python's `ValueError`/`OSError` on closed objects).
    #[error("{0} is closed")]
    Closed(&'static str),
    /// A blocking call reached its timeout.
    #[error("timed out")]
    Timeout,
    /// A value could not be encoded for sending.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// Bytes that arrived could not be decoded as the expected type.
    #[error("cannot decode value: {0}")]
    Decode(String),
    /// A message is larger than the receiver accepts; its bytes were discarded unread.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Announced length.
        len: u64,
        /// The receiver's limit.
        max: u64,
    },
    /// The buffer given to `recv_bytes_into` is too small; the whole message is handed back
    /// (Python's `BufferTooShort`).
    #[error("buffer too short for a message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// A call that is not allowed in the object's current state (Python's `ValueError` or
    /// `AssertionError` on misuse), with what was wrong.
    #[error("{0}")]
    InvalidState(String),
    /// A child process ended without producing its result.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// A pool task has no value: it panicked, its worker died, it timed out or was cancelled,
    /// or the pool was terminated first.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A queue had no item to give now (Python's `queue.Empty`): a `get_nowait`'s
    /// [`TryGetError::Empty`](crate::TryGetError::Empty). A timed-out `get_timeout`
    /// converts to [`Timeout`](Error::Timeout).
    #[error("the queue is empty")]
    Empty,
    /// A bounded queue had no room now (Python's `queue.Full`): a `put_nowait`'s
    /// [`TryPutError::Full`](crate::TryPutError::Full), whose item was dropped in the conversion.
    /// A timed-out `put_timeout` converts to [`Timeout`](Error::Timeout).
    #[error("the queue is full")]
    Full,
    /// The peer of a [`Listener`](crate::connection::Listener) or
    /// [`Client`](crate::connection::Client) does not hold the same `authkey`, or broke the
    /// handshake (Python's `AuthenticationError`).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// A manager's server refused a call or the method raised an error there (Python
    /// re-raises the server's exception in the caller).
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidState(msg.into())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a child ended when it did not hand back a value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildFailure {
    /// The target panicked; the message and, when `RUST_BACKTRACE` enabled one, the backtrace.
    Panicked {
        /// The panic message, with its location.
        message: String,
        /// The captured backtrace, if backtraces were enabled in the child. A `Fork` child records
        /// none: std's backtrace lock may have been held by another thread of the parent at the fork.
        backtrace: Option<String>,
    },
    /// The child was killed by this signal.
    Signaled(i32),
    /// The child exited with this code before sending its result.
    Exited(i32),
}

/// A child that ended without producing its result: which one and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildError {
    pub(crate) pid: i32,
    pub(crate) name: String,
    pub(crate) failure: ChildFailure,
}

impl ChildError {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// The child's name (`Process-3`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// How it ended.
    pub fn failure(&self) -> &ChildFailure {
        &self.failure
    }
    /// The panic message, if the child panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.failure {
            ChildFailure::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} (pid {}) ", self.name, self.pid)?;
        match &self.failure {
            ChildFailure::Panicked { message, backtrace } => {
                write!(f, "panicked: {message}")?;
                if let Some(bt) = backtrace {
                    write!(f, "\nchild backtrace:\n{bt}")?;
                }
                Ok(())
            }
            ChildFailure::Signaled(sig) => {
                write!(f, "was killed by {}", crate::sys::signal_name(*sig))
            }
            ChildFailure::Exited(code) => write!(f, "exited with code {code} before returning a value"),
        }
    }
}

impl std::error::Error for ChildError {}
