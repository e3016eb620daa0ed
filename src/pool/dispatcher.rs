//! The dispatcher: one thread per pool that owns the workers, sends them tasks and reads their
//! results (Python's task, result and worker handler threads in one event loop).
//!
//! Callers encode a task into a complete frame on their own thread and push it on the
//! [`Shared`] intake; the dispatcher wakes (through a socket, only when it sleeps), assigns
//! tasks to workers and writes many frames per system call, never blocking on one worker. It
//! polls every worker's socket and pidfd: results are read in bulk and handed to their jobs;
//! a worker that exits is reaped and replaced.
//!
//! Assignment: a worker gets a task when it is idle, or when the estimated run time of what it
//! already holds plus this task stays under [`QUEUE_BUDGET_NS`]. Estimates are per function
//! (a running average of the times workers report), so tiny tasks travel in large batches
//! while long tasks go one at a time to whichever worker is free, and a slow task never has a
//! queue of others stuck behind it.
//!
//! Failures: when a worker dies, the slot words (`slots.rs`) tell which of its tasks was running:
//! that task fails with the signal or exit code, and the tasks it held but had not finished are
//! run by another worker. A task over `task_timeout` (counted from its start in the worker) gets
//! its worker killed (then the same). One case runs a task twice: a worker batches results
//! (at most 200 µs worth, and only of functions known to be quick), and if it dies while holding
//! some, their tasks count as unfinished and run again elsewhere.
//!
//! Cancellation: a task cancelled while queued is skipped when its turn comes, and the queue is
//! purged of such tasks (closing their arguments' handles) once they are a sixteenth of it. A
//! running task whose caller asked for it to be killed (an `Executor` future dropped with
//! `OnDrop::Kill`) gets its worker killed once the slot words show it running (checked at
//! growing intervals, from 1 ms up to 64 ms, while it waits behind others in that worker), and
//! the worker is replaced as for any death; the worker is given no more tasks meanwhile.
//!
//! `terminate` (or dropping the pool) stops everything at once: SIGTERM, SIGKILL for workers
//! still there after a grace period, every worker reaped, every unfinished task failed.

use super::protocol::{self, FrameReader, OutBuf};
use super::result::{lock, Sink};
use super::slots::Slots;
use super::worker::{worker_main, WorkerConfig, WorkerSocket};
use crate::error::{Error, Result};
use crate::error::{TaskError, TaskErrorKind};
use crate::process::{ExitStatus, Process, StartMethod};
use crate::sys::{self, Watch};
use crate::target::EntryOffset;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Estimated work (ns) a worker may hold beyond what it runs now.
const QUEUE_BUDGET_NS: u64 = 2_000_000;
/// The estimate used for a function never timed yet: larger than the budget, so that such a
/// task is only given to an idle worker.
const UNKNOWN_NS: u64 = QUEUE_BUDGET_NS + 1;
/// How long `terminate` waits after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_millis(200);
/// The first and the longest interval between checks of whether a task to be killed has begun.
const KILL_CHECK_FIRST: Duration = Duration::from_millis(1);
const KILL_CHECK_MAX: Duration = Duration::from_millis(64);

/// One unit of work: a task, or a chunk of a map.
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) entry: EntryOffset,
    /// The complete `RUN` frame.
    pub(crate) frame: Vec<u8>,
    /// Descriptors of the handles in the arguments, kept open until the task is done.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) index: usize,
    est: u64,
}

impl Task {
    pub(crate) fn new(
        id: u64,
        entry: EntryOffset,
        (frame, fds): (Vec<u8>, Vec<OwnedFd>),
        sink: Arc<dyn Sink>,
        index: usize,
    ) -> Task {
        Task { id, entry, frame, fds, sink, index, est: 0 }
    }

    fn fail(self, e: TaskError) {
        self.sink.complete(self.index, Err(e.at(self.id, None)));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting work.
    Running,
    /// `close()` was called: finish the work, then the workers exit.
    Closed,
    /// `terminate()` was called.
    Terminating,
    /// The dispatcher has stopped.
    Finished,
}

/// What callers and the dispatcher share, under one lock.
pub(crate) struct Intake {
    pub(crate) tasks: VecDeque<Task>,
    pub(crate) phase: Phase,
    sleeping: bool,
    /// Lazy jobs (`imap` iterators) that may still submit after `close`.
    pub(crate) open_jobs: usize,
    cancel_queued: bool,
    /// Queued tasks cancelled since the dispatcher last looked.
    withdrawn: usize,
    /// Tasks whose callers asked for them to be killed.
    kill: Vec<u64>,
}

/// The pool's shared state: the intake, and the socket that wakes the dispatcher.
pub(crate) struct Shared {
    pub(crate) intake: Mutex<Intake>,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Result<Arc<Shared>> {
        let (wake_rx, wake_tx) = sys::socketpair().map_err(Error::io("creating the pool's wake socket"))?;
        Ok(Arc::new(Shared {
            intake: Mutex::new(Intake {
                tasks: VecDeque::new(),
                phase: Phase::Running,
                sleeping: false,
                open_jobs: 0,
                cancel_queued: false,
                withdrawn: 0,
                kill: Vec::new(),
            }),
            wake_rx,
            wake_tx,
            next_id: AtomicU64::new(1),
        }))
    }

    /// A fresh task id (never 0).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn wake_if_sleeping(&self, intake: &mut Intake) {
        if intake.sleeping {
            intake.sleeping = false;
            let _ = sys::send_now(self.wake_tx.as_fd(), &[1], &[]);
        }
    }

    /// Queues tasks. New work needs a running pool; an open lazy job may go on after `close`.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>, from_open_job: bool) -> Result<()> {
        let mut intake = lock(&self.intake);
        match intake.phase {
            Phase::Running => {}
            Phase::Closed if from_open_job => {}
            _ => return Err(Error::Closed("pool")),
        }
        intake.tasks.extend(tasks);
        self.wake_if_sleeping(&mut intake);
        Ok(())
    }

    /// Registers a lazy job; fails unless the pool is running.
    pub(crate) fn open_job(&self) -> Result<()> {
        let mut intake = lock(&self.intake);
        if intake.phase != Phase::Running {
            return Err(Error::Closed("pool"));
        }
        intake.open_jobs += 1;
        Ok(())
    }

    pub(crate) fn close_job(&self) {
        let mut intake = lock(&self.intake);
        intake.open_jobs -= 1;
        self.wake_if_sleeping(&mut intake);
    }

    pub(crate) fn phase(&self) -> Phase {
        lock(&self.intake).phase
    }

    /// Moves the pool to `phase` (never backwards); whether it moved.
    pub(crate) fn set_phase(&self, phase: Phase) -> bool {
        let mut intake = lock(&self.intake);
        let rank = |p: Phase| p as u8;
        if rank(phase) <= rank(intake.phase) {
            return false;
        }
        intake.phase = phase;
        self.wake_if_sleeping(&mut intake);
        true
    }

    /// For a backend other than the dispatcher: waits up to `timeout` unless there are new
    /// tasks or the phase or open-job count differ from `seen`, then takes the new tasks.
    #[cfg_attr(not(any(feature = "redis", feature = "mpi")), allow(dead_code))]
    pub(crate) fn take_or_wait(&self, seen: (Phase, usize), timeout: Duration) -> (Vec<Task>, Phase, usize) {
        let mut intake = lock(&self.intake);
        if intake.tasks.is_empty() && intake.phase == seen.0 && intake.open_jobs == seen.1 {
            intake.sleeping = true;
            drop(intake);
            let mut watch = [Watch::new(self.wake_rx.as_fd(), false)];
            let _ = sys::poll_watches(&mut watch, Some(Instant::now() + timeout));
            let mut scratch = [0u8; 64];
            while let Ok(Some(n)) = sys::recv_now(self.wake_rx.as_fd(), &mut scratch, &mut Vec::new()) {
                if n == 0 {
                    break;
                }
            }
            intake = lock(&self.intake);
            intake.sleeping = false;
        }
        intake.cancel_queued = false;
        // A broker's workers are not ours to kill; cancelled tasks are skipped at their turn.
        intake.withdrawn = 0;
        intake.kill.clear();
        (intake.tasks.drain(..).collect(), intake.phase, intake.open_jobs)
    }

    /// Tells the dispatcher that a queued task was cancelled (so that it purges its queue in time).
    pub(crate) fn withdrawn(&self) {
        let mut intake = lock(&self.intake);
        intake.withdrawn += 1;
        self.wake_if_sleeping(&mut intake);
    }

    /// Asks the dispatcher to kill task `id` if a worker runs it (its worker is replaced).
    pub(crate) fn kill_task(&self, id: u64) {
        let mut intake = lock(&self.intake);
        intake.kill.push(id);
        self.wake_if_sleeping(&mut intake);
    }

    /// Asks the dispatcher to cancel every task that has not started.
    pub(crate) fn cancel_queued(&self) {
        let mut intake = lock(&self.intake);
        intake.cancel_queued = true;
        self.wake_if_sleeping(&mut intake);
    }
}

/// How to start a worker.
pub(crate) struct Launch {
    pub(crate) method: StartMethod,
    pub(crate) config: WorkerConfig,
    pub(crate) slots: Slots,
    pub(crate) started: u32,
}

impl Launch {
    pub(crate) fn start_worker(&mut self, index: usize) -> Result<Worker> {
        let (ours, theirs) = sys::socketpair().map_err(Error::io("creating a worker socket"))?;
        self.started += 1;
        let prefix = match self.method {
            StartMethod::Fork => "Fork",
            StartMethod::Spawn => "Spawn",
            StartMethod::Forkserver => "ForkServer",
        };
        let args = (WorkerSocket(theirs), self.slots.region().clone(), index as u32, self.config.clone());
        let process = Process::builder(worker_main, args)
            .name(format!("{prefix}PoolWorker-{}", self.started))
            .daemon(true)
            .start_method(self.method)
            .start()?;
        let pid = process.pid().expect("a started process has a pid");
        Ok(Worker {
            process,
            pid,
            sock: ours,
            out: OutBuf::default(),
            reader: FrameReader::new(),
            outstanding: VecDeque::new(),
            load_ns: 0,
            sent: 0,
            ready: false,
            exit_sent: false,
            timed_out: None,
            doomed: Vec::new(),
            killed_for: None,
            eof: false,
            write_failed: false,
        })
    }
}

/// A live worker, as the dispatcher sees it.
pub(crate) struct Worker {
    process: Process,
    pid: i32,
    sock: OwnedFd,
    out: OutBuf,
    reader: FrameReader,
    /// Tasks sent and not finished, in the order the worker runs them.
    outstanding: VecDeque<Task>,
    load_ns: u64,
    sent: u64,
    ready: bool,
    exit_sent: bool,
    timed_out: Option<u64>,
    /// Tasks it holds whose callers asked for them to be killed, not yet seen running.
    doomed: Vec<u64>,
    /// The task it was killed for running, once killed so.
    killed_for: Option<u64>,
    eof: bool,
    write_failed: bool,
}

impl Worker {
    /// Kills and reaps a worker that never served (the pool failed to start).
    pub(crate) fn abort(self) {
        let _ = self.process.kill();
        let _ = self.process.join();
    }
}

/// The dispatcher thread's state.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    launch: Launch,
    workers: Vec<Option<Worker>>,
    waiting: VecDeque<Task>,
    estimates: HashMap<EntryOffset, u64>,
    maxtasks: Option<u64>,
    task_timeout: Option<Duration>,
    broken: Option<TaskError>,
    phase: Phase,
    open_jobs: usize,
    /// Workers in a row that died before they were ready.
    startup_failures: u32,
    /// Queued tasks cancelled and not yet purged from `waiting`.
    withdrawn: usize,
    /// The interval before the next check of doomed tasks, and when that check is due.
    kill_check: (Duration, Option<Instant>),
}

fn how_it_ended(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match s.signal() {
            Some(sig) => format!("killed by {}", sys::signal_name(sig)),
            None => format!("exited with code {}", s.exitcode()),
        },
        None => "ended".to_string(),
    }
}

impl Dispatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        launch: Launch,
        workers: Vec<Worker>,
        maxtasks: Option<u64>,
        task_timeout: Option<Duration>,
    ) -> Dispatcher {
        Dispatcher {
            shared,
            launch,
            workers: workers.into_iter().map(Some).collect(),
            waiting: VecDeque::new(),
            estimates: HashMap::new(),
            maxtasks,
            task_timeout,
            broken: None,
            phase: Phase::Running,
            open_jobs: 0,
            startup_failures: 0,
            withdrawn: 0,
            kill_check: (KILL_CHECK_FIRST, None),
        }
    }

    /// The thread's body: serve until closed and done, or terminated; then stop every worker
    /// and fail whatever is unfinished. A panic in here is contained the same way.
    pub(crate) fn run(mut self) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        let why = match served {
            Ok(()) => {
                TaskError::new(TaskErrorKind::Terminated, "the pool was terminated before the task finished")
            }
            Err(_) => TaskError::new(TaskErrorKind::Broken, "the pool's dispatcher thread panicked"),
        };
        self.finish(why);
    }

    fn serve(&mut self) {
        loop {
            if !self.take_intake() {
                return;
            }
            self.top_up();
            self.dispatch();
            if self.phase == Phase::Closed && self.waiting.is_empty() && self.open_jobs == 0 {
                self.send_exits();
                if self.workers.iter().all(Option::is_none) {
                    return;
                }
            }
            self.write_all();
            self.wait_and_handle();
        }
    }

    /// Moves new tasks to `waiting` and applies commands; `false` when terminating.
    fn take_intake(&mut self) -> bool {
        let (cancel, kill) = {
            let mut intake = lock(&self.shared.intake);
            self.phase = intake.phase;
            self.open_jobs = intake.open_jobs;
            self.waiting.extend(intake.tasks.drain(..));
            self.withdrawn += std::mem::take(&mut intake.withdrawn);
            (std::mem::take(&mut intake.cancel_queued), std::mem::take(&mut intake.kill))
        };
        if self.phase == Phase::Terminating {
            return false;
        }
        if cancel {
            self.waiting.retain(|t| !t.sink.cancel(t.index));
        }
        // Purged once the cancelled are a sixteenth of the queue: each purge costs the queue's
        // length, paid for by that many cancellations.
        if self.withdrawn > 0 && self.withdrawn * 16 >= self.waiting.len() {
            self.waiting.retain(|t| !t.sink.cancelled(t.index));
            self.withdrawn = 0;
        }
        if !kill.is_empty() {
            self.doom(kill);
        }
        self.kill_doomed();
        if let Some(e) = &self.broken {
            for t in self.waiting.drain(..) {
                t.fail(e.clone());
            }
        }
        true
    }

    fn estimate(&self, entry: &EntryOffset) -> u64 {
        self.estimates.get(entry).copied().unwrap_or(UNKNOWN_NS)
    }

    fn pick_worker(&self, est: u64) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, w) in self.workers.iter().enumerate() {
            let Some(w) = w else { continue };
            if w.exit_sent || w.timed_out.is_some() || w.write_failed || w.killed_for.is_some() {
                continue;
            }
            if !w.doomed.is_empty() {
                continue; // killed soon: what it would take would only run again elsewhere
            }
            if self.maxtasks.is_some_and(|m| w.sent >= m) {
                continue;
            }
            let fits = w.outstanding.is_empty() || w.load_ns.saturating_add(est) <= QUEUE_BUDGET_NS;
            if fits && best.is_none_or(|(_, load)| w.load_ns < load) {
                best = Some((i, w.load_ns));
            }
        }
        best.map(|(i, _)| i)
    }

    fn dispatch(&mut self) {
        while let Some(front) = self.waiting.front() {
            let est = self.estimate(&front.entry);
            let Some(i) = self.pick_worker(est) else { break };
            let mut task = self.waiting.pop_front().expect("front exists");
            if !task.sink.start(task.index) {
                continue; // cancelled
            }
            task.est = est;
            let w = self.workers[i].as_mut().expect("picked a live worker");
            w.out.push(&task.frame, &task.fds);
            w.load_ns = w.load_ns.saturating_add(est);
            w.sent += 1;
            w.outstanding.push_back(task);
        }
    }

    fn send_exits(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            if w.outstanding.is_empty() && !w.exit_sent {
                w.out.push(&protocol::exit_frame(), &[]);
                w.exit_sent = true;
            }
        }
    }

    fn write_all(&mut self) {
        for w in self.workers.iter_mut().flatten() {
            if !w.out.is_empty() && !w.write_failed && w.out.write_now(w.sock.as_fd()).is_err() {
                // The worker is gone or going; its pidfd will say so.
                w.write_failed = true;
            }
        }
    }

    /// The earliest instant at which a running task may pass its `task_timeout`.
    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.task_timeout?;
        let now_ns = sys::monotonic_ns();
        let timeout_ns = timeout.as_nanos().min(u64::MAX as u128) as u64;
        let mut earliest: Option<u64> = None;
        for (i, w) in self.workers.iter().enumerate() {
            let Some(w) = w else { continue };
            if w.outstanding.is_empty() || w.timed_out.is_some() || w.killed_for.is_some() {
                continue;
            }
            let at = match self.launch.slots.slot(i).running() {
                Some((id, started)) if w.outstanding.iter().any(|t| t.id == id) => started,
                _ => now_ns,
            };
            let due = at.saturating_add(timeout_ns);
            earliest = Some(earliest.map_or(due, |e| e.min(due)));
        }
        earliest.map(|due| Instant::now() + Duration::from_nanos(due.saturating_sub(now_ns)))
    }

    fn wait_and_handle(&mut self) {
        let deadline = match (self.next_deadline(), self.kill_check.1) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        {
            let mut intake = lock(&self.shared.intake);
            if !intake.tasks.is_empty()
                || intake.phase != self.phase
                || intake.cancel_queued
                || intake.withdrawn > 0
                || !intake.kill.is_empty()
                || intake.open_jobs != self.open_jobs
            {
                return;
            }
            intake.sleeping = true;
        }
        // Watches: the wake socket, then per worker its socket and its pidfd.
        let mut index = Vec::new();
        let polled = {
            let mut watches = vec![Watch::new(self.shared.wake_rx.as_fd(), false)];
            for (i, w) in self.workers.iter().enumerate() {
                let Some(w) = w else { continue };
                if !w.eof {
                    let write = !w.out.is_empty() && !w.write_failed;
                    watches.push(Watch::new(w.sock.as_fd(), write));
                    index.push((i, true));
                }
                let pidfd = w.process.sentinel().expect("a started worker has a sentinel");
                watches.push(Watch::new(pidfd, false));
                index.push((i, false));
            }
            match sys::poll_watches(&mut watches, deadline) {
                Ok(_) => Some(watches.iter().map(|w| (w.readable, w.writable)).collect::<Vec<_>>()),
                Err(e) => {
                    log::error!("multiproc: the pool's poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
            }
        };
        lock(&self.shared.intake).sleeping = false;
        let Some(ready) = polled else { return };
        if ready[0].0 {
            let mut scratch = [0u8; 64];
            while let Ok(Some(n)) = sys::recv_now(self.shared.wake_rx.as_fd(), &mut scratch, &mut Vec::new())
            {
                if n == 0 {
                    break;
                }
            }
        }
        let mut exited = Vec::new();
        for (&(i, is_sock), &(readable, writable)) in index.iter().zip(&ready[1..]) {
            if is_sock {
                if readable {
                    self.read_results(i);
                }
                if writable {
                    if let Some(w) = self.workers[i].as_mut() {
                        if w.out.write_now(w.sock.as_fd()).is_err() {
                            w.write_failed = true;
                        }
                    }
                }
            } else if readable {
                exited.push(i);
            }
        }
        for i in exited {
            self.handle_exit(i);
        }
        self.check_deadlines();
    }

    /// Reads what worker `i`'s socket holds and completes the finished tasks.
    fn read_results(&mut self, i: usize) {
        let Some(w) = self.workers[i].as_mut() else { return };
        match w.reader.read_now(w.sock.as_fd()) {
            Ok(Some(0)) | Err(_) => w.eof = true,
            Ok(_) => {}
        }
        self.take_results(i);
    }

    fn take_results(&mut self, i: usize) {
        let Dispatcher { workers, estimates, broken, .. } = self;
        let Some(w) = workers[i].as_mut() else { return };
        loop {
            let (range, _fds) = match w.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    log::error!("multiproc: worker pid {} broke the protocol ({e}); killing it", w.pid);
                    let _ = w.process.kill();
                    w.eof = true;
                    return;
                }
            };
            let Ok((h, body)) = protocol::parse_result(w.reader.bytes(range)) else {
                let _ = w.process.kill();
                w.eof = true;
                return;
            };
            match h.tag {
                protocol::READY => {
                    w.ready = true;
                    continue;
                }
                protocol::INIT_FAILED => {
                    let msg = String::from_utf8_lossy(body);
                    broken.get_or_insert_with(|| {
                        TaskError::new(
                            TaskErrorKind::Broken,
                            format!("the pool's initializer failed in worker pid {}: {msg}", w.pid),
                        )
                    });
                    continue;
                }
                _ => {}
            }
            let Some(pos) = w.outstanding.iter().position(|t| t.id == h.id) else { continue };
            let task = w.outstanding.remove(pos).expect("position is in range");
            if !w.doomed.is_empty() {
                w.doomed.retain(|&id| id != h.id); // finished before it could be killed
            }
            w.load_ns = w.load_ns.saturating_sub(task.est);
            estimates.entry(task.entry).and_modify(|e| *e = (*e * 3 + h.nanos) / 4).or_insert(h.nanos);
            let outcome = match h.tag {
                protocol::RETURNED => Ok(body),
                protocol::PANICKED => {
                    Err(TaskError::new(TaskErrorKind::Panicked, String::from_utf8_lossy(body))
                        .at(task.id, Some(w.pid)))
                }
                _ => Err(TaskError::new(TaskErrorKind::Codec, String::from_utf8_lossy(body))
                    .at(task.id, Some(w.pid))),
            };
            task.sink.complete(task.index, outcome);
        }
    }

    /// Worker `i` has exited: take its last results, reap it, settle its tasks. (`top_up`
    /// replaces it.)
    fn handle_exit(&mut self, i: usize) {
        while let Some(w) = self.workers[i].as_mut() {
            if w.eof {
                break;
            }
            match w.reader.read_now(w.sock.as_fd()) {
                Ok(Some(n)) if n > 0 => {}
                _ => w.eof = true,
            }
            self.take_results(i);
        }
        let Some(mut w) = self.workers[i].take() else { return };
        let status = w.process.join().ok();
        let slot = self.launch.slots.slot(i);
        let running = slot.running().map(|(id, _)| id);
        slot.end();
        if w.ready {
            self.startup_failures = 0;
        } else {
            // Died before it could take tasks: its initializer crashed, or the process could not
            // start at all. Restarting forever is what Python does; the pool reports it instead.
            self.startup_failures += 1;
            let what = if self.launch.config.init.is_some() {
                "while running its initializer"
            } else {
                "while starting"
            };
            if self.broken.is_none() && (self.launch.config.init.is_some() || self.startup_failures >= 3) {
                self.broken = Some(TaskError::new(
                    TaskErrorKind::Broken,
                    format!("pool worker pid {} {} {what}", w.pid, how_it_ended(status)),
                ));
            }
        }
        let mut requeue = Vec::new();
        for task in w.outstanding.drain(..) {
            if Some(task.id) == w.killed_for || w.doomed.contains(&task.id) {
                let msg = if Some(task.id) == w.killed_for {
                    format!(
                        "task {} was cancelled while running; worker pid {} was killed and replaced",
                        task.id, w.pid
                    )
                } else {
                    format!(
                        "task {} was cancelled; worker pid {} {} before it ran",
                        task.id,
                        w.pid,
                        how_it_ended(status)
                    )
                };
                let id = task.id;
                task.sink.complete(
                    task.index,
                    Err(TaskError::new(TaskErrorKind::Cancelled, msg).at(id, Some(w.pid))),
                );
            } else if Some(task.id) == w.timed_out {
                let t = self.task_timeout.unwrap_or_default();
                let msg = format!(
                    "task {} ran longer than the task timeout of {t:?}; worker pid {} was killed and replaced",
                    task.id, w.pid
                );
                let id = task.id;
                task.sink.complete(
                    task.index,
                    Err(TaskError::new(TaskErrorKind::TimedOut, msg).at(id, Some(w.pid))),
                );
            } else if Some(task.id) == running {
                let msg =
                    format!("worker pid {} {} while running task {}", w.pid, how_it_ended(status), task.id);
                let id = task.id;
                task.sink.complete(
                    task.index,
                    Err(TaskError::new(TaskErrorKind::WorkerDied, msg).at(id, Some(w.pid))),
                );
            } else {
                requeue.push(task);
            }
        }
        for task in requeue.into_iter().rev() {
            self.waiting.push_front(task);
        }
        if let Some(e) = &self.broken {
            for t in self.waiting.drain(..) {
                t.fail(e.clone());
            }
        }
    }

    /// Starts workers in empty places while the pool has or may get work.
    fn top_up(&mut self) {
        let wanted = match self.phase {
            Phase::Running => true,
            Phase::Closed => !self.waiting.is_empty() || self.open_jobs > 0,
            Phase::Terminating | Phase::Finished => false,
        };
        if !wanted || self.broken.is_some() {
            return;
        }
        for i in 0..self.workers.len() {
            if self.workers[i].is_some() {
                continue;
            }
            match self.launch.start_worker(i) {
                Ok(new) => self.workers[i] = Some(new),
                Err(e) => {
                    let e = TaskError::new(TaskErrorKind::Broken, format!("cannot start a pool worker: {e}"));
                    for t in self.waiting.drain(..) {
                        t.fail(e.clone());
                    }
                    self.broken = Some(e);
                    return;
                }
            }
        }
    }

    /// Kills the workers whose running task is past `task_timeout`.
    fn check_deadlines(&mut self) {
        let Some(timeout) = self.task_timeout else { return };
        let timeout_ns = timeout.as_nanos().min(u64::MAX as u128) as u64;
        let now = sys::monotonic_ns();
        for (i, w) in self.workers.iter_mut().enumerate() {
            let Some(w) = w else { continue };
            if w.timed_out.is_some() || w.killed_for.is_some() || w.outstanding.is_empty() {
                continue;
            }
            if let Some((id, started)) = self.launch.slots.slot(i).running() {
                if now >= started.saturating_add(timeout_ns) && w.outstanding.iter().any(|t| t.id == id) {
                    w.timed_out = Some(id);
                    let _ = w.process.kill();
                }
            }
        }
    }

    /// Marks the tasks in `ids` to be killed once running: on the worker that holds each. A task
    /// back in `waiting` (its worker died before running it) is dropped there; one found nowhere
    /// has finished.
    fn doom(&mut self, ids: Vec<u64>) {
        for id in ids {
            if let Some(w) =
                self.workers.iter_mut().flatten().find(|w| w.outstanding.iter().any(|t| t.id == id))
            {
                if w.killed_for.is_none() && !w.doomed.contains(&id) {
                    w.doomed.push(id);
                }
            } else if let Some(pos) = self.waiting.iter().position(|t| t.id == id) {
                let task = self.waiting.remove(pos).expect("position is in range");
                let msg = format!("task {id} was cancelled before it ran again");
                task.sink
                    .complete(task.index, Err(TaskError::new(TaskErrorKind::Cancelled, msg).at(id, None)));
            }
        }
        self.kill_check = (KILL_CHECK_FIRST, None);
    }

    /// Kills each worker that runs a doomed task, and sets when to look again at the doomed
    /// tasks that have not begun.
    fn kill_doomed(&mut self) {
        let mut waiting = false;
        for (i, slot) in self.workers.iter_mut().enumerate() {
            let Some(w) = slot else { continue };
            if w.doomed.is_empty() || w.killed_for.is_some() {
                continue;
            }
            match self.launch.slots.slot(i).running() {
                Some((id, _)) if w.doomed.contains(&id) => {
                    log::debug!("killing pool worker pid {} for its cancelled task {id}", w.pid);
                    w.doomed.retain(|&d| d != id);
                    w.killed_for = Some(id);
                    let _ = w.process.kill();
                }
                _ => waiting = true,
            }
        }
        let now = Instant::now();
        self.kill_check = match self.kill_check {
            _ if !waiting => (KILL_CHECK_FIRST, None),
            (every, Some(due)) if now < due => (every, Some(due)),
            (every, Some(_)) => {
                let next = (every * 2).min(KILL_CHECK_MAX);
                (next, Some(now + next))
            }
            (every, None) => (every, Some(now + every)),
        };
    }

    /// Stops every worker and fails what is unfinished with `why`.
    fn finish(&mut self, why: TaskError) {
        let leftover: Vec<Task> = {
            let mut intake = lock(&self.shared.intake);
            intake.phase = Phase::Finished;
            intake.tasks.drain(..).collect()
        };
        let live: Vec<Worker> = self.workers.iter_mut().filter_map(Option::take).collect();
        for w in &live {
            let _ = w.process.terminate();
        }
        let deadline = Instant::now() + TERMINATE_GRACE;
        for w in &live {
            let left = deadline.saturating_duration_since(Instant::now());
            if !matches!(w.process.join_timeout(left), Ok(Some(_))) {
                let _ = w.process.kill();
            }
        }
        let why = self.broken.clone().unwrap_or(why);
        for mut w in live {
            let _ = w.process.join();
            for t in w.outstanding.drain(..) {
                t.fail(why.clone());
            }
        }
        for t in self.waiting.drain(..).chain(leftover) {
            t.fail(why.clone());
        }
    }
}
