//! `SharedMemory`: a named block of shared memory any process can attach to by name (Python's
//! `multiprocessing.shared_memory.SharedMemory`).
//!
//! The block is a POSIX shared-memory object in `/dev/shm`. The process that created it unlinks
//! the name when its `SharedMemory` is dropped (or on [`SharedMemory::unlink`]); processes that
//! attached keep their mapping, which lives until the last one is dropped. Python leaves the
//! unlink to the user and a resource-tracker process; here the creator owns the name.
//! A creator that is killed cannot unlink. Names the library generates have the form
//! `mp-<creator pid>-<n>-<stamp>`, and every later [`SharedMemory::create`], in any process,
//! removes such names whose creator no longer exists (what Python's resource tracker does at the
//! creator's exit). Names chosen by the caller carry no pid and stay until someone unlinks them.

use crate::error::{Error, Result};
use crate::sys;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A named shared-memory block.
///
/// ```
/// use multiproc::SharedMemory;
/// let shm = SharedMemory::create(None, 16)?;
/// shm.write(0, b"hello")?;
/// let other = SharedMemory::attach(shm.name())?;
/// let mut buf = [0u8; 5];
/// other.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMemory {
    name: String,
    map: sys::Mapping,
    size: usize,
    creator: Option<i32>,
    unlinked: AtomicBool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn fresh_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("mp-{}-{n}-{t:08x}", sys::getpid())
}

/// The creator pid inside a generated name (`mp-<pid>-<n>-<stamp>`).
fn creator_of(name: &str) -> Option<i32> {
    let mut parts = name.strip_prefix("mp-")?.split('-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    u32::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some(pid)
}

/// Unlinks generated names whose creator process is gone.
fn sweep_orphans() {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return };
    let me = sys::getpid();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if creator_of(name).is_some_and(|pid| pid != me && !sys::pid_alive(pid)) {
            let _ = sys::shm_unlink(name);
        }
    }
}

impl SharedMemory {
    /// Creates a block of `size` bytes (zero-filled) named `name`, or a fresh `mp-...` name
    /// (Python's `SharedMemory(name, create=True, size=size)`). An existing name is an error.
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::invalid("'size' must be a positive number different from zero"));
        }
        sweep_orphans();
        let name = name.map_or_else(fresh_name, str::to_string);
        let fd = sys::shm_open(&name, true).map_err(Error::io("creating shared memory"))?;
        let made = sys::set_len(fd.as_fd(), size)
            .and_then(|_| sys::Mapping::new(fd.as_fd(), size))
            .map_err(Error::io("sizing shared memory"));
        let map = match made {
            Ok(map) => map,
            Err(e) => {
                let _ = sys::shm_unlink(&name);
                return Err(e);
            }
        };
        Ok(SharedMemory { name, map, size, creator: Some(sys::getpid()), unlinked: AtomicBool::new(false) })
    }

    /// Attaches to the existing block `name` (Python's `SharedMemory(name)`).
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let fd = sys::shm_open(name, false).map_err(Error::io("attaching shared memory"))?;
        let size = sys::file_len(fd.as_fd()).map_err(Error::io("sizing shared memory"))?;
        let map = sys::Mapping::new(fd.as_fd(), size).map_err(Error::io("mapping shared memory"))?;
        Ok(SharedMemory {
            name: name.to_string(),
            map,
            size,
            creator: None,
            unlinked: AtomicBool::new(false),
        })
    }

    /// The block's name, to attach from another process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    fn range(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(Error::invalid(format!(
                "range {offset}+{len} outside a block of {} bytes",
                self.size
            )));
        }
        Ok(())
    }

    /// Copies `data` into the block at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.range(offset, data.len())?;
        // SAFETY: the range is inside the mapping (checked); other processes may write the same
        // bytes concurrently, so this is a byte copy with no Rust reference into the block.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Copies bytes from the block at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.range(offset, buf.len())?;
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// The start of the block, for code that synchronizes access itself (Python's `buf`).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Removes the name from the system (Python's `unlink()`); attached mappings stay valid.
    pub fn unlink(&self) -> Result<()> {
        if self.unlinked.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        sys::shm_unlink(&self.name).map_err(Error::io("unlinking shared memory"))
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.creator == Some(sys::getpid()) {
            let _ = self.unlink();
        }
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedMemory({:?}, size={})", self.name, self.size)
    }
}

impl Serialize for SharedMemory {
    /// A block travels by name; the receiver attaches to it.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.name.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SharedMemory::attach(&name).map_err(serde::de::Error::custom)
    }
}
