//! The seam between the pool's facade and where its tasks run.
//!
//! The facade ([`Pool`], and [`Executor`](super::Executor) over it) encodes every task into a
//! [`Task`] and pushes it on the [`Shared`] intake; a [`Backend`] serves that intake on the
//! pool's thread: it takes tasks, has them run somewhere, and completes each task's [`Sink`]
//! exactly once. The local backend is the [`Dispatcher`](super::dispatcher::Dispatcher) with
//! its worker processes; a broker backend (`redis` feature) carries tasks to workers on other
//! machines, which run them in a local pool through [`submit_raw`]. Whatever the backend, the
//! facade's methods (`map`, `imap`, `apply_async`, callbacks, `close`/`join`/`terminate`) are
//! the same code.

// Without the `redis` feature some of the seam's re-exports go unused.
#![cfg_attr(not(feature = "redis"), allow(unused_imports))]

pub(crate) use super::dispatcher::{Phase, Shared, Task};
#[cfg(feature = "redis")]
pub(crate) use super::protocol::{FAILED, PANICKED, RETURNED};
pub(crate) use super::result::Sink;
pub(crate) use crate::error::{TaskError, TaskErrorKind};

use super::protocol;
use super::{Executor, Pool};
use crate::error::{Error, Result};
use crate::target::EntryOffset;
use crate::wire::frame;
use std::sync::{Arc, Mutex};

/// Where a pool's tasks go and where their results come from.
pub(crate) trait Backend: Send + 'static {
    /// Serves the pool on its thread: takes tasks from `shared`'s intake, completes their
    /// sinks, and returns once the pool is finished (closed and drained, or terminating) with
    /// every unfinished task failed and the intake's phase set to [`Phase::Finished`].
    fn serve(self: Box<Self>, shared: Arc<Shared>);
}

impl Backend for super::dispatcher::Dispatcher {
    fn serve(self: Box<Self>, _shared: Arc<Shared>) {
        (*self).run();
    }
}

impl Pool {
    /// A pool whose tasks `backend` serves; `processes` is the worker count the facade sizes
    /// chunks and imap windows by.
    pub(crate) fn with_backend(
        shared: Arc<Shared>,
        backend: Box<dyn Backend>,
        processes: usize,
    ) -> Result<Pool> {
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || backend.serve(s))
            .map_err(Error::io("starting the pool's dispatcher thread"))?;
        Ok(Pool { shared, thread: Mutex::new(Some(thread)), processes })
    }

    /// Runs an already encoded call (`entry` and its postcard `args`, which carry no handles)
    /// in this pool; its outcome goes to `sink` as unit 0. The task's id in this pool.
    pub(crate) fn submit_raw(&self, entry: EntryOffset, args: &[u8], sink: Arc<dyn Sink>) -> Result<u64> {
        let id = self.shared.next_id();
        let mut buf = frame::start_frame();
        buf.push(protocol::RUN);
        buf.extend_from_slice(&id.to_le_bytes());
        crate::wire::encode(&entry, &mut buf)?;
        buf.extend_from_slice(args);
        protocol::seal(&mut buf, 0)?;
        self.shared.submit([Task::new(id, entry, (buf, Vec::new()), sink, 0)], false)?;
        Ok(id)
    }
}

impl Executor {
    /// An executor over `pool` (whatever its backend).
    pub(crate) fn from_backend_pool(pool: Pool) -> Executor {
        Executor::wrap(pool)
    }
}

/// Whether the intake holds no task and no lazy job is open.
#[cfg(feature = "mpi")]
pub(crate) fn intake_is_idle(shared: &Shared) -> bool {
    let intake = super::result::lock(&shared.intake);
    intake.tasks.is_empty() && intake.open_jobs == 0
}

/// The entry and argument bytes of a task's `RUN` frame.
pub(crate) fn task_call(task: &Task) -> Result<(EntryOffset, &[u8])> {
    let payload =
        task.frame.get(frame::HEADER_LEN..).ok_or_else(|| Error::Decode("short task frame".into()))?;
    let (_, entry, args) = protocol::parse_task(payload)?;
    Ok((entry, args))
}
