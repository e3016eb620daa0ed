//! Call entries: the monomorphized functions a worker runs for a task.
//!
//! A task names its entry by offset (`EntryOffset::of_call`), so one worker runs any function of
//! the program: `apply_entry::<F, A>` for one call, `chunk_entry::<F, A>` for a chunk of a
//! `map`/`starmap`, `init_entry::<F, A>` for an initializer. Each decodes the arguments, makes
//! the zero-sized target, calls it under `catch_unwind` (the worker lives on after a panic) and
//! appends the encoded value to the worker's output.

use crate::target::{self, CallOutcome, Target};
use crate::wire;
use serde::de::DeserializeOwned;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn panicked() -> CallOutcome {
    CallOutcome::Panicked(crate::process::last_panic().0)
}

/// Encodes `value` at the end of `out`, leaving `out` as it was on failure.
fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> CallOutcome {
    let mark = out.len();
    match wire::encode(value, out) {
        Ok(fds) if fds.is_empty() => CallOutcome::Returned,
        Ok(_) => {
            out.truncate(mark);
            CallOutcome::Failed(
                "a pool task's value cannot carry handles (connections, queues, shared memory)".into(),
            )
        }
        Err(e) => {
            out.truncate(mark);
            CallOutcome::Failed(format!("cannot encode the task's value: {e}"))
        }
    }
}

/// One call of `F` with the arguments tuple `A`.
pub(crate) fn apply_entry<F, A>(args: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> CallOutcome
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let args: A = match wire::decode(args, fds) {
        Ok(a) => a,
        Err(e) => return CallOutcome::Failed(format!("cannot decode the task's arguments: {e}")),
    };
    let f = target::target_value::<F, A>();
    match catch_unwind(AssertUnwindSafe(move || f.call(args))) {
        Ok(value) => encode_into(&value, out),
        Err(_) => panicked(),
    }
}

/// Serializes `f(args)` for each arguments tuple as a sequence, calling `f` while encoding so
/// that no vector of values is built. A panic in `f` unwinds through the encoder.
struct MappedSeq<F, A> {
    items: RefCell<Option<Vec<A>>>,
    f: F,
}

impl<F, A> Serialize for MappedSeq<F, A>
where
    F: Target<A>,
    F::Output: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.items.borrow_mut().take().unwrap_or_default();
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for args in items {
            seq.serialize_element(&self.f.call(args))?;
        }
        seq.end()
    }
}

/// A chunk of a map: `F` called on each arguments tuple of a `Vec<A>`; the value is the
/// `Vec` of results. A panic fails the whole chunk, as an exception does in Python's `map`.
pub(crate) fn chunk_entry<F, A>(args: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> CallOutcome
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let items: Vec<A> = match wire::decode(args, fds) {
        Ok(a) => a,
        Err(e) => return CallOutcome::Failed(format!("cannot decode the chunk's arguments: {e}")),
    };
    let seq = MappedSeq { items: RefCell::new(Some(items)), f: target::target_value::<F, A>() };
    let mark = out.len();
    match catch_unwind(AssertUnwindSafe(|| encode_into(&seq, out))) {
        Ok(outcome) => outcome,
        Err(_) => {
            out.truncate(mark);
            panicked()
        }
    }
}

/// A worker's initializer: called once, its value dropped.
pub(crate) fn init_entry<F, A>(args: &[u8], fds: Vec<OwnedFd>, _out: &mut Vec<u8>) -> CallOutcome
where
    F: Target<A>,
    A: DeserializeOwned,
{
    let args: A = match wire::decode(args, fds) {
        Ok(a) => a,
        Err(e) => return CallOutcome::Failed(format!("cannot decode the initializer's arguments: {e}")),
    };
    let f = target::target_value::<F, A>();
    match catch_unwind(AssertUnwindSafe(move || drop(f.call(args)))) {
        Ok(()) => CallOutcome::Returned,
        Err(_) => panicked(),
    }
}
