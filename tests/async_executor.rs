//! `Executor` futures dropped before their task finished (feature `tokio`), across real worker
//! processes under each start method: a queued task is withdrawn and never runs, a running one
//! is killed (its worker replaced) or left to finish, as `OnDrop` says; `Keep` changes nothing.
#![cfg(feature = "tokio")]

use multiproc::{Connection, Error, Event, Executor, OnDrop, Pipe, PoolFuture, RawValue, StartMethod};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const LONG: Duration = Duration::from_secs(60);

fn pid() -> i32 {
    std::process::id() as i32
}

/// Marks that it ran.
fn mark(ran: Event) -> u32 {
    ran.set();
    7
}

fn square(x: u64) -> u64 {
    x * x
}

/// Stores its pid, says it has begun, waits for `release`, says it finished.
fn hold(pid_out: RawValue<i32>, begun: Event, release: Event, finished: Event) -> i32 {
    pid_out.set(pid());
    begun.set();
    release.wait();
    finished.set();
    pid()
}

/// The events and pid cell of one `hold` call.
struct Hold {
    pid: RawValue<i32>,
    begun: Event,
    release: Event,
    finished: Event,
}

impl Hold {
    fn new() -> Hold {
        Hold {
            pid: RawValue::new(0).unwrap(),
            begun: Event::new().unwrap(),
            release: Event::new().unwrap(),
            finished: Event::new().unwrap(),
        }
    }

    fn submit(&self, ex: &Executor) -> PoolFuture<i32> {
        let args = (self.pid.clone(), self.begun.clone(), self.release.clone(), self.finished.clone());
        ex.submit(hold, args).unwrap()
    }
}

fn reaped(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LONG, f).await.expect("well within the bound")
}

#[test]
fn a_dropped_queued_future_withdraws_its_task_unless_kept() {
    for method in METHODS {
        for (mode, rt) in [(OnDrop::Detach, current()), (OnDrop::Kill, multi()), (OnDrop::Keep, current())] {
            let ex = Executor::builder().max_workers(1).start_method(method).on_drop(mode).build().unwrap();
            rt.block_on(async {
                let gate = Hold::new();
                let busy = gate.submit(&ex);
                within(gate.begun.wait_async()).await;
                // The only worker is busy with a task of a function never timed: this one waits.
                let ran = Event::new().unwrap();
                let queued = ex.submit(mark, (ran.clone(),)).unwrap();
                assert!(!queued.running() && !queued.done(), "{method} {mode:?}: queued");
                // Given up on by its timeout: the future is dropped at its await point.
                assert!(tokio::time::timeout(Duration::from_millis(20), queued).await.is_err());
                gate.release.set();
                assert_eq!(within(busy).await.unwrap(), gate.pid.get());
                // One worker, tasks in order: once this one has run, the queue is past `queued`.
                let after = within(ex.submit(pid, ()).unwrap()).await.unwrap();
                assert_eq!(after, gate.pid.get(), "{method} {mode:?}: the same worker throughout");
                let kept = mode == OnDrop::Keep;
                assert_eq!(ran.is_set(), kept, "{method} {mode:?}: the dropped task ran: {}", ran.is_set());
            });
            ex.shutdown();
        }
    }
}

fn reply(conn: Connection) {
    conn.send(&1u8).unwrap();
}

#[test]
fn a_withdrawn_task_closes_the_handles_it_was_given() {
    for method in METHODS {
        let ex =
            Executor::builder().max_workers(1).start_method(method).on_drop(OnDrop::Detach).build().unwrap();
        current().block_on(async {
            let gate = Hold::new();
            let busy = gate.submit(&ex);
            within(gate.begun.wait_async()).await;
            let (a, b) = Pipe::duplex().unwrap();
            // The task holds the only other copy of `b`: withdrawn, the pool closes it.
            drop(ex.submit(reply, (b,)).unwrap());
            let end = within(a.recv_async::<u8>()).await;
            assert!(matches!(end, Err(Error::Eof)), "{method}: {end:?}");
            assert!(!gate.finished.is_set(), "{method}: closed while the worker was still busy");
            gate.release.set();
            within(busy).await.unwrap();
        });
        ex.shutdown();
    }
}

#[test]
fn a_dropped_running_future_is_killed_with_kill_and_finishes_with_detach() {
    for method in METHODS {
        for (mode, rt) in [(OnDrop::Kill, current()), (OnDrop::Detach, multi()), (OnDrop::Kill, multi())] {
            let ex = Executor::builder().max_workers(1).start_method(method).on_drop(mode).build().unwrap();
            rt.block_on(async {
                let h = Hold::new();
                let running = h.submit(&ex);
                within(h.begun.wait_async()).await;
                assert!(running.running(), "{method} {mode:?}");
                let victim = h.pid.get();
                assert!(tokio::time::timeout(Duration::from_millis(20), running).await.is_err());
                if mode == OnDrop::Kill {
                    // Still held by `release`: the next task runs only if the worker was killed.
                    let next = within(ex.submit(pid, ()).unwrap()).await.unwrap();
                    assert_ne!(next, victim, "{method}: a fresh worker");
                    assert!(reaped(victim), "{method}: the killed worker {victim} was reaped");
                    h.release.set();
                    assert!(!h.finished.is_set(), "{method}: the killed task never finished");
                } else {
                    h.release.set();
                    let next = within(ex.submit(pid, ()).unwrap()).await.unwrap();
                    assert_eq!(next, victim, "{method}: the worker was left alone");
                    assert!(h.finished.is_set(), "{method}: the detached task ran to its end");
                }
                // The pool works on as before.
                let squares: Vec<u64> =
                    ex.map(square, 0..50u64).submit().unwrap().collect::<Result<_, _>>().unwrap();
                assert_eq!(squares, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
            });
            ex.shutdown();
        }
    }
}

#[test]
fn kill_reaches_a_task_a_worker_took_behind_another() {
    // A quick function's tasks go to a worker that still runs another: such a task counts as
    // running (a worker has it) before it begins, and is killed once it begins (held by
    // `release` for ever, it can end only so).
    for method in METHODS {
        let rt = current();
        let ex =
            Executor::builder().max_workers(1).start_method(method).on_drop(OnDrop::Kill).build().unwrap();
        rt.block_on(async {
            let mut exercised = false;
            for _attempt in 0..5 {
                // Teach the pool that `hold` is quick.
                for _ in 0..30 {
                    let h = Hold::new();
                    h.release.set();
                    within(h.submit(&ex)).await.unwrap();
                }
                let (gate, behind) = (Hold::new(), Hold::new());
                let first = gate.submit(&ex);
                let second = behind.submit(&ex);
                within(gate.begun.wait_async()).await;
                let mut waited = 0;
                while !second.running() && waited < 500 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    waited += 1;
                }
                if !second.running() {
                    // A slow run made the estimate too long to batch: withdrawn; again.
                    drop(second);
                    gate.release.set();
                    within(first).await.unwrap();
                    continue;
                }
                exercised = true;
                let holder = gate.pid.get();
                drop(second);
                // The worker reaches the dropped task only now, and is killed in it.
                gate.release.set();
                // Not killed while it ran `first`, which either came back before the kill or ran
                // again on the fresh worker.
                within(first).await.unwrap();
                let next = within(ex.submit(pid, ()).unwrap()).await.unwrap();
                assert_ne!(next, holder, "{method}: a fresh worker");
                assert!(reaped(holder), "{method}: the killed worker was reaped");
                // Killed once the worker began it: at the latest inside `hold` (it may not have
                // got as far as storing its pid).
                assert!(
                    [0, holder].contains(&behind.pid.get()),
                    "{method}: it ran on that worker, if at all"
                );
                behind.release.set();
                assert!(!behind.finished.is_set(), "{method}: the killed task never finished");
                break;
            }
            assert!(exercised, "{method}: a quick task was never batched behind another");
        });
        ex.shutdown();
    }
}
