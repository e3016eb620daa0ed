//! Linux system calls, grouped by concept.

pub(crate) mod process;
pub(crate) mod socket;
pub(crate) mod time;

pub(crate) use process::*;
pub(crate) use socket::*;
pub(crate) use time::*;
