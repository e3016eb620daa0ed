//! Anonymous shared memory: `memfd_create`, `ftruncate`, `mmap(MAP_SHARED)`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

/// A new close-on-exec memory file of `len` bytes (zero-filled), named for `/proc/<pid>/fd`.
#[cfg(not(miri))]
pub(crate) fn memfd(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let fd = syscall!(memfd_create(name.as_ptr(), libc::MFD_CLOEXEC))?;
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    syscall!(ftruncate(fd.as_raw_fd(), len as libc::off_t))?;
    Ok(fd)
}

/// Under Miri, which has no `memfd_create`: an unlinked temporary file of `len` bytes. Only
/// its size is used; [`Mapping`] is heap memory there (one process, so nothing to share).
#[cfg(miri)]
pub(crate) fn memfd(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("{}-miri-{}-{n}", name.to_string_lossy(), std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    file.set_len(len as u64)?;
    Ok(file.into())
}

/// Size in bytes of the file behind `fd`.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd.as_raw_fd(), &mut st))?;
    Ok(st.st_size as usize)
}

/// A shared, read-write mapping of a whole file. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; what is stored in it is synchronized by the
// atomics of the types laid over it, which is their responsibility.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared and read-write.
    #[cfg(not(miri))]
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        // SAFETY: a fresh mapping chosen by the kernel aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: NonNull::new(p as *mut u8).expect("mmap never returns null on success"), len })
    }

    /// Under Miri: `len` zeroed, page-aligned heap bytes standing for the mapping.
    #[cfg(miri)]
    pub(crate) fn new(_fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size (checked in `layout`).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Mapping { ptr, len })
    }

    #[cfg(miri)]
    fn layout(len: usize) -> io::Result<std::alloc::Layout> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map zero bytes"));
        }
        std::alloc::Layout::from_size_align(len, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    #[cfg(not(miri))]
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value created and nothing else unmaps.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }

    #[cfg(miri)]
    fn drop(&mut self) {
        let layout = Self::layout(self.len).expect("the layout it was allocated with");
        // SAFETY: ptr was allocated in `new` with this layout and is freed once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}
