//! A worker rank: serves the pools rank 0 builds, one after another, until rank 0's program
//! exits. For each pool it starts a local [`Pool`] of worker processes and hands it every task
//! it is sent, so a task that kills its process or runs past the timeout fails alone and the
//! rank lives on. Only this rank's main thread talks MPI; the local pool's outcomes reach it
//! through a channel.

use super::{decode, encode, hostname, kind_code, ToRoot, ToWorker, TAG};
use crate::pool::backend::{Sink, TaskError, TaskErrorKind};
use crate::Pool;
use mpi::environment::Universe;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::collections::VecDeque;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

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

fn send_done(world: &SimpleCommunicator, done: Done, backlog: &mut Backlog) {
    let pid = std::process::id() as i32;
    let msg = match done.outcome {
        Ok(body) => ToRoot::Done { id: done.id, kind: 0, pid, body },
        Err(e) => ToRoot::Done {
            id: done.id,
            kind: kind_code(e.kind()),
            pid: e.pid().unwrap_or(pid),
            body: e.message().as_bytes().to_vec(),
        },
    };
    send(world, &msg, backlog);
}

/// Serves pools until rank 0 says the program is exiting; never returns.
pub(super) fn serve(universe: Universe) -> ! {
    crate::process::print_panics(false);
    let world = universe.world();
    let rank = world.rank();
    loop {
        let (bytes, _) = world.process_at_rank(0).matched_probe_with_tag(TAG).matched_receive_vec::<u8>();
        match decode::<ToWorker>(&bytes) {
            Ok(ToWorker::Hello { processes, timeout_ms, prefetch }) => {
                if session(&world, processes, timeout_ms, prefetch) {
                    break;
                }
            }
            Ok(ToWorker::Shutdown) => break,
            Ok(_) => {}
            Err(e) => eprintln!("multiprocessing: MPI rank {rank}: {e}"),
        }
    }
    drop(universe);
    std::process::exit(0)
}

/// Serves one pool; whether rank 0's program is exiting.
fn session(world: &SimpleCommunicator, processes: u32, timeout_ms: u64, prefetch: u32) -> bool {
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
        let ready = ToRoot::Ready { credit: processes + prefetch, host: hostname(), pid: std::process::id() };
        send(world, &ready, &mut backlog);
    }
    let (tx, rx) = mpsc::channel::<Done>();
    let mut inflight = 0usize;
    let mut idle = 0u32;
    loop {
        while let Ok(done) = rx.try_recv() {
            inflight -= 1;
            send_done(world, done, &mut backlog);
            idle = 0;
        }
        let got = if let Some(b) = backlog.pop_front() {
            Some(b)
        } else if inflight == 0 {
            // Nothing can finish: wait for rank 0.
            Some(world.process_at_rank(0).matched_probe_with_tag(TAG).matched_receive_vec::<u8>().0)
        } else {
            world
                .process_at_rank(0)
                .immediate_matched_probe_with_tag(TAG)
                .map(|got| got.matched_receive_vec::<u8>().0)
        };
        let Some(bytes) = got else {
            idle += 1;
            if idle > 64 {
                // Tasks run in the local pool: wait a little for one to finish.
                if let Ok(done) = rx.recv_timeout(Duration::from_micros(200)) {
                    inflight -= 1;
                    send_done(world, done, &mut backlog);
                    idle = 0;
                }
            } else {
                std::thread::yield_now();
            }
            continue;
        };
        idle = 0;
        match decode::<ToWorker>(&bytes) {
            Ok(ToWorker::Task { id, entry, args }) => {
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
            Ok(ToWorker::End { terminate }) => {
                if let Some(local) = local {
                    if terminate {
                        local.terminate();
                    } else {
                        local.close();
                    }
                    let _ = local.join();
                }
                drop(tx);
                for done in rx {
                    send_done(world, done, &mut backlog);
                }
                send(world, &ToRoot::Ended, &mut backlog);
                return false;
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
                eprintln!("multiprocessing: MPI rank {}: a pool started during another", world.rank());
                std::process::exit(70);
            }
            Err(e) => eprintln!("multiprocessing: MPI rank {}: {e}", world.rank()),
        }
    }
}
