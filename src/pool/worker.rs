//! The worker process: runs tasks from its socket until told to exit.
//!
//! A worker is a daemonic child started with the pool's start method (named like Python's:
//! `ForkPoolWorker-3`, `SpawnPoolWorker-1`, `ForkServerPoolWorker-2`). It runs its initializer
//! once, then loops: read every task the socket holds, run them in order, and send their
//! results. Results are written in batches, one system call for many, but never held back
//! behind a task that may run long: before starting a task the worker flushes what it holds
//! unless that task's function is known to be quick and the held results are young.
//!
//! A panic in a task is caught and reported (the worker lives on). The worker leaves when it
//! reads `EXIT`, when its socket reaches end-of-file (the pool is gone), or after
//! `maxtasksperchild` tasks.

use super::protocol::{self, FrameReader};
use super::slots::Slots;
use crate::mem::Region;
use crate::sys;
use crate::target::{CallOutcome, EntryOffset};
use crate::wire::{FdOwned, FdRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// A task whose function has run faster than this on average may be started while results
/// are held back for batching.
const QUICK_TASK_NS: u64 = 50_000;
/// Held results older than this are sent before the next task starts.
const MAX_HOLD_NS: u64 = 200_000;
/// Held results are sent once they fill this many bytes.
const FLUSH_BYTES: usize = 64 * 1024;

/// A worker's end of its socket, as a process argument.
pub(crate) struct WorkerSocket(pub(crate) OwnedFd);

impl Serialize for WorkerSocket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FdRef(self.0.as_fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for WorkerSocket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(WorkerSocket(FdOwned::deserialize(d)?.0))
    }
}

/// Descriptors shared by every worker's configuration (the initializer's handles).
#[derive(Clone, Default)]
pub(crate) struct SharedFds(pub(crate) Arc<Vec<OwnedFd>>);

impl Serialize for SharedFds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let refs: Vec<FdRef<'_>> = self.0.iter().map(|f| FdRef(f.as_fd())).collect();
        refs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedFds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fds: Vec<FdOwned> = Vec::deserialize(d)?;
        Ok(SharedFds(Arc::new(fds.into_iter().map(|f| f.0).collect())))
    }
}

/// The initializer call, encoded once by the pool.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct InitCall {
    pub(crate) entry: EntryOffset,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: SharedFds,
}

/// What every worker of a pool is told at start.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    pub(crate) maxtasks: Option<u64>,
    pub(crate) init: Option<InitCall>,
}

/// Sends everything in `out` (blocking) and empties it.
fn flush(sock: BorrowedFd<'_>, out: &mut Vec<u8>) -> bool {
    let mut sent = 0;
    while sent < out.len() {
        match sys::send_with_fds(sock, &out[sent..], &[]) {
            Ok(n) => sent += n,
            Err(_) => return false,
        }
    }
    out.clear();
    true
}

fn run_init(init: InitCall) -> Result<(), String> {
    let entry = init.entry.resolve_call().map_err(|e| e.to_string())?;
    let fds = Arc::try_unwrap(init.fds.0)
        .unwrap_or_else(|shared| shared.iter().filter_map(|f| f.try_clone().ok()).collect());
    match entry(&init.args, fds, &mut Vec::new()) {
        CallOutcome::Returned => Ok(()),
        CallOutcome::Panicked(msg) => Err(format!("panicked: {msg}")),
        CallOutcome::Failed(msg) => Err(msg),
    }
}

/// The worker's main loop (the target of every pool worker process).
pub(crate) fn worker_main(sock: WorkerSocket, region: Region, index: u32, config: WorkerConfig) {
    crate::process::print_panics(false);
    let sock = sock.0;
    let fd = sock.as_fd();
    let mut out: Vec<u8> = Vec::with_capacity(FLUSH_BYTES);
    let slots = match Slots::attach(region) {
        Ok(s) => s,
        Err(e) => {
            let at = protocol::begin_result(&mut out);
            out.extend_from_slice(e.to_string().as_bytes());
            protocol::finish_result(&mut out, at, protocol::INIT_FAILED, 0, 0);
            flush(fd, &mut out);
            return;
        }
    };
    let slot = slots.slot(index as usize);
    if let Some(init) = config.init {
        if let Err(msg) = run_init(init) {
            let at = protocol::begin_result(&mut out);
            out.extend_from_slice(msg.as_bytes());
            protocol::finish_result(&mut out, at, protocol::INIT_FAILED, 0, 0);
            flush(fd, &mut out);
            return;
        }
    }
    let at = protocol::begin_result(&mut out);
    protocol::finish_result(&mut out, at, protocol::READY, 0, 0);
    let mut reader = FrameReader::new();
    let mut held_since = 0u64;
    let mut done = 0u64;
    let mut quick: HashMap<EntryOffset, u64> = HashMap::new();
    loop {
        let (range, fds) = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if !out.is_empty() && !flush(fd, &mut out) {
                    return;
                }
                match reader.read_blocking(fd) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
            Err(_) => return,
        };
        let payload = reader.bytes(range);
        match payload.first() {
            Some(&protocol::RUN) => {}
            _ => {
                flush(fd, &mut out);
                return;
            }
        }
        let (id, entry_at, args) = match protocol::parse_task(payload) {
            Ok(t) => t,
            Err(_) => return,
        };
        let estimate = quick.get(&entry_at).copied();
        if !out.is_empty() {
            let old = sys::monotonic_ns().saturating_sub(held_since) > MAX_HOLD_NS;
            if (old || estimate.is_none_or(|e| e > QUICK_TASK_NS)) && !flush(fd, &mut out) {
                return;
            }
        }
        let was_empty = out.is_empty();
        let at = protocol::begin_result(&mut out);
        let start = sys::monotonic_ns();
        slot.begin(id, start);
        let outcome = match entry_at.resolve_call() {
            Ok(entry) => entry(args, fds, &mut out),
            Err(e) => CallOutcome::Failed(e.to_string()),
        };
        slot.end();
        let end = sys::monotonic_ns();
        let nanos = end.saturating_sub(start);
        let tag = match outcome {
            CallOutcome::Returned => protocol::RETURNED,
            CallOutcome::Panicked(msg) => {
                out.extend_from_slice(msg.as_bytes());
                protocol::PANICKED
            }
            CallOutcome::Failed(msg) => {
                out.extend_from_slice(msg.as_bytes());
                protocol::FAILED
            }
        };
        protocol::finish_result(&mut out, at, tag, id, nanos);
        if was_empty {
            held_since = end;
        }
        let e = quick.entry(entry_at).or_insert(nanos);
        *e = (*e * 3 + nanos) / 4;
        done += 1;
        if config.maxtasks.is_some_and(|m| done >= m) {
            flush(fd, &mut out);
            return;
        }
        if out.len() >= FLUSH_BYTES && !flush(fd, &mut out) {
            return;
        }
    }
}
