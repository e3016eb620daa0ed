//! Shared memory between processes: [`Value`] and [`Array`] over anonymous regions, and the
//! named [`SharedMemory`].

mod named;
pub(crate) mod region;
mod value;

pub use named::SharedMemory;
pub use value::{Array, Pod, Value};
