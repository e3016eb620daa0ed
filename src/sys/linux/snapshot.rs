//! A value published as immutable snapshots behind an atomic pointer: readers take no lock, and
//! a process forked while another thread replaces the value never finds a lock held. Replaced
//! snapshots are never freed (a reader may still hold a reference), so this suits small values
//! that change rarely.

use std::sync::atomic::{AtomicPtr, Ordering};

pub(crate) struct Snapshot<T: 'static> {
    ptr: AtomicPtr<T>,
}

impl<T: Clone + Default + 'static> Snapshot<T> {
    pub(crate) const fn new() -> Snapshot<T> {
        Snapshot { ptr: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// The current value, `None` before the first update.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `Box::leak` in `update` and is never freed.
        unsafe { p.as_ref() }
    }

    /// Replaces the value with `f(current or default)`, unless `f` returns `None`; `f` runs
    /// again if another thread replaced the value meanwhile.
    pub(crate) fn update(&self, mut f: impl FnMut(&T) -> Option<T>) {
        loop {
            let old = self.ptr.load(Ordering::Acquire);
            // SAFETY: as in `get`.
            let base = unsafe { old.as_ref() }.cloned().unwrap_or_default();
            let Some(new) = f(&base) else { return };
            let new: *mut T = Box::leak(Box::new(new));
            match self.ptr.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    #[cfg(miri)]
                    retired(old.cast());
                    return;
                }
                // SAFETY: `new` was never published, so this is still its only owner.
                Err(_) => drop(unsafe { Box::from_raw(new) }),
            }
        }
    }
}

/// Under Miri: keeps the replaced snapshots reachable, so that its leak check at exit does not
/// report the memory they are leaked to by design.
#[cfg(miri)]
fn retired(old: *mut ()) {
    static RETIRED: std::sync::Mutex<Vec<AtomicPtr<()>>> = std::sync::Mutex::new(Vec::new());
    if !old.is_null() {
        RETIRED.lock().unwrap_or_else(|p| p.into_inner()).push(AtomicPtr::new(old));
    }
}
