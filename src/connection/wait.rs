//! `wait`: block until any of several connections or process sentinels is ready.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// Something [`wait`] can wait on: a [`Connection`](crate::Connection), a
/// [`Process`](crate::Process) (its sentinel), or any descriptor (`AsRawFd`) that becomes
/// readable when ready.
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready.
    fn wait_fd(&self) -> RawFd;

    /// Whether the object is ready regardless of its descriptor (`None`: ask the descriptor).
    /// A pipe's connection answers from its shared memory, and makes sure its descriptor will
    /// turn readable when a message comes.
    #[doc(hidden)]
    fn ready_hint(&self) -> Option<bool> {
        None
    }
}

impl<T: AsRawFd + ?Sized> Waitable for T {
    fn wait_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// Waits until at least one of `objects` is ready (a connection with a message or end-of-file, a
/// process sentinel whose process ended) or `timeout` passes, and returns the indices of the
/// ready ones: empty on timeout (Python's `multiprocessing.connection.wait`).
///
/// ```
/// use std::os::fd::{AsRawFd, BorrowedFd};
/// use std::time::Duration;
/// let (a, b) = multiproc::Pipe::duplex()?;
/// let (c, _d) = multiproc::Pipe::duplex()?;
/// b.send(&1u8)?;
/// let ready = multiproc::connection::wait(&[&a, &c], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, vec![0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let raw: Vec<i32> = objects.iter().map(|o| o.wait_fd()).collect();
    if raw.iter().any(|&fd| fd < 0) {
        return Err(Error::Closed("object passed to wait"));
    }
    // SAFETY: every descriptor belongs to an object borrowed for the duration of this call.
    let fds: Vec<BorrowedFd<'_>> = raw.iter().map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
    let deadline = sys::deadline_after(timeout);
    loop {
        let hinted: Vec<bool> = objects.iter().map(|o| o.ready_hint() == Some(true)).collect();
        if !hinted.contains(&true)
            && sys::poll_readable(&fds, deadline).map_err(Error::io("waiting"))?.is_none()
        {
            return Ok(Vec::new());
        }
        let readable = sys::ready_now(&fds).map_err(Error::io("waiting"))?;
        // A readable descriptor of a pipe may hold only a stale doorbell: ask the object.
        let ready: Vec<usize> = (0..objects.len())
            .filter(|&i| hinted[i] || (readable.contains(&i) && objects[i].ready_hint().unwrap_or(true)))
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
    }
}
