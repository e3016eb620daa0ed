//! A worker rank: serves the pools rank 0 builds, one after another, until rank 0's program
//! exits. For each pool it starts a local [`Pool`] of worker processes and hands it every task
//! it is sent, so a task that kills its process or runs past the timeout fails alone and the
//! rank lives on. Only this rank's main thread talks MPI; the local pool's outcomes reach it
//! through a channel.

use super::{decode, encode, hostname, kind_code, machine, DoneMsg, TaskMsg, ToRoot, ToWorker, TAG};
use crate::pool::backend::{Sink, TaskError, TaskErrorKind};
use crate::Pool;
use mpi::environment::Universe;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::collections::VecDeque;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

struct Done {
    id: u64,
    outcome: std::result::Result<Vec<u8>, TaskError>,
}

struct BridgeSink {
    id: u64,
    tx: Mutex<mpsc::Sender<Done>>,
}

impl Sink for BridgeSink {
    fn complete(&self, _index: usize, outcome: std::result::Result<&[u8], TaskError>) {
        let done = Done { id: self.id, outcome: outcome.map(<[u8]>::to_vec) };
        let _ = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(done);
    }
}

/// Messages from rank 0 taken in while this rank was sending.
type Backlog = VecDeque<Vec<u8>>;

/// Sends `msg` to rank 0 without blocking on it: while a large message waits for rank 0 to
/// take it, rank 0 may be sending a large task here, so this rank keeps reading (into
/// `backlog`, bounded by the tasks rank 0 may send ahead) until its own send completes.
fn send(world: &SimpleCommunicator, msg: &ToRoot, backlog: &mut Backlog) {
    let bytes = encode(msg);
    mpi::request::scope(|scope| {
        let mut req = world.process_at_rank(0).immediate_send_with_tag(scope, &bytes[..], TAG);
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            match world.process_at_rank(0).immediate_matched_probe_with_tag(TAG) {
                Some(got) => backlog.push_back(got.matched_receive_vec::<u8>().0),
                None => std::thread::yield_now(),
            }
        }
    });
}

fn done_msg(done: Done) -> DoneMsg {
    let pid = std::process::id() as i32;
    match done.outcome {
        Ok(body) => DoneMsg { id: done.id, kind: 0, pid, body },
        Err(e) => DoneMsg {
            id: done.id,
            kind: kind_code(e.kind()),
            pid: e.pid().unwrap_or(pid),
            body: e.message().as_bytes().to_vec(),
        },
    }
}

/// Waits that grow from a yield to `cap` while nothing comes (as mpi4py's backoff): an idle
/// rank costs little CPU, a busy one answers at once.
struct Backoff {
    idle: u32,
    cap: Duration,
}

impl Backoff {
    fn new(cap: Duration) -> Backoff {
        Backoff { idle: 0, cap }
    }

    fn reset(&mut self) {
        self.idle = 0;
    }

    /// How long to wait after one more empty poll (zero: just yield).
    fn next(&mut self) -> Duration {
        self.idle = self.idle.saturating_add(1);
        if self.idle <= 64 {
            return Duration::ZERO;
        }
        let us = 1u64 << (self.idle - 64).min(20);
        Duration::from_micros(us).min(self.cap)
    }

    fn wait(&mut self) {
        match self.next() {
            Duration::ZERO => std::thread::yield_now(),
            d => std::thread::sleep(d),
        }
    }
}

/// The next message from rank 0, waiting for one with a backoff.
fn next_message(world: &SimpleCommunicator, cap: Duration) -> Vec<u8> {
    let mut backoff = Backoff::new(cap);
    loop {
        if let Some(got) = world.process_at_rank(0).immediate_matched_probe_with_tag(TAG) {
            return got.matched_receive_vec::<u8>().0;
        }
        backoff.wait();
    }
}

/// Serves pools until rank 0 says the program is exiting; never returns.
pub(super) fn serve(universe: Universe) -> ! {
    crate::process::print_panics(false);
    let world = universe.world();
    let rank = world.rank();
    loop {
        let bytes = next_message(&world, Duration::from_millis(10));
        match decode::<ToWorker>(&bytes) {
            Ok(ToWorker::Hello { processes, timeout_ms, heartbeat_ms }) => {
                if session(&world, processes, timeout_ms, heartbeat_ms) {
                    break;
                }
            }
            Ok(ToWorker::Shutdown) => break,
            Ok(_) => {}
            Err(e) => eprintln!("multiproc: MPI rank {rank}: {e}"),
        }
    }
    drop(universe);
    std::process::exit(0)
}

/// Serves one pool; whether rank 0's program is exiting.
///
/// Every outcome the local pool has finished goes to rank 0 in one message; every task rank 0
/// sent is handed to the local pool at once (rank 0 bounds how many this rank holds). While
/// tasks run, this thread polls rank 0 and the local outcomes in turn, yielding, then waiting
/// on the outcomes a little; while none run, it backs off to 1 ms between polls. It speaks at
/// least every `heartbeat_ms`, so that rank 0 can tell a lost rank from a busy one.
fn session(world: &SimpleCommunicator, processes: u32, timeout_ms: u64, heartbeat_ms: u64) -> bool {
    let processes = processes.max(1);
    let mut builder = Pool::builder().processes(processes as usize);
    if timeout_ms > 0 {
        builder = builder.task_timeout(Duration::from_millis(timeout_ms));
    }
    let mut backlog = Backlog::new();
    let local = match builder.build() {
        Ok(p) => Some(p),
        Err(e) => {
            let why = format!("MPI rank {} on {} cannot start its processes: {e}", world.rank(), hostname());
            send(world, &ToRoot::Refused { why }, &mut backlog);
            None
        }
    };
    if local.is_some() {
        let ready = ToRoot::Ready { host: hostname(), pid: std::process::id(), machine: machine() };
        send(world, &ready, &mut backlog);
    }
    let heartbeat = Duration::from_millis(heartbeat_ms.max(1));
    let mut last_sent = Instant::now();
    let (tx, rx) = mpsc::channel::<Done>();
    let mut inflight = 0usize;
    let mut ending = false;
    let mut backoff = Backoff::new(Duration::from_millis(1));
    let mut outcomes = Vec::new();
    loop {
        outcomes.extend(rx.try_iter().map(done_msg));
        if !outcomes.is_empty() {
            inflight -= outcomes.len();
            send(world, &ToRoot::Done(std::mem::take(&mut outcomes)), &mut backlog);
            last_sent = Instant::now();
            backoff.reset();
        }
        if ending && inflight == 0 {
            if let Some(local) = local {
                let _ = local.join();
            }
            send(world, &ToRoot::Ended, &mut backlog);
            return false;
        }
        let got = backlog.pop_front().or_else(|| {
            world
                .process_at_rank(0)
                .immediate_matched_probe_with_tag(TAG)
                .map(|got| got.matched_receive_vec::<u8>().0)
        });
        let Some(bytes) = got else {
            if last_sent.elapsed() >= heartbeat {
                send(world, &ToRoot::Alive, &mut backlog);
                last_sent = Instant::now();
            }
            match backoff.next() {
                Duration::ZERO => std::thread::yield_now(),
                // Tasks run in the local pool: wait a little for one to finish.
                d if inflight > 0 => {
                    if let Ok(done) = rx.recv_timeout(d.min(Duration::from_micros(200))) {
                        outcomes.push(done_msg(done));
                    }
                }
                d => std::thread::sleep(d),
            }
            continue;
        };
        backoff.reset();
        match decode::<ToWorker>(&bytes) {
            Ok(ToWorker::Tasks(tasks)) => {
                for TaskMsg { id, entry, args } in tasks {
                    inflight += 1;
                    let Some(local) = &local else {
                        let e = TaskError::new(TaskErrorKind::Broken, "this rank has no local pool");
                        let _ = tx.send(Done { id, outcome: Err(e) });
                        continue;
                    };
                    let sink = std::sync::Arc::new(BridgeSink { id, tx: Mutex::new(tx.clone()) });
                    if let Err(e) = local.submit_raw(entry, &args, sink) {
                        let _ = tx.send(Done {
                            id,
                            outcome: Err(TaskError::new(TaskErrorKind::Broken, e.to_string())),
                        });
                    }
                }
            }
            Ok(ToWorker::End { terminate }) => {
                // Outcomes still come (the tasks' own, or their failure when terminated);
                // the loop sends them, then ends once none is left.
                if let Some(local) = &local {
                    if terminate {
                        local.terminate();
                    } else {
                        local.close();
                    }
                }
                ending = true;
            }
            Ok(ToWorker::Shutdown) => {
                // Rank 0's program exits with this pool still running: stop what runs here.
                if let Some(local) = local {
                    local.terminate();
                    let _ = local.join();
                }
                return true;
            }
            Ok(ToWorker::Hello { .. }) => {
                // Rank 0 never starts a pool while one runs; leave rather than guess.
                eprintln!("multiproc: MPI rank {}: a pool started during another", world.rank());
                std::process::exit(70);
            }
            Err(e) => eprintln!("multiproc: MPI rank {}: {e}", world.rank()),
        }
    }
}
