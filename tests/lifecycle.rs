//! Lifecycle hygiene: no fd leaks, no zombies, children die with their parent, and at exit
//! daemonic children are terminated while the others are joined (Python's `_exit_function`).

use multiproc::{get_context, spawn, Connection, Pipe, Process, StartMethod};
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn nothing() {}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Whether `pid` still exists and is not a zombie (only ever asked of pids this test created).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("");
            state != "Z" && state != "X"
        }
    }
}

fn gone_within(pid: i32, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn count_fds_after_many_starts(method: StartMethod) -> (usize, usize) {
    // Warm up: the fork server and launcher thread hold descriptors of their own.
    Process::builder(nothing, ()).start_method(method).start().unwrap().join().unwrap();
    let before = open_fds();
    let mut pids = Vec::new();
    for _ in 0..100 {
        let p = Process::builder(nothing, ()).start_method(method).start().unwrap();
        p.join().unwrap();
        pids.push(p.pid().unwrap());
        let h = get_context(Some(method)).spawn(|| 1u8, ()).unwrap();
        pids.push(h.pid());
        h.join().unwrap();
    }
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || !running(pid), "pid {pid} left");
    }
    (before, open_fds())
}

fn fd_report(method: StartMethod) -> (usize, usize) {
    count_fds_after_many_starts(method)
}

#[test]
fn many_starts_leak_no_descriptors_and_leave_no_zombies() {
    // Measured in a fresh child so other tests' descriptors do not disturb the count.
    for m in METHODS {
        let (before, after) =
            get_context(Some(StartMethod::Spawn)).spawn(fd_report, (m,)).unwrap().join().unwrap();
        assert_eq!(before, after, "{m}: descriptors before and after 200 starts");
    }
}

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a long-sleeping grandchild, reports its pid, then waits to be killed.
fn parent_of_sleeper(conn: Connection, method: StartMethod) {
    let p = Process::builder(sleep_long, ()).start_method(method).start().unwrap();
    conn.send(&p.pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn children_die_with_a_killed_parent() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let middle = Process::builder(parent_of_sleeper, (child, m)).start_method(m).start().unwrap();
        let grandchild: i32 = parent.recv().unwrap();
        assert!(running(grandchild));
        middle.kill().unwrap();
        middle.join().unwrap();
        assert!(
            gone_within(grandchild, Duration::from_secs(2)),
            "{m}: grandchild {grandchild} outlived its parent"
        );
    }
}

fn report_pid(conn: Connection) {
    conn.send(&std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn daemon_reporting(to_test: Connection, to_parent: Connection) {
    to_test.send(&std::process::id()).unwrap();
    to_parent.send(&()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn write_after(conn: Connection, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    conn.send(&"finished").unwrap();
}

/// Plays a parent that returns with a daemonic child still running and a non-daemonic child not
/// yet finished: at exit the first must be terminated and the second joined.
fn exits_with_children(daemon_conn: Connection, worker_conn: Connection, method: StartMethod) -> i32 {
    let (ready, ready_child) = Pipe::duplex().unwrap();
    let d = Process::builder(daemon_reporting, (daemon_conn, ready_child))
        .daemon(true)
        .start_method(method)
        .build();
    let d = d.start().unwrap();
    ready.recv::<()>().unwrap();
    Process::builder(write_after, (worker_conn, 300u64)).start_method(method).start().unwrap();
    d.pid().unwrap()
}

#[test]
fn at_exit_daemons_are_terminated_and_others_joined() {
    // test_daemon (terminated at exit), _exit_function joins non-daemonic children
    for m in METHODS {
        let (daemon_parent, daemon_child) = Pipe::duplex().unwrap();
        let (worker_parent, worker_child) = Pipe::duplex().unwrap();
        let t = Instant::now();
        let h = get_context(Some(m)).spawn(exits_with_children, (daemon_child, worker_child, m)).unwrap();
        let daemon_pid = h.join().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(300), "{m}: the parent waited for its worker");
        assert_eq!(worker_parent.recv::<String>().unwrap(), "finished");
        assert_eq!(daemon_parent.recv::<u32>().unwrap() as i32, daemon_pid);
        assert!(gone_within(daemon_pid, Duration::from_secs(2)), "{m}: the daemon outlived its parent");
    }
}

fn spawn_from_thread() -> u32 {
    std::thread::spawn(|| spawn(|| 5u32, ()).unwrap().join().unwrap()).join().unwrap()
}

#[test]
fn children_started_from_short_lived_threads_survive_the_thread() {
    // PR_SET_PDEATHSIG follows the creating *thread*: children are created from a stable one.
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = std::thread::scope(|s| {
            s.spawn(|| Process::builder(report_pid, (child,)).start_method(m).start().unwrap())
                .join()
                .unwrap()
        });
        let pid: u32 = parent.recv().unwrap();
        // The creating thread has exited; the child must still be alive.
        assert_eq!(
            p.join_timeout(Duration::from_millis(100)).unwrap(),
            None,
            "{m}: child died with its thread"
        );
        assert!(running(pid as i32));
        p.kill().unwrap();
        p.join().unwrap();
        assert_eq!(get_context(Some(m)).spawn(spawn_from_thread, ()).unwrap().join().unwrap(), 5);
    }
}

/// Forks a helper with raw `fork` (as some C libraries do): the helper inherits every descriptor
/// of this child, its result socket included, and lives until told to quit (at most 30 s). Then
/// this child dies by SIGKILL without producing a result.
fn fork_helper_then_die(conn: Connection) -> u32 {
    // SAFETY: this child is single-threaded; the helper only polls the connection and `_exit`s.
    match unsafe { libc::fork() } {
        0 => {
            let _ = conn.poll(Some(Duration::from_secs(30)));
            // SAFETY: `_exit` ends the helper without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        helper if helper > 0 => {
            conn.send(&helper).expect("report");
            // SAFETY: sending a signal to this very process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!("SIGKILL cannot be caught")
        }
        _ => panic!("fork failed: {}", std::io::Error::last_os_error()),
    }
}

#[test]
fn join_does_not_wait_for_a_helper_holding_the_result_socket() {
    for m in METHODS {
        let (ours, theirs) = Pipe::duplex().unwrap();
        let handle = get_context(Some(m)).spawn(fork_helper_then_die, (theirs,)).unwrap();
        let helper: i32 = ours.recv().unwrap();
        let t = Instant::now();
        let result =
            handle.join_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{m}: join hung"));
        assert!(t.elapsed() < Duration::from_secs(5), "{m}: join took {:?}", t.elapsed());
        match result {
            Err(multiproc::Error::Child(c)) => {
                assert_eq!(c.failure(), &multiproc::ChildFailure::Signaled(9), "{m}")
            }
            other => panic!("{m}: expected the child's death, got {other:?}"),
        }
        ours.send(&()).unwrap(); // tells the helper to quit
        assert!(gone_within(helper, Duration::from_secs(5)), "{m}: helper {helper} survived");
    }
}

fn exit_with_three() -> u32 {
    std::process::exit(3)
}

#[test]
fn a_target_that_exits_reports_its_code() {
    for m in METHODS {
        let err = get_context(Some(m)).spawn(exit_with_three, ()).unwrap().join().expect_err("no value");
        match err {
            multiproc::Error::Child(c) => {
                assert_eq!(c.failure(), &multiproc::ChildFailure::Exited(3), "{m}")
            }
            other => panic!("{m}: {other:?}"),
        }
    }
}

#[test]
fn joined_children_leave_the_list_of_children() {
    // Python's join discards the child from `_children`.
    let p = Process::new(nothing, ()).start().unwrap();
    let pid = p.pid();
    p.join().unwrap();
    assert!(!multiproc::active_children().iter().any(|c| c.pid() == pid));
    let failed = Process::builder(nothing, ()).start_method(StartMethod::Spawn).build();
    assert!(failed.sentinel().is_err(), "no sentinel before start");
}

/// Every child of this process, zombies included (from each thread's list in /proc).
fn my_children() -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect();
    pids.sort_unstable();
    pids
}

fn write_marker(path: String) {
    std::fs::write(path, b"ran").unwrap();
}

fn set_fd_limit(soft: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

/// In a fresh child: starts a grandchild under every descriptor limit from 0 up to a few above
/// the highest open descriptor. A start that fails must leave no child behind (running or
/// zombie) and its target must never have run. Returns (failed starts, successful starts,
/// problems seen).
fn starts_under_fd_limits(method: StartMethod, dir: String) -> (u32, u32, Vec<String>) {
    // The fork server (for that method) and the launcher exist before the limits are set.
    Process::builder(nothing, ()).start_method(method).start().unwrap().join().unwrap();
    let before = my_children();
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let (mut failed, mut started, mut problems) = (0, 0, Vec::new());
    for limit in 0..highest + 12 {
        let marker = format!("{dir}/{method}-{limit}");
        let p = Process::builder(write_marker, (marker.clone(),)).start_method(method).build();
        let old = set_fd_limit(limit);
        let r = p.start();
        set_fd_limit(old);
        match r {
            Ok(_) => {
                started += 1;
                assert_eq!(p.join().unwrap().exitcode(), 0, "{method}: limit {limit}");
            }
            Err(e) => {
                failed += 1;
                let after = my_children();
                if after != before {
                    problems.push(format!("limit {limit}: start failed ({e}) but children are {after:?}"));
                    for pid in after.iter().filter(|p| !before.contains(p)) {
                        // SAFETY: killing and reaping a leftover child of this very process.
                        unsafe {
                            libc::kill(*pid, libc::SIGKILL);
                            libc::waitpid(*pid, std::ptr::null_mut(), 0);
                        }
                    }
                }
                if std::path::Path::new(&marker).exists() {
                    problems.push(format!("limit {limit}: start failed ({e}) but the target ran"));
                }
            }
        }
    }
    (failed, started, problems)
}

#[test]
fn a_start_that_fails_for_lack_of_descriptors_leaves_no_child_and_runs_nothing() {
    let dir = std::env::temp_dir().join(format!("mp-fdlimit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for m in METHODS {
        let h = get_context(Some(StartMethod::Spawn))
            .spawn(starts_under_fd_limits, (m, dir.display().to_string()))
            .unwrap();
        let (failed, started, problems) = h.join().unwrap();
        assert!(failed > 0 && started > 0, "{m}: {failed} failed, {started} started");
        assert!(problems.is_empty(), "{m}: {problems:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// In a fresh child: stops its fork server with SIGSTOP, then starts a child through it. The
/// start must replace the server and succeed; returns how long it took.
fn start_with_a_stopped_fork_server() -> Duration {
    Process::builder(nothing, ()).start_method(StartMethod::Forkserver).start().unwrap().join().unwrap();
    let servers = my_children();
    assert_eq!(servers.len(), 1, "only the fork server is left: {servers:?}");
    // SAFETY: stopping this process's own fork server.
    assert_eq!(unsafe { libc::kill(servers[0], libc::SIGSTOP) }, 0);
    let t = Instant::now();
    let p = Process::builder(nothing, ()).start_method(StartMethod::Forkserver).start().unwrap();
    assert_eq!(p.join().unwrap().exitcode(), 0);
    let took = t.elapsed();
    assert!(!my_children().contains(&servers[0]), "the stopped server was killed and reaped");
    took
}

#[test]
fn a_stopped_fork_server_is_replaced() {
    let h = get_context(Some(StartMethod::Spawn)).spawn(start_with_a_stopped_fork_server, ()).unwrap();
    let pid = h.pid();
    match h.join_timeout(Duration::from_secs(90)) {
        Ok(took) => {
            let took = took.unwrap();
            assert!(took < Duration::from_secs(60), "the start took {took:?}");
        }
        Err(h) => {
            h.process().kill().unwrap();
            panic!("a start through a stopped fork server hung (helper {pid})");
        }
    }
}
