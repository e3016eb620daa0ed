//! `RemoteError`: an error raised in a manager's server, carried back to the proxy.
//!
//! Defined here, below every room, so that [`Error`](crate::Error) can hold it without the error
//! type importing the manager; the manager re-exports it where users look for it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of error a manager's server reported; the names follow the Python exception the
/// same failure raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// An index out of range (`IndexError`).
    Index,
    /// A missing key (`KeyError`).
    Key,
    /// A bad value, e.g. `remove` of an absent item or a semaphore released too often
    /// (`ValueError`).
    Value,
    /// A missing namespace attribute (`AttributeError`).
    Attribute,
    /// A lock released by a client that does not hold it (`RuntimeError`).
    Runtime,
    /// `get` on an empty queue without blocking, or after the timeout (`queue.Empty`).
    Empty,
    /// `put` on a full queue without blocking, or after the timeout (`queue.Full`).
    Full,
    /// A barrier was broken, reset or aborted (`BrokenBarrierError`).
    BrokenBarrier,
    /// The object no longer exists in the server (all references were dropped).
    NoSuchObject,
    /// No type is registered in the server under this type id.
    NoSuchType,
    /// The object has no method of this name (`AttributeError` on the proxy).
    NoSuchMethod,
    /// No object is published under this name.
    NoSuchName,
    /// The arguments could not be decoded as the method's parameter types (a proxy typed
    /// differently from the object).
    BadArguments,
    /// The method panicked in the server (the object stays usable).
    Panicked,
    /// The client broke the protocol.
    Protocol,
}

/// An error raised in a manager's server and carried back to the proxy that made the call
/// (Python re-raises the server's exception in the client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    kind: RemoteErrorKind,
    message: String,
}

impl RemoteError {
    /// An error of `kind` with a message.
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError { kind, message: message.into() }
    }

    /// Which kind of failure.
    pub fn kind(&self) -> RemoteErrorKind {
        self.kind
    }

    /// The server's description of it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manager: {:?} error: {}", self.kind, self.message)
    }
}

impl std::error::Error for RemoteError {}
