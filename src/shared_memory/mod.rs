//! Shared memory between processes: [`Value`] and [`Array`] over anonymous regions.

pub(crate) mod region;
mod value;

pub use value::{Array, Pod, Value};
