//! Linux system calls, grouped by concept.

#[allow(dead_code)] // used by the queue and sync modules
pub(crate) mod futex;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod pipe;
pub(crate) mod process;
pub(crate) mod readiness;
pub(crate) mod shm;
pub(crate) mod snapshot;
pub(crate) mod socket;
pub(crate) mod time;

pub(crate) use memory::*;
pub(crate) use process::*;
pub(crate) use readiness::*;
pub(crate) use shm::*;
pub(crate) use socket::*;
pub(crate) use time::*;
