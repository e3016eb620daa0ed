//! Per-operation errors of the queues. Each hands back the value it could not put.

use std::fmt;

/// Why `put` failed; the value comes back to the caller.
#[derive(PartialEq, Eq)]
pub enum PutError<T> {
    /// The queue held `maxsize` items for the whole wait (Python's `queue.Full`).
    Full(T),
    /// `close()` was called on this handle (Python's `ValueError: Queue is closed`).
    Closed(T),
    /// The value could not be encoded (or holds more handles than one item may carry).
    Encode(T, String),
    /// The queue's shared memory was written over by some process (its ring positions make
    /// no sense); nothing more can be put.
    Corrupted(T, String),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Closed(v) | PutError::Encode(v, _) | PutError::Corrupted(v, _) => v,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
            PutError::Corrupted(_, e) => write!(f, "Corrupted(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::Encode(_, e) => write!(f, "cannot encode queue item: {e}"),
            PutError::Corrupted(_, e) => f.write_str(e),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why `get` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// No item came in time (Python's `queue.Empty`), also when `get_timeout` expires.
    Empty,
    /// `close()` was called on this handle.
    Closed,
    /// An item could not be decoded as `T`.
    Decode(String),
    /// The queue's shared memory was written over by some process (its records make no
    /// sense); nothing is taken, and later gets report the same.
    Corrupted(String),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Closed => f.write_str("queue is closed"),
            GetError::Decode(e) => write!(f, "cannot decode queue item: {e}"),
            GetError::Corrupted(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for GetError {}

/// Why `task_done` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDoneError {
    /// Called more times than items were put (Python's `ValueError`).
    TooManyCalls,
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl std::error::Error for TaskDoneError {}

impl<T> From<PutError<T>> for crate::Error {
    /// For `?` in functions returning the crate's `Result`; the item is dropped.
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Full(_) => crate::Error::Full,
            PutError::Closed(_) => crate::Error::Closed("queue"),
            PutError::Encode(_, msg) => crate::Error::Encode(msg),
            PutError::Corrupted(_, msg) => crate::Error::InvalidState(msg),
        }
    }
}

impl From<GetError> for crate::Error {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Empty => crate::Error::Empty,
            GetError::Closed => crate::Error::Closed("queue"),
            GetError::Decode(msg) | GetError::Corrupted(msg) => crate::Error::Decode(msg),
        }
    }
}
