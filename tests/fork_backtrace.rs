//! A `Fork` child inherits every lock another thread of the parent held at the fork, for ever.
//! std's backtrace lock is one: a thread of the parent that is capturing or printing a backtrace
//! holds it most of the time. A forked child whose target then panics must still report its panic
//! and exit, not block in its panic hook. This file runs alone in its own test process, since the
//! backtrace thread below would disturb other tests.

use multiproc::{Error, Pool, Process, StartMethod};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn fail(n: u32) {
    panic!("task {n} failed on purpose");
}

fn fail_in_pool(n: u32) -> u32 {
    if n % 2 == 0 {
        panic!("item {n} failed on purpose");
    }
    n
}

#[test]
fn a_fork_child_whose_target_panics_exits_while_a_parent_thread_captures_backtraces() {
    // Read when the crate's panic hook is installed (the first process object), so set first:
    // with backtraces wanted, std's own hook and the crate's capture both take the lock.
    std::env::set_var("RUST_BACKTRACE", "1");
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut chars = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // Capturing and resolving (formatting) both hold std's backtrace lock.
                chars += std::backtrace::Backtrace::force_capture().to_string().len();
            }
            chars
        })
    };
    for round in 0..20u32 {
        let p = Process::builder(fail, (round,)).start_method(StartMethod::Fork).start().unwrap();
        let status = p.join_timeout(Duration::from_secs(20)).unwrap();
        if status.is_none() {
            p.kill().unwrap();
            p.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            panic!("round {round}: the forked child hung in its panic hook");
        }
        assert_eq!(status.unwrap().exitcode(), 1, "round {round}");
    }
    let pool = Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
    for round in 0..5u32 {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = pool.map_async(fail_in_pool, 0..8u32).unwrap();
        std::thread::spawn(move || tx.send(handle.get()).ok());
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Err(Error::Task(e))) => {
                assert!(e.to_string().contains("failed on purpose"), "round {round}: {e}")
            }
            Ok(other) => panic!("round {round}: {other:?}"),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                pool.terminate();
                panic!("round {round}: a forked pool worker hung in its panic hook");
            }
        }
    }
    pool.close();
    pool.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(busy.join().unwrap() > 0);
}
