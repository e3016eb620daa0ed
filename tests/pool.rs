//! `Pool` and `Executor` across real worker processes, under each start method where the way
//! workers start matters. Each test names the CPython test (`_test_multiprocessing.py`) it
//! ports, or says what Python lacks.

use multiproc::{as_completed, Connection, Error, Executor, Pipe, Pool, StartMethod, TaskErrorKind};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn square(x: u64) -> u64 {
    x * x
}

fn pid() -> i32 {
    std::process::id() as i32
}

fn pool(method: StartMethod, processes: usize) -> Pool {
    Pool::builder().processes(processes).start_method(method).build().unwrap()
}

fn task_error(r: multiproc::Result<impl std::fmt::Debug>) -> multiproc::TaskError {
    match r {
        Err(Error::Task(e)) => e,
        other => panic!("expected a task error, got {other:?}"),
    }
}

/// Whether `pid` is gone (reaped: no zombie left behind).
fn reaped(child: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{child}/stat")) {
        Err(_) => true,
        // Another process may have reused the pid; only a zombie child of ours is a failure.
        Ok(stat) => {
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let mut fields = after.split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            !(state == "Z" && ppid == pid())
        }
    }
}

// ---- basics ---------------------------------------------------------------------------------

/// TestPool.test_apply, test_map, test_map_chunksize, test_starmap, under each start method.
#[test]
fn map_keeps_order() {
    for method in METHODS {
        let p = pool(method, 3);
        assert_eq!(p.apply(square, (5,)).unwrap(), 25, "{method}");
        let name = p.apply(|| multiproc::current_process().name().to_string(), ()).unwrap();
        let prefix = match method {
            StartMethod::Fork => "ForkPoolWorker-",
            StartMethod::Spawn => "SpawnPoolWorker-",
            StartMethod::Forkserver => "ForkServerPoolWorker-",
        };
        assert!(name.starts_with(prefix), "{method}: {name}");
        let expected: Vec<u64> = (0..200).map(|x| x * x).collect();
        assert_eq!(p.map(square, 0..200).get().unwrap(), expected, "{method}");
        assert_eq!(p.map(square, 0..200).chunksize(7).get().unwrap(), expected, "{method}");
        assert_eq!(p.map(square, 0..200).chunksize(500).get().unwrap(), expected, "{method}");
        let pairs: Vec<(u64, u64)> = (0..50).map(|i| (i, i + 1)).collect();
        let sums = p.starmap(|a: u64, b: u64| a * b, pairs.clone()).get().unwrap();
        assert_eq!(sums, pairs.iter().map(|(a, b)| a * b).collect::<Vec<_>>(), "{method}");
        assert_eq!(p.starmap(|a: u64, b: u64| a + b, pairs).chunksize(3).get().unwrap()[49], 99);
        p.close();
        p.join().unwrap();
    }
}

/// TestPool.test_map_async, test_starmap_async and test_map_async_callbacks.
#[test]
fn async_maps_and_callbacks() {
    let p = Pool::new(2).unwrap();
    let r = p.map_async(square, 0..10).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    r.callback(move |v: &Vec<u64>| tx.send(v.clone()).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), (0..10).map(|x| x * x).collect::<Vec<_>>());
    // Callbacks run before the result turns ready, as in Python.
    r.wait();
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap()[3], 9);
    let s = p.starmap(|a: i32, b: i32| a - b, vec![(5, 1), (9, 2)]).chunksize(1).submit().unwrap();
    assert_eq!(s.get().unwrap(), vec![4, 7]);
    let m =
        p.map(|s: String| s.len(), vec!["ab".to_string(), "abc".to_string()]).chunksize(1).submit().unwrap();
    assert_eq!(m.get().unwrap(), vec![2, 3]);
}

/// TestPool.test_empty_iterable.
#[test]
fn empty_inputs() {
    let p = Pool::new(1).unwrap();
    assert_eq!(p.map(square, Vec::new()).get().unwrap(), Vec::<u64>::new());
    assert_eq!(p.imap(square, Vec::new()).submit().unwrap().count(), 0);
    assert_eq!(p.imap_unordered(square, Vec::new()).submit().unwrap().count(), 0);
    assert_eq!(p.map_async(square, Vec::new()).unwrap().get().unwrap(), Vec::<u64>::new());
    assert!(matches!(p.map(square, 0..3).chunksize(0).get(), Err(Error::InvalidState(_))));
    p.close();
    p.join().unwrap();
}

/// TestPool.test_imap: in order, also with chunks.
#[test]
fn imap_yields_in_order() {
    let p = Pool::new(3).unwrap();
    let got: Vec<u64> = p.imap(square, 0..10).submit().unwrap().map(Result::unwrap).collect();
    assert_eq!(got, (0..10).map(|x| x * x).collect::<Vec<_>>());
    let mut it = p.imap(square, 0..1000).chunksize(100).submit().unwrap();
    for i in 0..1000 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());
}

/// Python's `imap` reads its whole input on a helper thread and never returns for an endless
/// one; ours reads the input as workers free up.
#[test]
fn imap_on_an_endless_iterator_yields_the_first_results() {
    let p = Pool::new(2).unwrap();
    let pulled = std::cell::Cell::new(0u64);
    let input = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
    let firsts: Vec<u64> = p.imap(square, input).submit().unwrap().take(50).map(Result::unwrap).collect();
    assert_eq!(firsts, (0..50).map(|x| x * x).collect::<Vec<_>>());
    // Input is read only a small window ahead of what was taken.
    assert!(pulled.get() <= 50 + 4 * 2 + 16, "read {} items", pulled.get());
    let mut it = p.imap_unordered(square, 0u64..).chunksize(4).submit().unwrap();
    let some: HashSet<u64> = (0..20).map(|_| it.next().unwrap().unwrap()).collect();
    assert_eq!(some.len(), 20);
    drop(it);
    // The dropped iterators do not keep the pool from closing.
    p.close();
    p.join().unwrap();
}

/// TestPool.test_imap_unordered.
#[test]
fn imap_unordered_yields_all() {
    for method in METHODS {
        let p = pool(method, 3);
        let mut got: Vec<u64> =
            p.imap_unordered(square, 0..100).submit().unwrap().map(Result::unwrap).collect();
        got.sort();
        assert_eq!(got, (0..100).map(|x| x * x).collect::<Vec<_>>(), "{method}");
        let mut got: Vec<u64> =
            p.imap_unordered(square, 0..100).chunksize(7).submit().unwrap().map(Result::unwrap).collect();
        got.sort();
        assert_eq!(got.len(), 100);
    }
}

fn sleep_then(ms: u64, value: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    value
}

/// imap_unordered yields a quick task's value before a slow one's.
#[test]
fn imap_unordered_yields_in_completion_order() {
    let p = Pool::new(2).unwrap();
    let first = p
        .imap_unordered(|(ms, v): (u64, u64)| sleep_then(ms, v), vec![(1500, 1), (0, 2)])
        .submit()
        .unwrap()
        .next();
    assert_eq!(first.unwrap().unwrap(), 2);
}

/// TestPool.test_async and test_async_timeout.
#[test]
fn async_result_waits_and_times_out() {
    let p = Pool::new(2).unwrap();
    let r = p.apply_async(sleep_then, (600, 7)).unwrap();
    assert!(matches!(r.successful(), Err(Error::InvalidState(_))));
    let t = Instant::now();
    assert!(matches!(r.get_timeout(Duration::from_millis(100)), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(!r.wait_timeout(Duration::from_millis(10)));
    assert_eq!(r.get_timeout(Duration::from_secs(20)).unwrap(), 7);
    assert!(matches!(r.get_timeout(Duration::from_secs(1)), Err(Error::InvalidState(_))));
}

/// TestPool.test_context: leaving the scope terminates the pool.
#[test]
fn pool_as_a_scope() {
    let pids: Vec<i32> = {
        let p = Pool::new(2).unwrap();
        assert_eq!(p.map(square, [1, 2, 3]).get().unwrap(), vec![1, 4, 9]);
        p.map(|_: u32| pid(), 0..8).chunksize(1).get().unwrap()
    };
    for worker in pids {
        assert!(reaped(worker), "worker {worker} left behind");
    }
}

/// Python raises ValueError for join() before close() and for work after close().
#[test]
fn close_and_join_rules() {
    let p = Pool::new(1).unwrap();
    assert!(matches!(p.join(), Err(Error::InvalidState(_))));
    let r = p.apply_async(sleep_then, (200, 3)).unwrap();
    p.close();
    assert!(matches!(p.apply_async(square, (1,)), Err(Error::Closed(_))));
    p.join().unwrap();
    assert_eq!(r.get().unwrap(), 3, "queued work finishes after close");
}

// ---- failures -------------------------------------------------------------------------------

fn explode(n: u32) -> u32 {
    if n == 3 {
        panic!("task {n} exploded");
    }
    n
}

/// _TestPoolWorkerErrors.test_async_error_callback and TestPool.test_traceback: the panic's
/// message reaches the caller, and the worker lives on.
#[test]
fn panicking_task_message_reaches_get() {
    for method in METHODS {
        let p = pool(method, 1);
        let before = p.apply(pid, ()).unwrap();
        let e = task_error(p.apply(explode, (3,)));
        assert_eq!(e.kind(), TaskErrorKind::Panicked);
        assert!(e.message().contains("task 3 exploded"), "{method}: {e}");
        assert_eq!(p.apply(pid, ()).unwrap(), before, "{method}: the worker lives on");
        let (tx, rx) = std::sync::mpsc::channel();
        let r = p.apply_async(explode, (3,)).unwrap();
        r.error_callback(move |e| tx.send(e.message().to_string()).unwrap());
        assert!(rx.recv_timeout(Duration::from_secs(20)).unwrap().contains("exploded"));
        r.wait();
        assert!(!r.successful().unwrap());
        // map: the failing chunk's panic is the map's error.
        let e = task_error(p.map(explode, 0..10).get());
        assert!(e.message().contains("exploded"));
        // imap: one error for the failing item, the others are fine.
        let items: Vec<_> = p.imap(explode, 0..6).submit().unwrap().collect();
        assert_eq!(items.len(), 6);
        assert!(items[3].is_err());
        assert_eq!(*items[5].as_ref().unwrap(), 5);
    }
}

fn report_pid_and_sleep(conn: Connection) -> u32 {
    conn.send(&pid()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn abort_self() -> u32 {
    std::process::abort()
}

fn segfault() -> u32 {
    // Rust's runtime handles SIGSEGV (to report stack overflows); restore the default action
    // so the worker dies of the signal, as it would of a real invalid access.
    // SAFETY: signal(2) and raise(3) with valid arguments; the worker is meant to die here.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    0
}

/// Python's Pool hangs forever when a worker dies mid-task. Here the task fails with the
/// signal's name, every other task completes, and the pool keeps serving.
#[test]
fn sigkill_of_a_worker_mid_task() {
    for method in METHODS {
        let p = pool(method, 2);
        let (ours, theirs) = Pipe::duplex().unwrap();
        let victim = p.apply_async(report_pid_and_sleep, (theirs,)).unwrap();
        let others: Vec<_> = (0..200).map(|i| p.apply_async(square, (i,)).unwrap()).collect();
        assert!(ours.poll(Some(Duration::from_secs(20))).unwrap(), "{method}: the task did not start");
        let worker: i32 = ours.recv().unwrap();
        // SAFETY: plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
        let e = task_error(victim.get());
        assert_eq!(e.kind(), TaskErrorKind::WorkerDied, "{method}");
        assert!(
            e.message().contains(&format!("worker pid {worker} killed by SIGKILL while running task")),
            "{e}"
        );
        assert_eq!(e.pid(), Some(worker));
        for (i, r) in others.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64, "{method}");
        }
        // The worker was replaced: the pool still has two workers running tasks.
        let pids: HashSet<i32> = p
            .map(|_: u32| sleep_then(20, 0) as i32 + pid(), 0..20)
            .chunksize(1)
            .get()
            .unwrap()
            .into_iter()
            .collect();
        assert!(!pids.contains(&worker), "{method}");
        assert!(reaped(worker));
        let e = task_error(p.apply(abort_self, ()));
        assert_eq!(e.kind(), TaskErrorKind::WorkerDied);
        assert!(e.message().contains("SIGABRT"), "{e}");
        let e = task_error(p.apply(segfault, ()));
        assert_eq!(e.kind(), TaskErrorKind::WorkerDied);
        assert!(e.message().contains("SIGSEGV"), "{e}");
        assert_eq!(p.apply(square, (12,)).unwrap(), 144, "{method}");
    }
}

/// Python has no per-task timeout; `task_timeout` kills the worker of a task that overruns it.
#[test]
fn task_timeout_kills_a_sleeping_task() {
    let p = Pool::builder().processes(1).task_timeout(Duration::from_millis(300)).build().unwrap();
    let t = Instant::now();
    let e = task_error(p.apply(sleep_then, (30_000, 1)));
    let took = t.elapsed();
    assert_eq!(e.kind(), TaskErrorKind::TimedOut);
    assert!(e.message().contains("task timeout"), "{e}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Quick tasks are unaffected, before and after a replacement.
    assert_eq!(p.map(square, 0..100).get().unwrap()[99], 99 * 99);
    assert_eq!(p.apply(sleep_then, (50, 4)).unwrap(), 4);
}

/// _TestPoolWorkerLifetime.test_pool_worker_lifetime_early_close with maxtasksperchild=1:
/// every task runs in a fresh process.
#[test]
fn maxtasksperchild_one_gives_each_task_a_fresh_pid() {
    for method in METHODS {
        let p = Pool::builder().processes(2).maxtasksperchild(1).start_method(method).build().unwrap();
        let rs: Vec<_> = (0..6).map(|_| p.apply_async(pid, ()).unwrap()).collect();
        p.close();
        p.join().unwrap();
        let pids: HashSet<i32> = rs.into_iter().map(|r| r.get().unwrap()).collect();
        assert_eq!(pids.len(), 6, "{method}: {pids:?}");
        assert!(pids.iter().all(|&w| reaped(w)));
    }
}

/// _TestPoolWorkerLifetime.test_pool_maxtasksperchild_invalid, and processes=0.
#[test]
fn invalid_options() {
    assert!(matches!(Pool::builder().maxtasksperchild(0).build(), Err(Error::InvalidState(_))));
    assert!(matches!(Pool::new(0), Err(Error::InvalidState(_))));
}

fn announce(conn: Connection) {
    conn.send(&pid()).unwrap();
}

static mut TAG: u32 = 0;

fn set_tag(tag: u32) {
    // SAFETY: the worker is single-threaded; this runs before any task.
    unsafe { TAG = tag };
}

fn read_tag() -> u32 {
    // SAFETY: as above.
    unsafe { TAG }
}

/// TestInitializers.test_pool_initializer: the initializer runs once per worker, before its
/// tasks; its arguments may carry handles (a Connection here).
#[test]
fn initializer_runs_once_per_worker() {
    for method in METHODS {
        let (ours, theirs) = Pipe::duplex().unwrap();
        let p = Pool::builder()
            .processes(3)
            .initializer(announce, (theirs,))
            .start_method(method)
            .build()
            .unwrap();
        let task_pids: HashSet<i32> = p
            .map(|_: u32| sleep_then(5, 0) as i32 + pid(), 0..30)
            .chunksize(1)
            .get()
            .unwrap()
            .into_iter()
            .collect();
        let mut init_pids = HashSet::new();
        for _ in 0..3 {
            assert!(ours.poll(Some(Duration::from_secs(20))).unwrap(), "{method}");
            init_pids.insert(ours.recv::<i32>().unwrap());
        }
        assert_eq!(init_pids.len(), 3, "{method}");
        assert!(task_pids.is_subset(&init_pids), "{method}: {task_pids:?} vs {init_pids:?}");
        assert!(!ours.poll(Some(Duration::from_millis(50))).unwrap(), "{method}: ran more than once");

        let p =
            Pool::builder().processes(2).initializer(set_tag, (42,)).start_method(method).build().unwrap();
        assert_eq!(p.map(|_: u8| read_tag(), 0..10).get().unwrap(), vec![42; 10], "{method}");
    }
}

fn failing_init() {
    panic!("no configuration found");
}

/// Python restarts workers whose initializer fails forever; here the pool reports it.
#[test]
fn failing_initializer_breaks_the_pool() {
    let p = Pool::builder().processes(2).initializer(failing_init, ()).build().unwrap();
    let e = task_error(p.apply(square, (2,)));
    assert_eq!(e.kind(), TaskErrorKind::Broken);
    assert!(e.message().contains("no configuration found"), "{e}");
}

/// TestPool.test_terminate on busy workers: returns within a second, every worker reaped, the
/// unfinished tasks fail.
#[test]
fn terminate_busy_workers_is_prompt_and_leaves_no_zombie() {
    for method in METHODS {
        let p = pool(method, 2);
        let (ours, theirs) = Pipe::duplex().unwrap();
        let (ours2, theirs2) = Pipe::duplex().unwrap();
        let busy = [
            p.apply_async(report_pid_and_sleep, (theirs,)).unwrap(),
            p.apply_async(report_pid_and_sleep, (theirs2,)).unwrap(),
        ];
        let queued = p.map(|s: u64| sleep_then(s, 0), vec![60_000; 50]).chunksize(1).submit().unwrap();
        let mut workers = Vec::new();
        for c in [&ours, &ours2] {
            assert!(c.poll(Some(Duration::from_secs(20))).unwrap(), "{method}");
            workers.push(c.recv::<i32>().unwrap());
        }
        let t = Instant::now();
        p.terminate();
        assert!(t.elapsed() < Duration::from_secs(1), "{method}: terminate took {:?}", t.elapsed());
        for w in &workers {
            assert!(reaped(*w), "{method}: worker {w} left behind");
        }
        for r in busy {
            assert_eq!(task_error(r.get()).kind(), TaskErrorKind::Terminated);
        }
        assert_eq!(task_error(queued.get()).kind(), TaskErrorKind::Terminated);
        assert!(matches!(p.apply_async(square, (1,)), Err(Error::Closed(_))));
    }
}

/// Dropping a pool terminates it (leaving `with Pool() as p:`), failing what was pending.
#[test]
fn dropping_the_pool_terminates_it() {
    let p = Pool::new(1).unwrap();
    let r = p.apply_async(sleep_then, (60_000, 1)).unwrap();
    let t = Instant::now();
    drop(p);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(task_error(r.get()).kind(), TaskErrorKind::Terminated);
}

/// A value cannot carry a handle back (Python cannot pickle a Connection into a result
/// either); the task fails with a clear error and the worker lives on.
#[test]
fn a_value_carrying_a_handle_is_refused() {
    let p = Pool::new(1).unwrap();
    let e = task_error(p.apply(|| Pipe::duplex().unwrap().0, ()));
    assert_eq!(e.kind(), TaskErrorKind::Codec);
    assert!(e.message().contains("cannot carry handles"), "{e}");
    assert_eq!(p.apply(square, (3,)).unwrap(), 9);
}

/// Task arguments may carry handles: a Connection to the task.
#[test]
fn tasks_receive_handles() {
    fn echo_upper(conn: Connection) -> String {
        let s: String = conn.recv().unwrap();
        s.to_uppercase()
    }
    let p = Pool::new(2).unwrap();
    let (ours, theirs) = Pipe::duplex().unwrap();
    let r = p.apply_async(echo_upper, (theirs,)).unwrap();
    ours.send(&"hello".to_string()).unwrap();
    assert_eq!(r.get().unwrap(), "HELLO");
}

fn open_fds() -> usize {
    // Ended children that nothing references any more are forgotten (their pidfds closed).
    multiproc::active_children();
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs pools of every start method through their paths (map, handles in arguments and in the
/// initializer, a panic, a killed worker, terminate) in a fresh process; returns its descriptor
/// count before and after.
fn pool_lifecycles() -> (usize, usize) {
    let warm = |m| {
        let p = pool(m, 1);
        p.apply(square, (1,)).unwrap();
    };
    METHODS.into_iter().for_each(warm);
    // And the dead socket a closed connection's descriptor is stood down onto.
    drop(Pipe::duplex().unwrap());
    let before = open_fds();
    for method in METHODS {
        let (ours, theirs) = Pipe::duplex().unwrap();
        let p = Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(announce, (theirs,))
            .build()
            .unwrap();
        assert_eq!(p.map(square, 0..50).get().unwrap().len(), 50);
        let (a, b) = Pipe::duplex().unwrap();
        let r = p.apply_async(report_pid_and_sleep, (b,)).unwrap();
        let worker: i32 = a.recv().unwrap();
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(worker, libc::SIGKILL) };
        assert!(r.get().is_err());
        assert!(p.apply(explode, (3,)).is_err());
        p.close();
        p.join().unwrap();
        drop(ours);
        let p = pool(method, 2);
        let _busy = p.apply_async(sleep_then, (60_000, 0)).unwrap();
        p.terminate();
    }
    (before, open_fds())
}

/// No descriptor is left open by a pool once it is gone, whatever happened to its workers.
#[test]
fn pools_leak_no_descriptors() {
    let (before, after) = multiproc::spawn(pool_lifecycles, ()).unwrap().join().unwrap();
    assert_eq!(before, after);
}

/// A map with a progress bar (feature `progress`) gives what the map without one gives, waited
/// for or submitted, and its error when a chunk fails.
#[cfg(feature = "progress")]
#[test]
fn map_with_a_progress_bar() {
    let p = Pool::new(2).unwrap();
    assert_eq!(p.map(square, 0..1000).progress().get().unwrap(), p.map(square, 0..1000).get().unwrap());
    let r = p.map(square, 0..100).chunksize(7).progress().submit().unwrap();
    assert_eq!(r.get().unwrap()[99], 99 * 99);
    assert!(p.map(explode, 0..10).progress().get().is_err());
    assert!(p.map(square, Vec::new()).progress().get().unwrap().is_empty());
}

// ---- the call shape -------------------------------------------------------------------------

/// A map reads nothing from its input and sends nothing before it is submitted; its options
/// are taken as they stand then.
#[test]
fn a_map_call_reads_its_input_only_when_submitted() {
    let p = Pool::new(2).unwrap();
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counter = read.clone();
    let call = p.map(square, (0..10u64).inspect(move |_| counter.set(counter.get() + 1)));
    let counter = read.clone();
    let lazy = p.imap(square, (0..10u64).inspect(move |_| counter.set(counter.get() + 1)));
    assert_eq!(read.get(), 0);
    let call = call.chunksize(3);
    assert_eq!(read.get(), 0);
    assert_eq!(call.get().unwrap(), (0..10).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(read.get(), 10);
    let it = lazy.chunksize(2).submit().unwrap();
    assert_eq!(read.get(), 20, "10 items in chunks of 2 fit in the first window");
    assert_eq!(it.map(Result::unwrap).sum::<u64>(), 285);
}

/// Chunk size 0 is refused at submission by every member of the family, as Python raises
/// `ValueError`; iterating a lazy map that cannot be submitted yields that error once.
#[test]
fn chunksize_zero_is_refused_by_every_map() {
    let p = Pool::new(1).unwrap();
    let refused = |r: multiproc::Result<Vec<u64>>| matches!(r, Err(Error::InvalidState(_)));
    assert!(refused(p.map(square, 0..3).chunksize(0).get()));
    assert!(refused(p.starmap(|a: u64, b: u64| a + b, [(1, 2)]).chunksize(0).get()));
    assert!(refused(p.map_with(2u64, |c: &u64, x: u64| c * x, 0..3u64).chunksize(0).get()));
    assert!(matches!(p.map(square, 0..3).chunksize(0).submit(), Err(Error::InvalidState(_))));
    assert!(matches!(p.imap(square, 0..3).chunksize(0).submit(), Err(Error::InvalidState(_))));
    assert!(matches!(p.imap_unordered(square, 0..3).chunksize(0).submit(), Err(Error::InvalidState(_))));
    let items: Vec<_> = p.imap(square, 0..3).chunksize(0).into_iter().collect();
    assert!(matches!(items[..], [Err(Error::InvalidState(_))]), "{items:?}");
    let items: Vec<_> = p.try_imap(square, [Ok::<u64, ()>(1)]).chunksize(0).into_iter().collect();
    assert!(matches!(items[..], [Err(multiproc::ImapError::Pool(Error::InvalidState(_)))]), "{items:?}");
    let ex = Executor::new(1).unwrap();
    assert!(matches!(ex.map(square, 0..3).chunksize(0).submit(), Err(Error::InvalidState(_))));
    // The pool is untouched.
    assert_eq!(p.map(square, 0..3).get().unwrap(), vec![0, 1, 4]);
}

/// A lazy map iterated as it is: its values in order; on a closed pool, the refusal as its only
/// item.
#[test]
fn a_lazy_map_iterates_as_it_is() {
    let p = Pool::new(2).unwrap();
    let mut got = Vec::new();
    for v in p.imap(square, 0..50u64).chunksize(4) {
        got.push(v.unwrap());
    }
    assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>());
    let mut any: Vec<u64> = p.imap_unordered(square, 0..50u64).into_iter().map(Result::unwrap).collect();
    any.sort();
    assert_eq!(any, got);
    p.close();
    let items: Vec<_> = p.imap(square, 0..50u64).into_iter().collect();
    assert!(matches!(items[..], [Err(Error::Closed(_))]), "{items:?}");
    assert!(matches!(p.map(square, 0..3).get(), Err(Error::Closed(_))));
    p.join().unwrap();
}

/// `map_with` submitted gives the flat values, as `map_async` does, with callbacks.
#[test]
fn map_with_submitted_is_a_map_result() {
    let p = Pool::new(2).unwrap();
    let r = p.map_with(10u64, |c: &u64, x: u64| c + x, 0..20u64).chunksize(3).submit().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    r.callback(move |v: &Vec<u64>| tx.send(v.len()).unwrap());
    assert_eq!(r.get().unwrap(), (10..30).collect::<Vec<_>>());
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 20);
}

/// Generic code over a pool needs one bound, `PoolTarget`.
#[test]
fn pool_target_is_the_one_bound() {
    fn both<F: multiproc::PoolTarget<(u64,)> + Copy>(p: &Pool, f: F) -> (F::Output, Vec<F::Output>) {
        let one = p.apply(f, (3,)).unwrap();
        (one, p.map(f, 0..3u64).get().unwrap())
    }
    let p = Pool::new(1).unwrap();
    assert_eq!(both(&p, square), (9, vec![0, 1, 4]));
    assert_eq!(both(&p, |x: u64| x.to_string()), ("3".to_string(), vec!["0".into(), "1".into(), "2".into()]));
}

/// The results stay `Send + Sync + Unpin`, as they were as two types.
#[test]
fn results_are_send_sync_unpin() {
    fn check<T: Send + Sync + Unpin>() {}
    check::<multiproc::AsyncResult<String>>();
    check::<multiproc::MapResult<String>>();
    check::<multiproc::PoolFuture<String>>();
}

// ---- async ----------------------------------------------------------------------------------

/// `AsyncResult` and `MapResult` are `std::future::Future`s.
#[tokio::test(flavor = "current_thread")]
async fn async_result_awaited_from_tokio() {
    let p = Pool::new(2).unwrap();
    let r = p.apply_async(sleep_then, (100, 9)).unwrap();
    assert_eq!(r.await.unwrap(), 9);
    let m = p.map_async(square, 0..10).unwrap();
    assert_eq!(m.await.unwrap()[9], 81);
    let e = p.apply_async(explode, (3,)).unwrap().await;
    assert_eq!(task_error(e).kind(), TaskErrorKind::Panicked);
    let ex = Executor::new(1).unwrap();
    assert_eq!(ex.submit(square, (4,)).unwrap().await.unwrap(), 16);
}

// ---- executor -------------------------------------------------------------------------------

/// test_concurrent_futures: submit, map, as_completed, shutdown.
#[test]
fn executor_submit_map_as_completed_shutdown() {
    let ex = Executor::builder().max_workers(2).build().unwrap();
    let f = ex.submit(square, (6,)).unwrap();
    assert_eq!(f.result_timeout(Duration::from_secs(20)).unwrap(), 36);
    assert!(f.done());
    assert!(!f.cancelled());
    let slow = ex.submit(sleep_then, (800, 1)).unwrap();
    let fast = ex.submit(sleep_then, (0, 2)).unwrap();
    let order: Vec<u64> = as_completed([slow, fast]).map(|f| f.result().unwrap()).collect();
    assert_eq!(order, vec![2, 1]);
    let values: Vec<u64> = ex.map(square, 0..20).submit().unwrap().map(Result::unwrap).collect();
    assert_eq!(values, (0..20).map(|x| x * x).collect::<Vec<_>>());
    let values: Vec<u64> = ex.map(square, 0..20).chunksize(6).submit().unwrap().map(Result::unwrap).collect();
    assert_eq!(values.len(), 20);
    let e = ex.submit(explode, (3,)).unwrap();
    assert_eq!(e.exception().unwrap().kind(), TaskErrorKind::Panicked);
    ex.shutdown();
    assert!(matches!(ex.submit(square, (1,)), Err(Error::Closed(_))));
}

/// ProcessPoolExecutor(max_workers, mp_context, initializer, initargs, max_tasks_per_child).
#[test]
fn executor_builder_options() {
    let ex = Executor::builder()
        .max_workers(2)
        .start_method(StartMethod::Spawn)
        .initializer(set_tag, (7,))
        .max_tasks_per_child(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(ex.pool().processes(), 2);
    let tags: Vec<u32> = ex.map(|_: u8| read_tag(), 0..6).submit().unwrap().map(Result::unwrap).collect();
    assert_eq!(tags, vec![7; 6]);
    let slow = ex.submit(sleep_then, (30_000, 0)).unwrap();
    assert_eq!(task_error(slow.result()).kind(), TaskErrorKind::TimedOut);
    ex.shutdown();
}

/// Future.cancel and shutdown(cancel_futures=True): tasks not yet taken are cancelled,
/// running ones finish.
#[test]
fn executor_cancel_and_shutdown_cancel_futures() {
    fn signal_then_wait(conn: Connection) -> u64 {
        conn.send(&()).unwrap();
        conn.recv::<()>().unwrap();
        1
    }
    let ex = Executor::new(1).unwrap();
    let (ours, theirs) = Pipe::duplex().unwrap();
    let running = ex.submit(signal_then_wait, (theirs,)).unwrap();
    assert!(ours.poll(Some(Duration::from_secs(20))).unwrap());
    ours.recv::<()>().unwrap();
    assert!(running.running());
    assert!(!running.cancel(), "a running task cannot be cancelled");
    let queued: Vec<_> = (0..5).map(|i| ex.submit(sleep_then, (0, i)).unwrap()).collect();
    assert!(queued[4].cancel());
    assert!(queued[4].cancelled());
    assert!(queued[4].done());
    assert_eq!(task_error(queued[4].result_timeout(Duration::from_secs(1))).kind(), TaskErrorKind::Cancelled);
    // The worker is held by `running`, so none of the queued tasks can have started.
    ex.shutdown_with(multiproc::Shutdown::new().no_wait().cancel_futures());
    for f in queued.iter().take(4) {
        assert_eq!(task_error(f.result_timeout(Duration::from_secs(20))).kind(), TaskErrorKind::Cancelled);
    }
    ours.send(&()).unwrap();
    assert_eq!(running.result().unwrap(), 1);
    ex.shutdown();
    let mut it = as_completed(Vec::<multiproc::PoolFuture<u64>>::new());
    assert!(it.next_timeout(Duration::from_millis(1)).unwrap().is_none());
}

// ---- speed ----------------------------------------------------------------------------------

/// The two pool workloads of `shared/bench/python_anchor.py`, in release mode:
/// `cargo test --release --test pool -- --ignored --nocapture bench_`
#[test]
#[ignore]
fn bench_pool_workloads() {
    let n: u64 = std::env::var("POOL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let pool = Pool::new(2).unwrap();
    pool.map(square, 0..100).get().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let v = pool.map(square, 0..n).get().unwrap();
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(v.len() as u64, n);
        println!("pool_map_tiny\t{:.1}\ttasks/s", n as f64 / dt);
    }
    for _ in 0..3 {
        let k = n / 10;
        let t = Instant::now();
        let rs: Vec<_> = (0..k).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
        for (i, r) in rs.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64);
        }
        let dt = t.elapsed().as_secs_f64();
        println!("pool_apply_async\t{:.1}\ttasks/s", k as f64 / dt);
    }
}
