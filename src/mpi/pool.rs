//! Rank 0's side of an MPI pool: the [`PoolBuilder`] and a [`Backend`] that hands the facade's
//! tasks to worker ranks and their outcomes back.
//!
//! Dispatch is demand-driven, with a window per rank: a rank holds its running tasks plus a
//! prefetch sized to what it finishes in about [`QUEUE_TARGET`] (measured per function as its
//! outcomes come back: a few for slow tasks, up to hundreds for tiny ones, the least for a
//! function not yet timed there), and is sent more only as its outcomes return, so a slow rank
//! gets fewer tasks and a fast one is never starved by the round trip. Tasks for a rank travel many to a message, and so do outcomes. The pool thread
//! alone talks MPI, never blocking on a rank: it keeps reading while its own sends complete,
//! and a rank that falls silent past the rank timeout is lost (the job is aborted, see
//! [`lost`](super::lost)).

use super::{code_error, decode, encode, lost, machine, root, RankInfo, TaskMsg, ToRoot, ToWorker, TAG};
use crate::error::{Error, Result};
use crate::pool::backend::{self, Backend, Phase, Shared, Task, TaskError, TaskErrorKind};
use crate::target::EntryOffset;
use crate::{Executor, Pool};
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The work a rank may hold beyond what it runs, in time: its prefetch is as many tasks as
/// it finishes in this long (within `prefetch` and `max_prefetch`).
const QUEUE_TARGET: Duration = Duration::from_millis(5);
/// The most bytes of tasks in one message (a message holds at least one task).
const BATCH_BYTES: usize = 1 << 20;

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
    max_prefetch: u32,
    task_timeout: Option<Duration>,
    rank_timeout: Duration,
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
        PoolBuilder {
            processes_per_rank: 1,
            prefetch: 1,
            max_prefetch: 1024,
            task_timeout: None,
            rank_timeout: Duration::from_secs(10),
            fallback: None,
        }
    }

    /// Worker processes each rank runs tasks in (1 by default: one rank per core).
    pub fn processes_per_rank(mut self, n: usize) -> Self {
        self.processes_per_rank = n.max(1);
        self
    }

    /// The fewest tasks a rank holds beyond its running ones, so that its processes never
    /// wait for the next (1 by default). Beyond it, a rank holds as many as it finishes in
    /// about 5 ms, measured as it runs: many when tasks are tiny (`apply_async` in a loop), so
    /// that the round trip to the rank never starves it; none more when they are slow, so that
    /// a slow rank gets fewer tasks.
    pub fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = n;
        self.max_prefetch = self.max_prefetch.max(n);
        self
    }

    /// The most tasks a rank holds beyond its running ones (1024 by default). `prefetch(0)`
    /// and `max_prefetch(0)` give the strictest balance: a rank is sent a task only when one
    /// of its processes is free.
    pub fn max_prefetch(mut self, n: u32) -> Self {
        self.max_prefetch = n;
        self.prefetch = self.prefetch.min(n);
        self
    }

    /// How long a worker rank may stay silent while a pool runs before rank 0 counts it lost
    /// and aborts the job, naming it (10 s by default). A rank says something at least 5
    /// times in that span however long its tasks run, so only a stopped process or a lost
    /// node goes silent; a rank on rank 0's machine that exits is seen at once, whatever this
    /// is.
    pub fn rank_timeout(mut self, timeout: Duration) -> Self {
        self.rank_timeout = timeout.max(Duration::from_millis(10));
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
                    "an MPI pool needs its program opted in with multiproc::mpi_workers!() \
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
        let heartbeat_ms = (self.rank_timeout / 5).clamp(Duration::from_millis(2), Duration::from_secs(1));
        let hello = encode(&ToWorker::Hello {
            processes: self.processes_per_rank as u32,
            timeout_ms,
            heartbeat_ms: heartbeat_ms.as_millis() as u64,
        });
        let size = r.size;
        for rank in 1..size {
            world.process_at_rank(rank).send_with_tag(&hello[..], TAG);
        }
        let mut backend = MpiBackend::new(size, &self);
        let mut refused = Vec::new();
        let mut answered = vec![false; size as usize];
        let here = machine();
        let mut local = Vec::new();
        let deadline = Instant::now() + self.rank_timeout;
        while answered.iter().skip(1).any(|a| !a) {
            let Some(got) = world.any_process().immediate_matched_probe_with_tag(TAG) else {
                if Instant::now() > deadline {
                    let rank = answered.iter().skip(1).position(|a| !a).map_or(1, |i| i as i32 + 1);
                    let who = RankInfo { rank, pid: 0, host: "an unknown host".into() };
                    lost(&who, &format!("it did not answer the pool's start in {:?}", self.rank_timeout));
                }
                std::thread::sleep(Duration::from_micros(50));
                continue;
            };
            let (bytes, status) = got.matched_receive_vec::<u8>();
            let src = status.source_rank() as usize;
            answered[src] = true;
            match decode::<ToRoot>(&bytes) {
                Ok(ToRoot::Ready { host, pid, machine }) => {
                    let info = RankInfo { rank: src as i32, pid, host };
                    if machine == here {
                        local.push(info.clone());
                    }
                    backend.ranks[src].info = info;
                    backend.ranks[src].heard = Instant::now();
                }
                Ok(ToRoot::Refused { why }) => refused.push(why),
                Ok(_) => refused.push(format!("rank {src} answered out of turn")),
                Err(e) => refused.push(format!("rank {src}: {e}")),
            }
        }
        r.in_use = true;
        if !r.watching {
            r.watching = true;
            super::watch_local_ranks(local);
        }
        drop(guard);
        if !refused.is_empty() {
            backend.end(false);
            return Err(Error::invalid(format!("the MPI pool could not start: {}", refused.join("; "))));
        }
        let shared = Shared::new()?;
        let capacity = self.processes_per_rank * (size as usize - 1);
        Pool::with_backend(shared, Box::new(backend), capacity.max(1))
    }

    /// [`build`](Self::build), as an [`Executor`].
    pub fn build_executor(self) -> Result<Executor> {
        Ok(Executor::from_backend_pool(self.build()?))
    }
}

/// Rank 0's view of one worker rank.
struct RankState {
    info: RankInfo,
    /// Tasks sent and not yet answered.
    inflight: u32,
    /// The last outcome, or when it last became busy.
    mark: Instant,
    /// When it last said anything.
    heard: Instant,
    /// It answered the pool's end.
    ended: bool,
}

struct MpiBackend {
    ranks: Vec<RankState>,
    processes: u32,
    min_extra: u32,
    max_extra: u32,
    rank_timeout: Duration,
    /// Tasks sent to a rank, by id, with the rank.
    pending: HashMap<u64, (Task, usize)>,
    /// Per rank and function, the running estimate of the time between two outcomes while
    /// the rank is busy, in ns: what its window for that function's tasks is sized by.
    interval_ns: HashMap<(usize, EntryOffset), f64>,
    /// Tasks taken from the intake, waiting for a rank with room.
    queue: VecDeque<Task>,
    /// Messages read while a send was completing: (source rank, bytes).
    inbox: VecDeque<(usize, Vec<u8>)>,
    next_rank: usize,
    last_check: Instant,
}

/// What the pool thread saw on one round.
enum Round {
    Busy,
    Idle,
    /// MPI was finalized under the pool (the program is exiting).
    Gone,
}

impl MpiBackend {
    fn new(size: i32, b: &PoolBuilder) -> MpiBackend {
        let now = Instant::now();
        let processes = b.processes_per_rank as u32;
        let ranks = (0..size)
            .map(|rank| RankState {
                info: RankInfo { rank, pid: 0, host: String::new() },
                inflight: 0,
                mark: now,
                heard: now,
                ended: false,
            })
            .collect();
        MpiBackend {
            ranks,
            processes,
            min_extra: b.prefetch,
            max_extra: b.max_prefetch,
            rank_timeout: b.rank_timeout,
            pending: HashMap::new(),
            interval_ns: HashMap::new(),
            queue: VecDeque::new(),
            inbox: VecDeque::new(),
            next_rank: 1,
            last_check: now,
        }
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

    /// How many more tasks of `entry`'s function rank `r` takes now: its processes, plus as
    /// many as it finishes in [`QUEUE_TARGET`] (within the prefetch bounds), less what it
    /// holds. A function not yet timed on the rank gets the least prefetch, so that a rank
    /// fast on tiny tasks is not handed a pile of slow ones before it shows how slow they are.
    fn room(&self, r: usize, entry: EntryOffset) -> u32 {
        let extra = match self.interval_ns.get(&(r, entry)) {
            Some(&ns) => (QUEUE_TARGET.as_nanos() as f64 / ns.max(1.0)).min(u32::MAX as f64) as u32,
            None => 0,
        };
        let window = self.processes + extra.clamp(self.min_extra, self.max_extra);
        window.saturating_sub(self.ranks[r].inflight)
    }

    /// Fails every rank silent past the rank timeout (at most every 50 ms).
    ///
    /// Silence counts only as seen by a listening rank 0: before judging, every message that
    /// has arrived is taken in (into the inbox), and after a stretch in which rank 0 did not
    /// listen (a slow callback runs on the pool thread) every rank's silence starts again, so
    /// that the pool thread does not take its own deafness for the ranks' silence.
    fn check_alive(&mut self, world: &SimpleCommunicator) {
        let now = Instant::now();
        let away = now.duration_since(self.last_check);
        if away < Duration::from_millis(50) {
            return;
        }
        self.last_check = now;
        if away > self.rank_timeout / 2 {
            // Rank 0 itself was not listening for a while (a slow callback on the pool thread):
            // what the ranks sent meanwhile may not even have left them (an MPI library moves
            // messages only inside its calls, MPICH's among them), so their silence is counted
            // afresh from now rather than from before rank 0 went deaf.
            for r in self.ranks.iter_mut() {
                r.heard = r.heard.max(now);
            }
            return;
        }
        let stale = |r: &RankState| !r.ended && now.duration_since(r.heard) > self.rank_timeout;
        if !self.ranks.iter().skip(1).any(stale) {
            return;
        }
        while let Some(got) = world.any_process().immediate_matched_probe_with_tag(TAG) {
            let (b, status) = got.matched_receive_vec::<u8>();
            let src = status.source_rank() as usize;
            if let Some(r) = self.ranks.get_mut(src) {
                r.heard = Instant::now();
            }
            self.inbox.push_back((src, b));
        }
        let now = Instant::now();
        for r in self.ranks.iter().skip(1).filter(|r| !r.ended) {
            let silent = now.duration_since(r.heard);
            if silent > self.rank_timeout {
                let why = format!(
                    "silent for {:.1} s (past the rank timeout of {:?}) with {} of the pool's tasks on it: \
                     its process stopped, or its node or network is gone",
                    silent.as_secs_f64(),
                    self.rank_timeout,
                    r.inflight
                );
                lost(&r.info, &why);
            }
        }
    }

    /// Sends `bytes` to `rank`, reading what comes in (into the inbox) until the send is done.
    fn send(&mut self, world: &SimpleCommunicator, rank: usize, bytes: &[u8]) {
        mpi::request::scope(|scope| {
            let mut req = world.process_at_rank(rank as i32).immediate_send_with_tag(scope, bytes, TAG);
            loop {
                match req.test() {
                    Ok(_) => return,
                    Err(r) => req = r,
                }
                match world.any_process().immediate_matched_probe_with_tag(TAG) {
                    Some(got) => {
                        let (b, status) = got.matched_receive_vec::<u8>();
                        let src = status.source_rank() as usize;
                        if let Some(r) = self.ranks.get_mut(src) {
                            r.heard = Instant::now();
                        }
                        self.inbox.push_back((src, b));
                    }
                    None => std::thread::yield_now(),
                }
                self.check_alive(world);
            }
        });
    }

    /// The next message from any rank, if one is there.
    fn receive(&mut self, world: &SimpleCommunicator) -> Option<(usize, Vec<u8>)> {
        if let Some(m) = self.inbox.pop_front() {
            return Some(m);
        }
        let (b, status) =
            world.any_process().immediate_matched_probe_with_tag(TAG)?.matched_receive_vec::<u8>();
        let src = status.source_rank() as usize;
        if let Some(r) = self.ranks.get_mut(src) {
            r.heard = Instant::now();
        }
        Some((src, b))
    }

    /// Hands what was received from `src` to its tasks; whether it was the rank's `Ended`.
    fn handle(&mut self, src: usize, bytes: &[u8]) -> bool {
        match decode::<ToRoot>(bytes) {
            Ok(ToRoot::Done(outcomes)) => {
                // The time since the rank's last outcome (or since it became busy), per outcome,
                // counts for the function of the first of them (a batch is mostly of one).
                let entry = outcomes.first().and_then(|d| self.pending.get(&d.id)).map(|(t, _)| t.entry);
                if let Some(r) = self.ranks.get_mut(src) {
                    let now = Instant::now();
                    if let (Some(e), true) = (entry, r.inflight > 0) {
                        let sample =
                            now.duration_since(r.mark).as_nanos() as f64 / outcomes.len().max(1) as f64;
                        let est = self.interval_ns.entry((src, e)).or_insert(sample);
                        *est = 0.5 * *est + 0.5 * sample;
                    }
                    r.mark = now;
                    r.inflight = r.inflight.saturating_sub(outcomes.len() as u32);
                }
                for d in outcomes {
                    let Some((task, _)) = self.pending.remove(&d.id) else { continue };
                    if d.kind == 0 {
                        Self::complete(task, Ok(&d.body));
                    } else {
                        let text = String::from_utf8_lossy(&d.body).into_owned();
                        Self::complete(task, Err(code_error(d.kind, text).at(d.id, Some(d.pid))));
                    }
                }
                false
            }
            Ok(ToRoot::Alive) => false,
            Ok(ToRoot::Ended) => true,
            Ok(_) => {
                log::error!("multiproc: MPI rank {src} answered out of turn");
                false
            }
            Err(e) => {
                log::error!("multiproc: MPI rank {src}: {e}");
                false
            }
        }
    }

    /// Up to `k` queued tasks as one message to a rank (at least one, at most [`BATCH_BYTES`]).
    fn batch(&mut self, k: u32) -> Vec<(TaskMsg, Task)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < k as usize && bytes < BATCH_BYTES {
            let Some(task) = self.queue.pop_front() else { break };
            if !task.fds.is_empty() {
                let e = TaskError::new(TaskErrorKind::Codec, "handles cannot travel to another MPI rank");
                Self::complete(task, Err(e));
                continue;
            }
            match backend::task_call(&task) {
                Ok((entry, args)) => {
                    bytes += args.len() + 16;
                    out.push((TaskMsg { id: task.id, entry, args: args.to_vec() }, task));
                }
                Err(e) => Self::complete(task, Err(TaskError::new(TaskErrorKind::Codec, e.to_string()))),
            }
        }
        out
    }

    /// Sends what ranks have room for, reads what they sent back.
    fn round(&mut self) -> Round {
        let guard = root();
        let Some(world) = guard.as_ref().and_then(super::Root::world) else { return Round::Gone };
        let mut busy = false;
        let n = self.ranks.len();
        while let Some(front) = self.queue.front() {
            let entry = front.entry;
            let open: Vec<usize> = (0..n - 1)
                .map(|k| 1 + (self.next_rank - 1 + k) % (n - 1))
                .filter(|&r| self.room(r, entry) > 0)
                .collect();
            if open.is_empty() {
                break;
            }
            // Each rank with room gets its share of what is queued, so that a burst of tasks
            // spreads over the ranks rather than filling the first one's window.
            let share = self.queue.len().div_ceil(open.len()) as u32;
            for r in open {
                let Some(front) = self.queue.front() else { break };
                let batch = self.batch(self.room(r, front.entry).min(share));
                if batch.is_empty() {
                    continue;
                }
                let (msgs, tasks): (Vec<TaskMsg>, Vec<Task>) = batch.into_iter().unzip();
                let bytes = encode(&ToWorker::Tasks(msgs));
                let state = &mut self.ranks[r];
                if state.inflight == 0 {
                    state.mark = Instant::now();
                }
                state.inflight += tasks.len() as u32;
                for t in tasks {
                    self.pending.insert(t.id, (t, r));
                }
                self.send(&world, r, &bytes);
                self.next_rank = 1 + r % (n - 1);
                busy = true;
            }
        }
        while let Some((src, bytes)) = self.receive(&world) {
            busy = true;
            self.handle(src, &bytes);
        }
        self.check_alive(&world);
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
        for rank in 1..self.ranks.len() {
            self.send(&world, rank, &bye);
        }
        let mut idle = 0u32;
        while self.ranks.iter().skip(1).any(|r| !r.ended) {
            match self.receive(&world) {
                Some((src, bytes)) => {
                    idle = 0;
                    if self.handle(src, &bytes) {
                        if let Some(r) = self.ranks.get_mut(src) {
                            r.ended = true;
                        }
                    }
                }
                None => {
                    idle = idle.saturating_add(1);
                    if idle > 64 {
                        std::thread::sleep(Duration::from_micros(100));
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
            self.check_alive(&world);
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
                // Nothing is out: wake for new tasks, or to see the ranks' heartbeats.
                Duration::from_millis(20)
            } else if idle > 64 {
                Duration::from_micros(100)
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
