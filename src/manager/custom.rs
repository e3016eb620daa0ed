//! User types served by a manager: what `#[register]` generates code against.
//!
//! The macro implements [`Registered`] for the type (a constructor table and a method table,
//! both dispatching on names as Python's `BaseManager` does) and adds a
//! [`TypeRegistration`](super::registry::TypeRegistration) to the binary's registry. The server
//! keeps each object in an `RwLock`: methods taking `&self` run concurrently, methods taking
//! `&mut self` one at a time. A panic in a method becomes a [`RemoteError`] for that call
//! only; the object stays usable (the lock's poison is cleared), as a Python exception in a
//! method leaves the server running.

use super::protocol::{self, RemoteError, RemoteErrorKind};
use super::registry::{Call, Reply, Served, ServedObject};
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A type a manager can create and serve (implemented by `#[register]`).
#[doc(hidden)]
pub trait Registered: Sized + Send + Sync + 'static {
    /// The name clients create it by (Python's `typeid`).
    const TYPEID: &'static str;
    /// Runs the constructor `ctor` with encoded arguments.
    fn construct(ctor: &str, args: &[u8]) -> Result<Self, RemoteError>;
    /// Runs `method` with encoded arguments, appending the encoded result to `out`.
    fn dispatch(this: &RwLock<Self>, method: &str, args: &[u8], out: &mut Vec<u8>)
        -> Result<(), RemoteError>;
}

struct CustomObject<T>(RwLock<T>);

impl<T: Registered> Served for CustomObject<T> {
    fn call(&self, Call { cx: _, method, args, out }: Call<'_, '_>) -> Reply {
        match std::panic::catch_unwind(AssertUnwindSafe(|| T::dispatch(&self.0, method, args, out))) {
            Ok(r) => r,
            Err(payload) => {
                self.0.clear_poison();
                Err(RemoteError::new(RemoteErrorKind::Panicked, panic_text(&*payload)))
            }
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_string()
    }
}

pub(crate) fn create<T: Registered>(ctor: &str, args: &[u8]) -> Result<ServedObject, RemoteError> {
    let value = std::panic::catch_unwind(AssertUnwindSafe(|| T::construct(ctor, args)))
        .map_err(|p| RemoteError::new(RemoteErrorKind::Panicked, panic_text(&*p)))??;
    Ok(ServedObject(Arc::new(CustomObject(RwLock::new(value)))))
}

/// Decodes a method's argument tuple.
#[doc(hidden)]
pub fn decode_args<'a, A: Deserialize<'a>>(args: &'a [u8]) -> Result<A, RemoteError> {
    protocol::decode(args)
}

/// Encodes a method's result.
#[doc(hidden)]
pub fn encode_result<R: Serialize>(value: &R, out: &mut Vec<u8>) -> Result<(), RemoteError> {
    protocol::encode_into(value, out)
}

/// The error for an unknown method or constructor name.
#[doc(hidden)]
pub fn no_such_method(typeid: &str, method: &str) -> RemoteError {
    RemoteError::new(
        RemoteErrorKind::NoSuchMethod,
        format!("{typeid:?} object has no exposed method {method:?}"),
    )
}

/// Shared access for a `&self` method.
#[doc(hidden)]
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// Exclusive access for a `&mut self` method.
#[doc(hidden)]
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
