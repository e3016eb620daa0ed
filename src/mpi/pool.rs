//! Rank 0's side of an MPI pool: the [`PoolBuilder`] and a [`Backend`] that hands the facade's
//! tasks to worker ranks and their outcomes back.
//!
//! Dispatch is demand-driven: each worker rank announces how many tasks it takes at once (its
//! local processes plus a small prefetch) and is sent another only when one of its outcomes
//! comes back, so a slow rank gets fewer chunks. The pool thread alone talks MPI, polling
//! without blocking (sends are small and matched promptly by a rank that always reads), under
//! the lock that also guards MPI's shutdown at exit.

use super::{code_error, decode, encode, root, ToRoot, ToWorker, TAG};
use crate::error::{Error, Result};
use crate::pool::backend::{self, Backend, Phase, Shared, Task, TaskError, TaskErrorKind};
use crate::{Executor, Pool};
use mpi::point_to_point::MatchedReceiveVec;
use mpi::traits::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Options for a [`Pool`] whose workers are the other MPI ranks of the job.
///
/// Rank 0 builds it; every other rank serves it (the program opts in with
/// [`mpi_workers!`](crate::mpi_workers)). Run without a launcher, [`build`](Self::build) fails
/// with a clear error, or gives a local pool when [`fallback_local`](Self::fallback_local) asks.
#[must_use]
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes_per_rank: usize,
    prefetch: u32,
    task_timeout: Option<Duration>,
    fallback: Option<usize>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolBuilder {
    /// A pool on every rank but this one, one worker process per rank.
    pub fn new() -> PoolBuilder {
        PoolBuilder { processes_per_rank: 1, prefetch: 1, task_timeout: None, fallback: None }
    }

    /// Worker processes each rank runs tasks in (1 by default: one rank per core).
    pub fn processes_per_rank(mut self, n: usize) -> Self {
        self.processes_per_rank = n.max(1);
        self
    }

    /// Tasks a rank holds beyond its running ones, so its processes never wait for the next
    /// (1 by default; 0 gives the strictest balance). Many tiny tasks (`apply_async` in a loop)
    /// go faster with a deeper prefetch, e.g. 8, at the cost of a slow rank holding more.
    pub fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = n;
        self
    }

    /// The longest one task may run: past it, the process running it is killed and the task
    /// fails with [`TaskErrorKind::TimedOut`], as in a local pool; the rank goes on.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Without a launcher (or with no rank but this one), build a local pool of `processes`
    /// processes instead of failing.
    pub fn fallback_local(mut self, processes: usize) -> Self {
        self.fallback = Some(processes.max(1));
        self
    }

    fn local(&self, why: &str) -> Result<Pool> {
        let Some(n) = self.fallback else {
            return Err(Error::invalid(why.to_string()));
        };
        let mut b = Pool::builder().processes(n);
        if let Some(t) = self.task_timeout {
            b = b.task_timeout(t);
        }
        b.build()
    }

    /// Starts the pool on the other ranks and returns it.
    pub fn build(self) -> Result<Pool> {
        let mut guard = root();
        let Some(r) = guard.as_mut() else {
            drop(guard);
            return match super::launcher_rank() {
                None => self.local(
                    "an MPI pool needs the program started by an MPI launcher \
                     (mpirun -n N ./program, or srun); none started this one",
                ),
                Some(0) => Err(Error::invalid(
                    "an MPI pool needs its program opted in with multiprocessing::mpi_workers!() \
                     (or MP_MPI_WORKERS=1), so that ranks other than 0 serve it",
                )),
                Some(rank) => Err(Error::invalid(format!(
                    "an MPI pool is built on rank 0; this is rank {rank}, which should have been \
                     serving (is MPI initialized elsewhere in the program?)"
                ))),
            };
        };
        if r.size < 2 {
            drop(guard);
            return self.local("an MPI pool needs at least 2 ranks (mpirun -n 2 or more); this job has 1");
        }
        if r.in_use {
            return Err(Error::invalid("an MPI pool is already running; close and join it first"));
        }
        let Some(world) = r.world() else {
            return Err(Error::invalid("MPI has been finalized: the program is exiting"));
        };
        let timeout_ms = self.task_timeout.map_or(0, |t| t.as_millis().max(1) as u64);
        let hello = encode(&ToWorker::Hello {
            processes: self.processes_per_rank as u32,
            timeout_ms,
            prefetch: self.prefetch,
        });
        let size = r.size;
        for rank in 1..size {
            world.process_at_rank(rank).send_with_tag(&hello[..], TAG);
        }
        let mut credit = vec![0u32; size as usize];
        let mut refused = Vec::new();
        let mut capacity = 0usize;
        for _ in 1..size {
            let (bytes, status) = world.any_process().matched_probe_with_tag(TAG).matched_receive_vec::<u8>();
            let src = status.source_rank() as usize;
            match decode::<ToRoot>(&bytes) {
                Ok(ToRoot::Ready { credit: c, .. }) => {
                    credit[src] = c.max(1);
                    capacity += self.processes_per_rank;
                }
                Ok(ToRoot::Refused { why }) => refused.push(why),
                Ok(_) => refused.push(format!("rank {src} answered out of turn")),
                Err(e) => refused.push(format!("rank {src}: {e}")),
            }
        }
        r.in_use = true;
        drop(guard);
        if !refused.is_empty() {
            let backend = MpiBackend { credit: vec![0; size as usize], ..MpiBackend::new(size) };
            backend.end(false);
            return Err(Error::invalid(format!("the MPI pool could not start: {}", refused.join("; "))));
        }
        let shared = Shared::new()?;
        let backend = MpiBackend { credit, ..MpiBackend::new(size) };
        Pool::with_backend(shared, Box::new(backend), capacity.max(1))
    }

    /// [`build`](Self::build), as an [`Executor`].
    pub fn build_executor(self) -> Result<Executor> {
        Ok(Executor::from_backend_pool(self.build()?))
    }
}

struct MpiBackend {
    size: i32,
    /// How many more tasks each rank takes now.
    credit: Vec<u32>,
    /// Tasks sent to a rank, by id, with the rank.
    pending: HashMap<u64, (Task, i32)>,
    /// Tasks taken from the intake, waiting for a rank with credit.
    queue: VecDeque<Task>,
    next_rank: usize,
}

/// What the pool thread saw on one round.
enum Round {
    Busy,
    Idle,
    /// MPI was finalized under the pool (the program is exiting).
    Gone,
}

impl MpiBackend {
    fn new(size: i32) -> MpiBackend {
        MpiBackend { size, credit: Vec::new(), pending: HashMap::new(), queue: VecDeque::new(), next_rank: 1 }
    }

    fn complete(task: Task, outcome: std::result::Result<&[u8], TaskError>) {
        let id = task.id;
        match outcome {
            Ok(v) => task.sink.complete(task.index, Ok(v)),
            Err(e) => {
                let pid = e.pid();
                task.sink.complete(task.index, Err(e.at(id, pid)));
            }
        }
    }

    /// The rank with credit, round-robin from the last one used.
    fn pick(&mut self) -> Option<usize> {
        let n = self.size as usize;
        for k in 0..n.saturating_sub(1) {
            let r = 1 + (self.next_rank - 1 + k) % (n - 1);
            if self.credit[r] > 0 {
                self.next_rank = 1 + r % (n - 1);
                return Some(r);
            }
        }
        None
    }

    /// Sends what ranks can take, reads what they sent back.
    fn round(&mut self) -> Round {
        let guard = root();
        let Some(world) = guard.as_ref().and_then(super::Root::world) else { return Round::Gone };
        let mut busy = false;
        while !self.queue.is_empty() {
            let Some(rank) = self.pick() else { break };
            let Some(task) = self.queue.pop_front() else { break };
            if !task.fds.is_empty() {
                let e = TaskError::new(TaskErrorKind::Codec, "handles cannot travel to another MPI rank");
                Self::complete(task, Err(e));
                continue;
            }
            let msg = match backend::task_call(&task) {
                Ok((entry, args)) => encode(&ToWorker::Task { id: task.id, entry, args: args.to_vec() }),
                Err(e) => {
                    Self::complete(task, Err(TaskError::new(TaskErrorKind::Codec, e.to_string())));
                    continue;
                }
            };
            world.process_at_rank(rank as i32).send_with_tag(&msg[..], TAG);
            self.credit[rank] -= 1;
            self.pending.insert(task.id, (task, rank as i32));
            busy = true;
        }
        while let Some(got) = world.any_process().immediate_matched_probe_with_tag(TAG) {
            let (bytes, status) = got.matched_receive_vec::<u8>();
            busy = true;
            let src = status.source_rank();
            match decode::<ToRoot>(&bytes) {
                Ok(ToRoot::Done { id, kind, pid, body }) => {
                    if let Some(c) = self.credit.get_mut(src as usize) {
                        *c += 1;
                    }
                    let Some((task, _)) = self.pending.remove(&id) else { continue };
                    if kind == 0 {
                        Self::complete(task, Ok(&body));
                    } else {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let e = code_error(kind, text).at(id, Some(pid));
                        Self::complete(task, Err(e));
                    }
                }
                Ok(_) => log::error!("multiprocessing: MPI rank {src} answered out of turn"),
                Err(e) => log::error!("multiprocessing: MPI rank {src}: {e}"),
            }
        }
        if busy {
            Round::Busy
        } else {
            Round::Idle
        }
    }

    /// Ends the pool on every rank and waits until each has said so (reading late outcomes).
    fn end(mut self, terminate: bool) -> Self {
        let mut guard = root();
        let Some(r) = guard.as_mut() else { return self };
        r.in_use = false;
        let Some(world) = r.world() else { return self };
        let bye = encode(&ToWorker::End { terminate });
        for rank in 1..self.size {
            world.process_at_rank(rank).send_with_tag(&bye[..], TAG);
        }
        let mut left = self.size - 1;
        while left > 0 {
            let (bytes, status) = world.any_process().matched_probe_with_tag(TAG).matched_receive_vec::<u8>();
            match decode::<ToRoot>(&bytes) {
                Ok(ToRoot::Ended) => left -= 1,
                Ok(ToRoot::Done { id, kind, pid, body }) => {
                    if let Some((task, _)) = self.pending.remove(&id) {
                        if kind == 0 {
                            Self::complete(task, Ok(&body));
                        } else {
                            let e = code_error(kind, String::from_utf8_lossy(&body).into_owned());
                            Self::complete(task, Err(e.at(id, Some(pid))));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => log::error!("multiprocessing: MPI rank {}: {e}", status.source_rank()),
            }
        }
        self
    }
}

impl Backend for MpiBackend {
    fn serve(mut self: Box<Self>, shared: Arc<Shared>) {
        let mut seen = (Phase::Running, 0usize);
        let mut idle = 0u32;
        let why = loop {
            let phase = shared.phase();
            if phase == Phase::Terminating {
                break TaskError::new(
                    TaskErrorKind::Terminated,
                    "the pool was terminated before the task finished",
                );
            }
            if phase == Phase::Closed
                && self.queue.is_empty()
                && self.pending.is_empty()
                && backend::intake_is_idle(&shared)
            {
                break TaskError::new(TaskErrorKind::Terminated, "the pool was closed");
            }
            let wait = if self.pending.is_empty() && self.queue.is_empty() {
                Duration::from_millis(50)
            } else if idle > 64 {
                Duration::from_micros(200)
            } else {
                Duration::ZERO
            };
            let (tasks, phase, jobs) = shared.take_or_wait(seen, wait);
            seen = (phase, jobs);
            let fresh = !tasks.is_empty();
            for t in tasks {
                if t.sink.start(t.index) {
                    self.queue.push_back(t);
                }
            }
            match self.round() {
                Round::Busy => idle = 0,
                Round::Idle if fresh => idle = 0,
                Round::Idle => {
                    idle = idle.saturating_add(1);
                    if idle <= 64 {
                        std::thread::yield_now();
                    }
                }
                Round::Gone => {
                    break TaskError::new(TaskErrorKind::Broken, "MPI was finalized: the program is exiting")
                }
            }
        };
        let terminate = why.kind() != TaskErrorKind::Terminated || shared.phase() == Phase::Terminating;
        let mut this = (*self).end(terminate);
        shared.set_phase(Phase::Finished);
        let (leftover, _, _) = shared.take_or_wait((Phase::Finished, usize::MAX), Duration::ZERO);
        for t in
            leftover.into_iter().chain(this.queue.drain(..)).chain(this.pending.drain().map(|(_, (t, _))| t))
        {
            let id = t.id;
            t.sink.complete(t.index, Err(why.clone().at(id, None)));
        }
    }
}
