//! The descriptors of every live [`Connection`](super::Connection) in this process.
//!
//! A forked child inherits every descriptor of its parent. If it kept the parent's end of a pipe,
//! neither end would ever see end-of-file while the child lives: the classic way to hang a
//! `fork`-based program. So a child created with the `Fork` start method closes every
//! connection descriptor it inherited; it keeps only the handles it was given as arguments
//! (which reach it as fresh duplicates, not registered here).

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

static LIVE: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

pub(crate) fn lock() -> MutexGuard<'static, Option<HashSet<RawFd>>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn add(fd: RawFd) {
    lock().get_or_insert_with(HashSet::new).insert(fd);
}

pub(crate) fn remove(fd: RawFd) {
    if let Some(set) = lock().as_mut() {
        set.remove(&fd);
    }
}

/// In a freshly forked child, holding the registry's lock taken before the fork: closes every
/// inherited connection descriptor.
pub(crate) fn close_inherited(mut guard: MutexGuard<'static, Option<HashSet<RawFd>>>) {
    if let Some(set) = guard.take() {
        for fd in set {
            crate::sys::close_raw(fd);
        }
    }
}
