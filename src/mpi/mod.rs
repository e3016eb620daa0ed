//! The same [`Pool`](crate::Pool) and [`Executor`](crate::Executor) on MPI ranks (cargo feature
//! `mpi`, through the `mpi` crate), for programs started by `mpirun -n N ./app` or `srun`.
//!
//! As `python -m mpi4py.futures` arranges, rank 0 runs the program and the other ranks serve
//! the pools it builds with [`PoolBuilder`]; a worker rank never runs the program's own code. A
//! program opts in once, at module level, with [`mpi_workers!`](crate::mpi_workers) (or the
//! environment variable [`WORKERS_ENV`]`=1`): a constructor then sees the launcher's rank
//! before `main` runs, and on a rank other than 0 serves pools until rank 0's program exits.
//!
//! ```no_run
//! multiproc::mpi_workers!();
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let pool = multiproc::mpi::PoolBuilder::new().build()?;
//!     assert_eq!(pool.map(square, 1..4).get()?, vec![1, 4, 9]);
//!     pool.close();
//!     pool.join()
//! }
//! ```
//!
//! Crash-proof per node: a worker rank does not run tasks itself; it hosts a local
//! [`Pool`](crate::Pool) of worker processes, so a task that panics, kills its process
//! (a segfault, the OOM killer) or runs past the task timeout fails alone, and the rank and the
//! job live on. A rank that is lost (killed, its node gone, or silent past
//! [`PoolBuilder::rank_timeout`]) is fail-stop: rank 0 prints which rank it lost and aborts the
//! whole job (exit status [`LOST_RANK_EXIT`]), so the program never hangs waiting for it and no
//! task runs twice; the work in flight is lost with the job. (The Redis pool is at-least-once
//! instead: a lost worker's tasks go to another.)
//!
//! Rooms: `pool.rs` (rank 0's backend and the builder), `worker.rs` (a worker rank's loop),
//! this file (the launcher's ranks, start-up before `main`, messages between ranks).

mod pool;
mod worker;

pub use pool::PoolBuilder;

use crate::error::{Error, Result};
use crate::pool::backend::{TaskError, TaskErrorKind};
use crate::target::EntryOffset;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Set to `1` in a program's environment to make its ranks other than 0 serve MPI pools even
/// without [`mpi_workers!`](crate::mpi_workers) in the program.
pub const WORKERS_ENV: &str = "MP_MPI_WORKERS";

/// Set by a rank for its own children: they are not ranks, whatever the launcher's variables.
const RANK_PROCESS_ENV: &str = "MP_MPI_RANK_PROCESS";

/// The MPI tag of this crate's messages between ranks.
const TAG: i32 = 0x6d70;

/// Marks a program whose ranks other than 0 serve MPI pools (internal to [`mpi_workers!`](crate::mpi_workers)).
#[doc(hidden)]
#[linkme::distributed_slice]
pub static WORKER_RANKS: [u8];

/// Opts the program in to MPI pools: under `mpirun`/`srun`, its ranks other than 0 serve the
/// pools rank 0 builds with [`mpi::PoolBuilder`](crate::mpi::PoolBuilder), and never run
/// `main`. Write it once, at module level, in the program's crate.
#[macro_export]
macro_rules! mpi_workers {
    () => {
        #[$crate::__private::linkme::distributed_slice($crate::mpi::WORKER_RANKS)]
        #[linkme(crate = $crate::__private::linkme)]
        static __MULTIPROCESSING_MPI_WORKERS: u8 = 1;
    };
}

/// This process's rank as the launcher gave it (Open MPI, PMIx, PMI/MPICH/Hydra, Slurm), or
/// `None` when no launcher started it.
pub fn launcher_rank() -> Option<u32> {
    if std::env::var_os(RANK_PROCESS_ENV).is_some() {
        return None;
    }
    ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|r| r.trim().parse().ok()))
}

fn opted_in() -> bool {
    !WORKER_RANKS.is_empty() || std::env::var(WORKERS_ENV).is_ok_and(|v| v == "1")
}

/// Rank 0's hold on MPI: set up before `main` in an opted-in program under a launcher.
pub(crate) struct Root {
    universe: Option<Universe>,
    pub(crate) size: i32,
    /// A pool is being served (one at a time).
    pub(crate) in_use: bool,
    /// The ranks sharing this machine are watched for their exit (from the first pool on).
    pub(crate) watching: bool,
}

/// Set once the program exits: ranks end on purpose from then on.
static EXITING: AtomicBool = AtomicBool::new(false);

/// The exit status rank 0 aborts the job with when it has lost a rank.
pub const LOST_RANK_EXIT: i32 = 75;

/// A worker rank as rank 0 knows it.
#[derive(Clone, Debug)]
pub(crate) struct RankInfo {
    pub(crate) rank: i32,
    pub(crate) pid: u32,
    pub(crate) host: String,
}

/// Rank 0 has lost a worker rank: says so, naming it, and aborts the job. An MPI job is
/// fail-stop (its ranks cannot be replaced), so this is the one honest outcome; without it
/// the launcher would end the job anyway, or rank 0 would wait for ever on a silent node.
pub(crate) fn lost(who: &RankInfo, why: &str) -> ! {
    if EXITING.load(Ordering::SeqCst) {
        // MPI may be finalized already; the program is ending anyway.
        std::process::exit(LOST_RANK_EXIT);
    }
    eprintln!(
        "multiproc: MPI rank {} (pid {} on {}) was lost: {why}. An MPI job is fail-stop: \
         rank 0 aborts it now (exit status {LOST_RANK_EXIT}); tasks in flight are not retried",
        who.rank, who.pid, who.host
    );
    // The launcher forwards a rank's standard error on one connection and its abort on
    // another, and ends the job on the abort: a message still in the pipe is lost (seen under
    // MPICH on a busy machine). So the abort waits, boundedly, until the launcher has read it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while crate::sys::pipe::stderr_unread().is_some_and(|n| n > 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    SimpleCommunicator::world().abort(LOST_RANK_EXIT)
}

/// Watches the worker ranks on this machine (same kernel, same process ids) through pidfds,
/// on a thread of its own for the rest of the job: one that exits before the program does is
/// reported by [`lost`] at once, ahead of the launcher's own teardown. Ranks elsewhere are
/// judged by their heartbeats while a pool runs.
pub(crate) fn watch_local_ranks(ranks: Vec<RankInfo>) {
    let watched: Vec<(RankInfo, OwnedFd)> = ranks
        .into_iter()
        .filter_map(|r| {
            let pid = i32::try_from(r.pid).ok()?;
            crate::sys::pidfd_open(pid).ok().map(|fd| (r, fd))
        })
        .collect();
    if watched.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("multiproc-mpi-watch".into()).spawn(move || {
        let fds: Vec<_> = watched.iter().map(|(_, fd)| fd.as_fd()).collect();
        loop {
            match crate::sys::poll_readable(&fds, None) {
                Ok(Some(i)) => {
                    if EXITING.load(Ordering::SeqCst) {
                        return;
                    }
                    lost(&watched[i].0, "its process ended (killed, or its node went down)");
                }
                Ok(None) => {}
                Err(e) => {
                    log::error!("multiproc: watching the MPI ranks: {e}");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("multiproc: cannot watch the MPI ranks: {e}");
    }
}

static ROOT: Mutex<Option<Root>> = Mutex::new(None);

pub(crate) fn root() -> MutexGuard<'static, Option<Root>> {
    ROOT.lock().unwrap_or_else(|p| p.into_inner())
}

impl Root {
    pub(crate) fn world(&self) -> Option<SimpleCommunicator> {
        self.universe.as_ref().map(Universe::world)
    }
}

#[ctor::ctor]
unsafe fn start_rank() {
    let Some(rank) = launcher_rank() else { return };
    if !opted_in() {
        return;
    }
    // SAFETY: constructors run before `main`, while the process has a single thread, so nothing
    // reads the environment concurrently; the rank's own children must not act as ranks.
    unsafe { std::env::set_var(RANK_PROCESS_ENV, rank.to_string()) };
    let threading = if rank == 0 { mpi::Threading::Multiple } else { mpi::Threading::Funneled };
    let Some((universe, _)) = mpi::initialize_with_threading(threading) else {
        eprintln!("multiproc: rank {rank}: MPI was already initialized; not serving pools");
        return;
    };
    if rank == 0 {
        let size = universe.world().size();
        *root() = Some(Root { universe: Some(universe), size, in_use: false, watching: false });
    } else {
        worker::serve(universe)
    }
}

#[ctor::dtor]
unsafe fn end_rank() {
    let mut guard = root();
    let Some(r) = guard.as_mut() else { return };
    EXITING.store(true, Ordering::SeqCst);
    if let Some(world) = r.world() {
        let bye = encode(&ToWorker::Shutdown);
        for rank in 1..r.size {
            world.process_at_rank(rank).send_with_tag(&bye[..], TAG);
        }
    }
    // Finalizes MPI; a pool still serving sees no universe and stops.
    drop(r.universe.take());
}

/// What rank 0 tells a worker rank.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// A pool starts: run tasks in a local pool of `processes` processes, and say something
    /// to rank 0 at least every `heartbeat_ms` while it runs.
    Hello { processes: u32, timeout_ms: u64, heartbeat_ms: u64 },
    /// Tasks to run, many in one message.
    Tasks(Vec<TaskMsg>),
    /// The pool ends (`terminate`: kill what runs); answer with [`ToRoot::Ended`] once every
    /// outcome has been sent.
    End { terminate: bool },
    /// The program is exiting.
    Shutdown,
}

/// One task: the entry of its function and its encoded arguments.
#[derive(Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    pub(crate) entry: EntryOffset,
    #[serde(with = "bytes")]
    pub(crate) args: Vec<u8>,
}

/// What a worker rank tells rank 0.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToRoot {
    /// Serving the pool: this rank's process and where it runs (`machine` tells whether it
    /// shares rank 0's kernel and process namespace).
    Ready {
        host: String,
        pid: u32,
        machine: String,
    },
    /// Cannot serve the pool.
    Refused {
        why: String,
    },
    /// Outcomes of tasks, many in one message.
    Done(Vec<DoneMsg>),
    /// Nothing finished lately, but this rank is there.
    Alive,
    Ended,
}

/// A task's outcome: `kind` 0 for a value (`body` its frame), else an error kind and its message.
#[derive(Serialize, Deserialize)]
pub(crate) struct DoneMsg {
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) pid: i32,
    #[serde(with = "bytes")]
    pub(crate) body: Vec<u8>,
}

/// Byte strings as one run of bytes (serde's default for `Vec<u8>` goes byte by byte).
mod bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Bare: a rank's last message is sent from an exit handler, after thread-locals are gone.
    crate::wire::encode_bare(v).unwrap_or_default()
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T> {
    match crate::wire::take(b) {
        Ok((v, _)) => Ok(v),
        Err(e) => Err(Error::Decode(format!("an MPI message between ranks: {e}"))),
    }
}

pub(crate) fn kind_code(k: TaskErrorKind) -> u8 {
    match k {
        TaskErrorKind::Panicked => 1,
        TaskErrorKind::WorkerDied => 2,
        TaskErrorKind::TimedOut => 3,
        TaskErrorKind::Cancelled => 4,
        TaskErrorKind::Terminated => 5,
        TaskErrorKind::Broken => 6,
        TaskErrorKind::Codec => 7,
    }
}

pub(crate) fn code_error(code: u8, message: String) -> TaskError {
    let kind = match code {
        1 => TaskErrorKind::Panicked,
        2 => TaskErrorKind::WorkerDied,
        3 => TaskErrorKind::TimedOut,
        4 => TaskErrorKind::Cancelled,
        5 => TaskErrorKind::Terminated,
        6 => TaskErrorKind::Broken,
        _ => TaskErrorKind::Codec,
    };
    TaskError::new(kind, message)
}

/// What tells two processes apart as machines: the kernel's boot id and the process
/// namespace. Two ranks with the same value see each other's process ids.
pub(crate) fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{}/{ns}", boot.trim())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
