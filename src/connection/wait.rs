//! `wait`: block until any of several connections or process sentinels is ready.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Waits until at least one of `objects` is ready (a connection with a message or end-of-file, a
/// process sentinel whose process ended) or `timeout` passes, and returns the indices of the
/// ready ones: empty on timeout (Python's `multiprocessing.connection.wait`).
///
/// ```
/// use std::os::fd::{AsRawFd, BorrowedFd};
/// use std::time::Duration;
/// let (a, b) = multiprocessing::Pipe::new(true)?;
/// let (c, _d) = multiprocessing::Pipe::new(true)?;
/// b.send(&1u8)?;
/// let ready = multiprocessing::connection::wait(&[&a, &c], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, vec![0]);
/// # Ok::<(), multiprocessing::Error>(())
/// ```
pub fn wait(objects: &[&dyn AsRawFd], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let raw: Vec<i32> = objects.iter().map(|o| o.as_raw_fd()).collect();
    if raw.iter().any(|&fd| fd < 0) {
        return Err(Error::Closed("object passed to wait"));
    }
    // SAFETY: every descriptor belongs to an object borrowed for the duration of this call.
    let fds: Vec<BorrowedFd<'_>> = raw.iter().map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
    let deadline = sys::deadline_after(timeout);
    if sys::poll_readable(&fds, deadline).map_err(Error::io("waiting"))?.is_none() {
        return Ok(Vec::new());
    }
    sys::ready_now(&fds).map_err(Error::io("waiting"))
}
