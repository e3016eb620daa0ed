//! Process-shared locks, semaphores, events and values, across real processes under every start
//! method. Test names mention the CPython test (`_test_multiprocessing.py`) they port.

use multiproc::{
    get_context, Array, BoundedSemaphore, Connection, Event, Lock, Pipe, Process, RLock, Semaphore,
    StartMethod, Value,
};
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn hold_then_report(lock: Lock, conn: Connection) {
    let guard = lock.acquire().unwrap();
    conn.send(&"held").unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(guard);
}

#[test]
fn a_killed_holder_gives_the_waiter_owner_died_quickly() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(hold_then_report, (lock.clone(), child)).start_method(m).start().unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "held");
        assert!(lock.try_acquire().unwrap().is_none(), "{m}: held by the child");
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        let died = lock.acquire_timeout(Duration::from_secs(5)).expect_err("owner died");
        assert!(t.elapsed() < Duration::from_millis(100 + 150), "{m}: took {:?}", t.elapsed());
        assert_eq!(died.pid(), p.pid().unwrap());
        let guard = died.into_inner().expect("the lock is ours");
        drop(guard);
        assert!(lock.try_acquire().unwrap().is_some(), "{m}: usable again");
    }
}

fn count_under_lock(v: Value<i64>, n: u32) {
    for _ in 0..n {
        v.with_lock(|x| *x += 1);
    }
}

#[test]
fn value_increments_from_four_processes_sum_right() {
    // test_value (synchronized), as the value_increment workload
    for m in METHODS {
        let v = Value::new(0i64).unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| Process::builder(count_under_lock, (v.clone(), 5000)).start_method(m).start().unwrap())
            .collect();
        for p in ps {
            assert!(p.join().unwrap().success());
        }
        assert_eq!(v.get(), 20_000, "{m}");
    }
}

fn enter_semaphore(sem: Semaphore, inside: Value<i32>, max_seen: Value<i32>, rounds: u32) {
    for _ in 0..rounds {
        let _permit = sem.acquire();
        let now = inside.with_lock(|x| {
            *x += 1;
            *x
        });
        max_seen.with_lock(|m| *m = (*m).max(now));
        std::thread::yield_now();
        inside.with_lock(|x| *x -= 1);
    }
}

#[test]
fn a_semaphore_of_two_never_lets_three_in() {
    // test_semaphore
    for m in METHODS {
        let sem = Semaphore::new(2).unwrap();
        let inside = Value::new(0i32).unwrap();
        let max_seen = Value::new(0i32).unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| {
                Process::builder(enter_semaphore, (sem.clone(), inside.clone(), max_seen.clone(), 300))
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        for p in ps {
            assert!(p.join().unwrap().success());
        }
        assert!(max_seen.get() <= 2, "{m}: {} inside at once", max_seen.get());
        assert!(max_seen.get() >= 1);
        assert_eq!(sem.get_value(), 2);
    }
}

#[test]
fn semaphore_timeouts_and_bounds() {
    // test_timeout, test_bounded_semaphore
    let sem = Semaphore::new(0).unwrap();
    let t = Instant::now();
    assert!(sem.acquire_timeout(Duration::from_millis(100)).is_none());
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(t.elapsed() < Duration::from_secs(2));
    sem.release().unwrap();
    assert!(sem.try_acquire().is_some());
    let b = BoundedSemaphore::new(2).unwrap();
    assert!(b.release().is_err(), "over-release of a bounded semaphore");
    let g = b.acquire();
    g.forget();
    b.release().unwrap();
    assert!(b.release().is_err());
}

fn wait_then_report(ev: Event, conn: Connection) {
    conn.send(&"waiting").unwrap();
    let set = ev.wait_timeout(Duration::from_secs(30));
    conn.send(&set).unwrap();
}

#[test]
fn an_event_wakes_waiters_in_other_processes() {
    // test_event
    for m in METHODS {
        let ev = Event::new().unwrap();
        let mut conns = Vec::new();
        let mut ps = Vec::new();
        for _ in 0..3 {
            let (parent, child) = Pipe::duplex().unwrap();
            ps.push(Process::builder(wait_then_report, (ev.clone(), child)).start_method(m).start().unwrap());
            assert_eq!(parent.recv::<String>().unwrap(), "waiting");
            conns.push(parent);
        }
        let t = Instant::now();
        ev.set();
        for c in &conns {
            assert!(c.recv::<bool>().unwrap(), "{m}");
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        for p in ps {
            p.join().unwrap();
        }
        ev.clear();
        assert!(!ev.is_set());
        let t = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}

fn try_release_foreign(lock: RLock) -> String {
    match lock.release() {
        Ok(()) => "released".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rlock_recursion_and_foreign_release() {
    // test_rlock
    let lock = RLock::new().unwrap();
    let a = lock.acquire().unwrap();
    let b = lock.acquire().unwrap();
    assert_eq!(lock.count(), 2);
    for m in METHODS {
        let msg = get_context(Some(m)).spawn(try_release_foreign, (lock.clone(),)).unwrap().join().unwrap();
        assert!(msg.contains("un-acquired"), "{m}: {msg}");
    }
    let other_thread = std::thread::scope(|s| s.spawn(|| lock.release().is_err()).join().unwrap());
    assert!(other_thread, "another thread of the holder's process may not release it");
    drop(b);
    drop(a);
    assert_eq!(lock.count(), 0);
    assert!(lock.release().is_err());
}

#[test]
fn lock_release_rules_and_timeouts() {
    // test_lock
    let lock = Lock::new().unwrap();
    assert!(lock.release().is_err(), "releasing an unlocked lock");
    let g = lock.acquire().unwrap();
    assert!(lock.is_locked());
    let t = Instant::now();
    assert!(lock.acquire_timeout(Duration::from_millis(100)).unwrap().is_none());
    assert!(t.elapsed() >= Duration::from_millis(100));
    g.forget();
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

fn fill(a: Array<u32>) {
    a.with_lock(|xs| {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = i as u32 * 10;
        }
    });
}

#[test]
fn arrays_are_shared_with_children() {
    // test_array
    for m in METHODS {
        let a = Array::new(5, 0u32).unwrap();
        Process::builder(fill, (a.clone(),)).start_method(m).start().unwrap().join().unwrap();
        assert_eq!(a.to_vec(), vec![0, 10, 20, 30, 40], "{m}");
        assert!(a.set(5, 1).is_err());
        assert_eq!(a.get(9), None);
    }
}

fn send_lock_back(conn: Connection) {
    let lock: Lock = conn.recv().unwrap();
    let _g = lock.acquire().unwrap();
    conn.send(&"locked").unwrap();
    let _: String = conn.recv().unwrap();
}

#[test]
fn a_lock_travels_through_a_pipe() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(send_lock_back, (child,)).start_method(m).start().unwrap();
        let lock = Lock::new().unwrap();
        parent.send(&lock).unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "locked");
        assert!(lock.try_acquire().unwrap().is_none(), "{m}: the child holds the same lock");
        parent.send(&"done").unwrap();
        p.join().unwrap();
        assert!(lock.acquire_timeout(Duration::from_secs(5)).unwrap().is_some());
    }
}

#[test]
#[ignore = "benchmark: cargo test --release --test sync -- --ignored --nocapture"]
fn bench_lock_and_value() {
    let lock = Lock::new().unwrap();
    let n = 5_000_000;
    let t = Instant::now();
    for _ in 0..n {
        drop(lock.acquire().unwrap());
    }
    println!("lock_uncontended\t{:.0}\tops/s", n as f64 / t.elapsed().as_secs_f64());
    let v = Value::new(0i64).unwrap();
    let k = 50_000;
    let t = Instant::now();
    let ps: Vec<Process> =
        (0..2).map(|_| Process::new(count_under_lock, (v.clone(), k)).start().unwrap()).collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(v.get(), 2 * k as i64);
    println!("value_increment\t{:.0}\tincrements/s", 2.0 * k as f64 / t.elapsed().as_secs_f64());
}

fn arrive(b: multiproc::Barrier, conn: Connection) {
    conn.send(&b.wait_timeout(Duration::from_secs(30)).ok()).unwrap();
}

#[test]
fn a_barrier_of_three_releases_all_three() {
    // test_barrier
    for m in METHODS {
        let b = multiproc::Barrier::new(3).unwrap();
        let mut conns = Vec::new();
        let mut ps = Vec::new();
        for _ in 0..2 {
            let (parent, child) = Pipe::duplex().unwrap();
            ps.push(Process::builder(arrive, (b.clone(), child)).start_method(m).start().unwrap());
            conns.push(parent);
        }
        let mine = b.wait_timeout(Duration::from_secs(30)).unwrap();
        let mut indices: Vec<u32> = conns.iter().map(|c| c.recv::<Option<u32>>().unwrap().unwrap()).collect();
        indices.push(mine);
        indices.sort();
        assert_eq!(indices, vec![0, 1, 2], "{m}");
        for p in ps {
            p.join().unwrap();
        }
        assert_eq!(b.n_waiting(), 0);
    }
}

#[test]
fn a_barrier_timeout_breaks_it_until_reset() {
    // test_timeout, test_reset, test_abort
    let b = multiproc::Barrier::new(2).unwrap();
    let t = Instant::now();
    assert_eq!(b.wait_timeout(Duration::from_millis(100)), Err(multiproc::BrokenBarrier));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(b.broken());
    assert!(b.wait().is_err());
    b.reset();
    assert!(!b.broken());
    b.abort();
    assert!(b.wait().is_err());
    assert!(multiproc::Barrier::new(0).is_err());
}

fn wait_for_flag(cond: multiproc::Condition, flag: Value<u32>, conn: Connection) {
    let g = cond.acquire().unwrap();
    conn.send(&"waiting").unwrap();
    let (_g, ok) = cond.wait_for(g, || flag.get() == 1, Some(Duration::from_secs(30)));
    conn.send(&ok).unwrap();
}

#[test]
fn a_condition_notifies_across_processes() {
    // test_notify, test_waitfor
    for m in METHODS {
        let cond = multiproc::Condition::new().unwrap();
        let flag = Value::new(0u32).unwrap();
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(wait_for_flag, (cond.clone(), flag.clone(), child))
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "waiting");
        {
            let _g = cond.acquire().unwrap();
            flag.set(1);
            cond.notify_all().unwrap();
        }
        assert!(parent.recv::<bool>().unwrap(), "{m}");
        p.join().unwrap();
        assert!(cond.notify(1).is_err(), "notify without the lock");
        let g = cond.acquire().unwrap();
        let t = Instant::now();
        let (_g, notified) = cond.wait_timeout(g, Duration::from_millis(100));
        assert!(!notified);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}

fn take_and_exit(lock: Lock, conn: Connection) {
    lock.acquire().unwrap().forget();
    conn.send(&"held").unwrap();
}

/// Waits until `pid` has exited: a zombie nobody reaped, or gone (reaped by its parent, as the
/// fork server does).
fn wait_until_exited(pid: i32) {
    let t = Instant::now();
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(s) if s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])) => {
                return
            }
            Ok(_) => {}
        }
        assert!(t.elapsed() < Duration::from_secs(10), "process {pid} did not exit");
        std::thread::yield_now();
    }
}

/// Beyond CPython: a holder that exits without releasing is seen dead while it is still a zombie
/// that nobody reaped (the waiter here is its parent, which has not joined it).
#[test]
fn a_holder_that_exited_unreaped_gives_the_waiter_owner_died_quickly() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(take_and_exit, (lock.clone(), child)).start_method(m).start().unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "held");
        let pid = p.pid().unwrap();
        wait_until_exited(pid);
        let t = Instant::now();
        let died = lock.acquire_timeout(Duration::from_secs(2)).expect_err("owner died");
        assert!(t.elapsed() < Duration::from_millis(100 + 150), "{m}: took {:?}", t.elapsed());
        assert_eq!(died.pid(), pid, "{m}");
        drop(died.into_inner().expect("the lock is ours"));
        assert!(lock.try_acquire().unwrap().is_some(), "{m}: usable again");
        // Taken over without the child being reaped first (a zombie of this process or reaped
        // by the fork server).
        p.join().unwrap();
    }
}

fn try_a_semaphore_of_zero(sem: Semaphore) -> (bool, bool, bool, u32) {
    let a = sem.try_acquire().is_some();
    let b = sem.acquire_timeout(Duration::from_millis(10)).is_some();
    let c = sem.try_acquire().is_some();
    (a, b, c, sem.get_value())
}

fn hold_a_permit(sem: BoundedSemaphore, conn: Connection) {
    let permit = sem.acquire();
    conn.send(&"held").unwrap();
    let _: String = conn.recv().unwrap();
    drop(permit);
    conn.send(&sem.get_value()).unwrap();
}

#[test]
fn a_refused_semaphore_acquire_leaves_the_count_as_it_was() {
    // test_semaphore, test_bounded_semaphore: a failed acquire(False) or acquire(timeout=...)
    // takes nothing and gives nothing back.
    for m in METHODS {
        let sem = Semaphore::new(0).unwrap();
        let r = get_context(Some(m)).spawn(try_a_semaphore_of_zero, (sem.clone(),)).unwrap().join().unwrap();
        assert_eq!(r, (false, false, false, 0), "{m}: Semaphore(0) stays unavailable");
        assert_eq!(sem.get_value(), 0, "{m}");
        assert!(sem.try_acquire().is_none(), "{m}");
        assert_eq!(sem.get_value(), 0, "{m}");

        let bounded = BoundedSemaphore::new(1).unwrap();
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(hold_a_permit, (bounded.clone(), child)).start_method(m).start().unwrap();
        assert_eq!(parent.recv::<String>().unwrap(), "held");
        for _ in 0..3 {
            assert!(bounded.try_acquire().is_none(), "{m}: the child holds the only permit");
            assert!(bounded.acquire_timeout(Duration::from_millis(10)).is_none(), "{m}");
            assert_eq!(bounded.get_value(), 0, "{m}");
        }
        parent.send(&"release").unwrap();
        assert_eq!(parent.recv::<u32>().unwrap(), 1, "{m}: one permit after the holder's release");
        assert!(p.join().unwrap().success(), "{m}");
        assert_eq!(bounded.get_value(), 1, "{m}");
        let g = bounded.try_acquire().expect("free again");
        assert!(bounded.try_acquire().is_none(), "{m}");
        drop(g);
        assert!(bounded.release().is_err(), "{m}: still bounded at 1");
    }
}

fn wait_once_and_report(cond: multiproc::Condition, conn: Connection, timeout: Duration) {
    let _: String = conn.recv().unwrap();
    let g = cond.acquire().unwrap();
    conn.send(&"waiting").unwrap();
    let t = Instant::now();
    let (_g, notified) = cond.wait_timeout(g, timeout);
    conn.send(&(notified, t.elapsed())).unwrap();
}

#[test]
fn notify_n_wakes_n_waiters_and_the_others_time_out_unnotified() {
    // test_notify_n, test_timeout (Condition): wait(timeout) returns False unless notified.
    let timeout = Duration::from_secs(3);
    for m in METHODS {
        let cond = multiproc::Condition::new().unwrap();
        let (mut conns, mut ps) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let (parent, child) = Pipe::duplex().unwrap();
            ps.push(
                Process::builder(wait_once_and_report, (cond.clone(), child, timeout))
                    .start_method(m)
                    .start()
                    .unwrap(),
            );
            conns.push(parent);
        }
        for c in &conns {
            c.send(&"go").unwrap();
        }
        for c in &conns {
            assert_eq!(c.recv::<String>().unwrap(), "waiting");
        }
        {
            // Each waiter let the lock go inside wait: holding it now, all five are waiting.
            let _g = cond.acquire().unwrap();
            cond.notify(3).unwrap();
        }
        let results: Vec<(bool, Duration)> = conns.iter().map(|c| c.recv().unwrap()).collect();
        let woken = results.iter().filter(|r| r.0).count();
        assert_eq!(woken, 3, "{m}: notify(3) with five waiting: {results:?}");
        for (notified, took) in &results {
            if !notified {
                assert!(*took >= timeout, "{m}: an unnotified waiter came back early: {took:?}");
            }
        }
        for p in ps {
            assert!(p.join().unwrap().success(), "{m}");
        }
    }
}

fn manager_wait_once(cond: multiproc::manager::ConditionProxy, conn: Connection, timeout: Duration) {
    let _: String = conn.recv().unwrap();
    let g = cond.lock().unwrap();
    conn.send(&"waiting").unwrap();
    let notified = cond.wait_timeout(timeout).unwrap();
    drop(g);
    conn.send(&notified).unwrap();
}

#[test]
fn a_manager_condition_notify_n_wakes_n_waiters() {
    // test_notify_n through a manager's Condition proxy.
    let manager = multiproc::Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let timeout = Duration::from_secs(3);
    let (mut conns, mut ps) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (parent, child) = Pipe::duplex().unwrap();
        ps.push(Process::new(manager_wait_once, (cond.clone(), child, timeout)).start().unwrap());
        conns.push(parent);
    }
    for c in &conns {
        c.send(&"go").unwrap();
    }
    for c in &conns {
        assert_eq!(c.recv::<String>().unwrap(), "waiting");
    }
    {
        let _g = cond.lock().unwrap();
        cond.notify(3).unwrap();
    }
    let results: Vec<bool> = conns.iter().map(|c| c.recv().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| **r).count(), 3, "{results:?}");
    for p in ps {
        assert!(p.join().unwrap().success());
    }
}

fn wait_untimed_and_report(cond: multiproc::Condition, conn: Connection) {
    let g = cond.acquire().unwrap();
    conn.send(&"waiting").unwrap();
    let _g = cond.wait(g);
    conn.send(&"notified").unwrap();
}

#[test]
fn a_notification_goes_past_a_waiter_that_was_killed() {
    // The first waiter is killed while it waits; notify(1) must reach the second one.
    for m in METHODS {
        let cond = multiproc::Condition::new().unwrap();
        let (first, child) = Pipe::duplex().unwrap();
        let doomed =
            Process::builder(wait_untimed_and_report, (cond.clone(), child)).start_method(m).start().unwrap();
        assert_eq!(first.recv::<String>().unwrap(), "waiting");
        let (second, child) = Pipe::duplex().unwrap();
        let p =
            Process::builder(wait_untimed_and_report, (cond.clone(), child)).start_method(m).start().unwrap();
        assert_eq!(second.recv::<String>().unwrap(), "waiting");
        doomed.kill().unwrap();
        doomed.join().unwrap();
        {
            let _g = cond.acquire().unwrap();
            cond.notify(1).unwrap();
        }
        assert!(second.poll(Some(Duration::from_secs(30))).unwrap(), "{m}: the live waiter was not notified");
        assert_eq!(second.recv::<String>().unwrap(), "notified");
        assert!(p.join().unwrap().success(), "{m}");
    }
}
