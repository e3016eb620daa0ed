//! Shared memory between processes.

#[allow(dead_code)] // used by the queue and sync modules
pub(crate) mod region;
