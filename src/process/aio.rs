//! Async waits for a process's end (feature `tokio`): the pidfd, duplicated, registered with
//! tokio's reactor as `tokio::process` does on Linux.

use super::{state, ExitStatus, JoinHandle, Process};
use crate::error::{Error, Result};
use crate::sync::aio;
use serde::de::DeserializeOwned;
use std::future::poll_fn;
use std::os::fd::AsFd;
use std::task::Poll;

impl Process {
    /// Waits for the process to end without blocking the thread (the async form of
    /// [`join`](Self::join)), and returns how it ended. It borrows the process, so
    /// [`kill`](Self::kill) and [`terminate`](Self::terminate) (on this handle or a clone) may be
    /// called while it waits, and `tokio::time::timeout` bounds it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only watches the child's pidfd (a duplicate, registered with the
    /// reactor while it waits and closed with the future); the child is reaped only in the
    /// poll that returns its status.
    pub async fn join_async(&self) -> Result<ExitStatus> {
        self.check_child("join")?;
        if let Some(status) = self.poll_exit()? {
            state::forget_child(&self.inner);
            return Ok(status);
        }
        let pidfd = aio::async_fd(self.sentinel()?)?;
        loop {
            let mut ready = pidfd.readable().await.map_err(Error::io("waiting for a child"))?;
            if let Some(status) = self.poll_exit()? {
                state::forget_child(&self.inner);
                return Ok(status);
            }
            ready.clear_ready();
        }
    }
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// Waits for the child's value without blocking the thread (the async form of
    /// [`join`](Self::join)). To kill the child while waiting, keep a clone of
    /// [`process`](Self::process) first.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the handle, as dropping a `JoinHandle` does: the child runs
    /// on and its value is not read. Use `Process::join_async` on the process to wait for the
    /// end alone and keep the handle.
    pub async fn join_async(self) -> Result<R> {
        let exit = aio::async_fd(self.process.sentinel()?)?;
        let result = aio::async_fd(self.result.as_fd())?;
        // The result socket or the end of the child, whichever first (see
        // `wait_for_result_or_exit` for why not the socket alone).
        poll_fn(|cx| {
            if exit.poll_read_ready(cx).is_ready() || result.poll_read_ready(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        drop((result, exit));
        // A readable socket: the child is writing its value (read now, so a value larger than
        // the socket's buffer cannot hold it up); it ends right after.
        let received = self.read_result()?;
        let status = self.process.join_async().await?;
        self.conclude(received, status)
    }
}
