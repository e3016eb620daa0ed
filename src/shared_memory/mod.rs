//! Shared memory between processes: [`Value`], [`Array`], [`RawValue`] and [`RawArray`] over
//! anonymous regions, and the named [`SharedMemory`].

mod named;
mod value;

pub use named::SharedMemory;
pub use value::{Array, ArrayGuard, Pod, RawArray, RawValue, Value, ValueGuard};
