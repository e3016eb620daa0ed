//! Per-worker status words in shared memory: which task each worker runs, since when.
//!
//! A worker stores the task's id and start time before calling it and clears the id after; the
//! dispatcher reads them without any message. That tells it, when a worker dies, which of the
//! tasks it was sent was running (that one failed; the others never started and are run
//! elsewhere), and when a task's `task_timeout` is up, measured from its real start.
//!
//! Layout (`#[repr(C)]`, in one [`Region`]): a [`Header`] with a magic word, then one
//! [`Slot`] per worker index. Words of a slot:
//!
//! | word         | values                         | written by                            |
//! |--------------|--------------------------------|---------------------------------------|
//! | `task`       | 0 idle, else the running task  | the worker (dispatcher clears on exit) |
//! | `started_ns` | `CLOCK_MONOTONIC` ns at start  | the worker, before `task`             |
//!
//! A reader loads `task`, then `started_ns`, then `task` again, and retries if the two loads of
//! `task` differ, so the pair it returns belongs together.

use crate::error::{Error, Result};
use crate::mem::Region;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

const MAGIC: u32 = 0x706f_6f6c; // "pool"
const VERSION: u32 = 1;

#[repr(C)]
struct Header {
    magic: AtomicU32,
    version: AtomicU32,
    count: AtomicU64,
}

#[repr(C)]
pub(crate) struct Slot {
    task: AtomicU64,
    started_ns: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() == 16);
const _: () = assert!(std::mem::size_of::<Slot>() == 16);
const _: () = assert!(std::mem::align_of::<Slot>() <= 16);

/// The status words of a pool's workers.
#[derive(Clone)]
pub(crate) struct Slots {
    region: Region,
    count: usize,
}

impl Slots {
    /// Fresh words for `count` workers.
    pub(crate) fn new(count: usize) -> Result<Slots> {
        let len = std::mem::size_of::<Header>() + count * std::mem::size_of::<Slot>();
        let region = Region::new(c"multiproc-pool", len)?;
        let slots = Slots { region, count };
        let h = slots.header();
        h.count.store(count as u64, SeqCst);
        h.version.store(VERSION, SeqCst);
        h.magic.store(MAGIC, SeqCst);
        Ok(slots)
    }

    /// The words a dispatcher made, as received by a worker.
    pub(crate) fn attach(region: Region) -> Result<Slots> {
        if region.len() < std::mem::size_of::<Header>() {
            return Err(Error::invalid("pool status memory is too small"));
        }
        let slots = Slots { region, count: 0 };
        let h = slots.header();
        if h.magic.load(SeqCst) != MAGIC || h.version.load(SeqCst) != VERSION {
            return Err(Error::invalid("pool status memory has an unknown layout"));
        }
        let count = h.count.load(SeqCst) as usize;
        let need = std::mem::size_of::<Header>() + count * std::mem::size_of::<Slot>();
        if slots.region.len() < need {
            return Err(Error::invalid("pool status memory is too small"));
        }
        Ok(Slots { count, ..slots })
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    fn header(&self) -> &Header {
        // SAFETY: the region is page-aligned, at least `size_of::<Header>()` long (checked in
        // `new` and `attach`), zero-filled at creation (a valid value for atomics) and mapped
        // for as long as `self` holds it; every access goes through atomics.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    /// The words of worker `index`.
    pub(crate) fn slot(&self, index: usize) -> &Slot {
        assert!(index < self.count, "worker index {index} out of range");
        // SAFETY: slot `index` lies inside the region (its length was checked against `count`),
        // is 16-byte aligned (page-aligned start, 16-byte header and slots), and is only used
        // through atomics; the reference borrows `self`, which keeps the mapping alive.
        unsafe {
            let first = self.region.as_ptr().add(std::mem::size_of::<Header>()) as *const Slot;
            &*first.add(index)
        }
    }
}

impl Slot {
    /// In the worker: task `id` starts now.
    pub(crate) fn begin(&self, id: u64, now_ns: u64) {
        self.started_ns.store(now_ns, SeqCst);
        self.task.store(id, SeqCst);
    }

    /// In the worker: the task ended.
    pub(crate) fn end(&self) {
        self.task.store(0, SeqCst);
    }

    /// The running task and its start time, or `None` when idle.
    pub(crate) fn running(&self) -> Option<(u64, u64)> {
        loop {
            let t1 = self.task.load(SeqCst);
            let started = self.started_ns.load(SeqCst);
            let t2 = self.task.load(SeqCst);
            if t1 == t2 {
                return (t1 != 0).then_some((t1, started));
            }
        }
    }
}
