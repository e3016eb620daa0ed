//! `Barrier(parties, action, timeout)` across processes, under every start method: the action runs
//! once per round in the last party to arrive, before anyone is released; a panicking action breaks
//! the barrier; the default timeout bounds `wait()` and breaks the barrier when it passes.

use multiproc::{spawn, Array, Barrier, BrokenBarrier, Error, Process, StartMethod};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

/// Shared record of the action: `[rounds run, pid of the last runner]`; set in each process.
static ROUNDS: OnceLock<Array<i64>> = OnceLock::new();

fn count_round() {
    let a = ROUNDS.get().expect("the participant set ROUNDS before waiting");
    a.with_lock(|v| {
        v[0] += 1;
        v[1] = i64::from(std::process::id());
    });
}

/// Waits `rounds` times; after each round checks the action ran exactly once more, and that the
/// party with the last index ran it.
fn take_part(b: Barrier, record: Array<i64>, rounds: i64) -> Result<(), String> {
    let _ = ROUNDS.set(record.clone()); // already set in a forked child of the test process
    for r in 0..rounds {
        let index = b.wait().map_err(|e| format!("round {r}: {e}"))?;
        let v = record.to_vec();
        if v[0] != r + 1 {
            return Err(format!("after round {r} the action had run {} times", v[0]));
        }
        if index + 1 == b.parties() && v[1] != i64::from(std::process::id()) {
            return Err(format!("round {r}: the last arrival did not run the action"));
        }
    }
    Ok(())
}

#[test]
fn the_action_runs_once_per_round_in_the_last_arrival_before_release() {
    let record = Array::new(2, 0i64).unwrap();
    let _ = ROUNDS.set(record.clone());
    for m in METHODS {
        record.with_lock(|v| v.fill(0));
        let rounds = 25;
        let b = Barrier::builder(4).action(count_round).build().unwrap();
        let children: Vec<Process> = (0..3)
            .map(|_| {
                Process::builder(take_part, (b.clone(), record.clone(), rounds))
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        take_part(b.clone(), record.clone(), rounds).unwrap();
        for c in children {
            assert_eq!(c.join().unwrap().exitcode(), 0, "{m}");
        }
        assert_eq!(record.get(0), Some(rounds), "{m}");
        assert!(!b.broken());
    }
}

fn panicking_action() {
    panic!("the action failed");
}

/// Exits 0 when its wait ends with `BrokenBarrier`.
fn expect_broken(b: Barrier) -> Result<(), String> {
    match b.wait() {
        Err(BrokenBarrier) => Ok(()),
        Ok(i) => Err(format!("released with index {i}")),
    }
}

fn arrive_last(b: Barrier) -> u32 {
    b.wait().unwrap_or(999)
}

fn wait_for_waiters(b: &Barrier, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.n_waiting() < n {
        assert!(Instant::now() < deadline, "the waiters never arrived");
        std::thread::yield_now();
    }
}

#[test]
fn a_panicking_action_breaks_the_barrier_and_the_panic_reaches_its_runner() {
    for m in METHODS {
        let b = Barrier::builder(3).action(panicking_action).build().unwrap();
        let waiters: Vec<Process> = (0..2)
            .map(|_| Process::builder(expect_broken, (b.clone(),)).start_method(m).start().unwrap())
            .collect();
        wait_for_waiters(&b, 2);
        let last = multiproc::get_context(Some(m)).spawn(arrive_last, (b.clone(),)).unwrap();
        match last.join() {
            Err(Error::Child(e)) => {
                let msg = e.panic_message().unwrap_or_default();
                assert!(msg.contains("the action failed"), "{m}: {msg}");
            }
            other => panic!("{m}: the action's runner should have panicked: {other:?}"),
        }
        for w in waiters {
            assert_eq!(w.join().unwrap().exitcode(), 0, "{m}: a waiter was released past a failed action");
        }
        assert!(b.broken(), "{m}");
        assert_eq!(b.wait(), Err(BrokenBarrier));
    }
}

/// Waits with the barrier's own timeout; reports the timeout it saw and how long it waited.
fn wait_default(b: Barrier) -> (Option<Duration>, Result<u32, String>, Duration) {
    let t0 = Instant::now();
    let r = b.wait().map_err(|e| e.to_string());
    (b.timeout(), r, t0.elapsed())
}

#[test]
fn the_default_timeout_bounds_wait_and_breaks_the_barrier() {
    let timeout = Duration::from_millis(300);
    for m in METHODS {
        let b = Barrier::builder(2).timeout(timeout).build().unwrap();
        let h = multiproc::get_context(Some(m)).spawn(wait_default, (b.clone(),)).unwrap();
        let (seen, r, waited) = match h.join_timeout(Duration::from_secs(60)) {
            Ok(v) => v.unwrap(),
            Err(h) => {
                h.process().kill().unwrap();
                panic!("{m}: wait() ignored the default timeout");
            }
        };
        assert_eq!(seen, Some(timeout), "{m}");
        assert_eq!(r, Err(BrokenBarrier.to_string()), "{m}");
        assert!(waited >= timeout, "{m}: gave up after {waited:?}");
        assert!(b.broken(), "{m}: the timeout did not break the barrier");
        assert_eq!(b.wait(), Err(BrokenBarrier));
        b.reset();
        assert!(!b.broken());
    }
}

#[test]
fn wait_timeout_overrides_the_default_and_a_full_round_passes_in_time() {
    let b = Barrier::builder(2).timeout(Duration::from_secs(600)).build().unwrap();
    let t0 = Instant::now();
    assert_eq!(b.wait_timeout(Duration::from_millis(50)), Err(BrokenBarrier));
    assert!(t0.elapsed() < Duration::from_secs(60));
    b.reset();
    // A round that completes within the default timeout is not broken by it.
    let h = spawn(arrive_last, (b.clone(),)).unwrap();
    let i = b.wait().unwrap();
    let j = h.join().unwrap();
    assert_eq!(i + j, 1);
    assert!(!b.broken());
}

#[test]
fn no_parties_is_refused_by_the_builder() {
    assert!(Barrier::builder(0).action(count_round).build().is_err());
    let b = Barrier::builder(1).build().unwrap();
    assert_eq!(b.timeout(), None);
    assert_eq!(b.wait(), Ok(0));
}
