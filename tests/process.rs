//! Processes under every start method: lifecycle, exit codes, signals, names, typed results.
//! Test names mention the CPython test (`_test_multiprocessing.py`) they port where one exists.

use multiproc::{
    active_children, current_process, get_context, parent_process, spawn, ChildFailure, Connection, Error,
    Pipe, Process, StartMethod,
};
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn nothing() {}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Tells the parent it is running, then sleeps: the parent signals it only once it is inside.
fn ready_then_sleep(conn: Connection, ms: u64) {
    conn.send(&"ready").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
}

fn start_sleeper(method: StartMethod, ms: u64) -> Process {
    let (parent, child) = Pipe::duplex().unwrap();
    let p = Process::builder(ready_then_sleep, (child, ms)).start_method(method).start().unwrap();
    assert_eq!(parent.recv::<String>().unwrap(), "ready");
    p
}

#[test]
fn terminate_gives_minus_sigterm() {
    // test_terminate
    for m in METHODS {
        let p = start_sleeper(m, 30_000);
        assert!(p.is_alive());
        p.terminate().unwrap();
        let status = p.join().unwrap();
        assert_eq!(status.exitcode(), -libc::SIGTERM, "{m}");
        assert_eq!(p.exitcode(), Some(-15));
        assert!(!p.is_alive());
    }
}

#[test]
fn kill_gives_minus_sigkill() {
    // test_kill
    for m in METHODS {
        let p = start_sleeper(m, 30_000);
        p.kill().unwrap();
        assert_eq!(p.join().unwrap().exitcode(), -9, "{m}");
        assert_eq!(p.join().unwrap().signal(), Some(9));
        // Signalling a finished process is a no-op, as in Python.
        p.terminate().unwrap();
    }
}

fn panics() {
    panic!("boom from the child");
}

fn fails() -> Result<(), String> {
    Err("it went wrong".into())
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

#[test]
fn exit_codes_of_panic_error_and_exit() {
    // test_process (exitcode), test_sys_exit
    for m in METHODS {
        let p = Process::builder(panics, ()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap().exitcode(), 1, "{m}");
        let p = Process::builder(fails, ()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap().exitcode(), 1, "{m}");
        let p = Process::builder(exits_with, (7,)).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap().exitcode(), 7, "{m}");
        let p = Process::builder(nothing, ()).start_method(m).start().unwrap();
        assert!(p.join().unwrap().success(), "{m}");
    }
}

fn panics_with_value(n: u32) -> u32 {
    if n > 0 {
        panic!("task {n} failed");
    }
    n
}

#[test]
fn join_handle_carries_the_panic_message() {
    for m in METHODS {
        let err = get_context(Some(m)).spawn(panics_with_value, (3,)).unwrap().join().unwrap_err();
        let Error::Child(child) = err else { panic!("expected a child error, got {err:?}") };
        let msg = child.panic_message().expect("panic message");
        assert!(msg.contains("task 3 failed"), "{m}: {msg}");
        assert!(child.to_string().contains("panicked"), "{child}");
    }
}

fn sleep_forever_returning() -> u8 {
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn join_handle_reports_the_killing_signal() {
    for m in METHODS {
        let h = get_context(Some(m)).spawn(sleep_forever_returning, ()).unwrap();
        h.process().kill().unwrap();
        let err = h.join().unwrap_err();
        let Error::Child(child) = err else { panic!("expected a child error, got {err:?}") };
        assert_eq!(child.failure(), &ChildFailure::Signaled(libc::SIGKILL), "{m}");
        assert!(child.to_string().contains("SIGKILL"), "{child}");
    }
}

#[test]
fn join_timeout_returns_in_time_and_leaves_the_child_running() {
    // test_process (join with timeout)
    for m in METHODS {
        let p = start_sleeper(m, 30_000);
        let t = Instant::now();
        assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(200), "{m}: {took:?}");
        assert!(took < Duration::from_secs(2), "{m}: {took:?}");
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.kill().unwrap();
        assert!(p.join_timeout(Duration::from_secs(10)).unwrap().is_some());
    }
}

#[test]
fn is_alive_and_exitcode_through_the_lifecycle() {
    // test_process
    for m in METHODS {
        let p = Process::builder(sleep_ms, (300,)).start_method(m).build();
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(p.pid(), None);
        assert!(p.join().is_err(), "join before start is an error");
        p.start().unwrap();
        assert!(p.pid().is_some());
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.join().unwrap();
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[test]
fn close_is_refused_while_running_then_closes() {
    // test_close
    for m in METHODS {
        let p = start_sleeper(m, 30_000);
        assert!(matches!(p.close(), Err(Error::InvalidState(_))));
        p.terminate().unwrap();
        p.join().unwrap();
        p.close().unwrap();
        assert!(matches!(p.join(), Err(Error::Closed(_))));
        assert!(matches!(p.sentinel(), Err(Error::Closed(_))));
        assert!(!p.is_alive());
        p.close().unwrap(); // closing twice is fine
    }
}

#[test]
fn starting_twice_is_an_error() {
    for m in METHODS {
        let p = Process::builder(nothing, ()).start_method(m).build();
        p.start().unwrap();
        assert!(matches!(p.start(), Err(Error::InvalidState(_))));
        p.join().unwrap();
    }
}

#[test]
fn sentinel_becomes_ready_when_the_child_ends() {
    // test_sentinel
    for m in METHODS {
        let p = start_sleeper(m, 30_000);
        let ready = multiproc::connection::wait(&[&p], Some(Duration::from_millis(50))).unwrap();
        assert!(ready.is_empty());
        p.kill().unwrap();
        let ready = multiproc::connection::wait(&[&p], Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ready, vec![0]);
        p.join().unwrap();
    }
}

fn my_name() -> (String, i32, Option<(String, i32)>) {
    let me = current_process();
    (me.name().to_string(), me.pid(), parent_process().map(|p| (p.name().to_string(), p.pid())))
}

fn grandchild_name() -> String {
    spawn(my_name, ()).unwrap().join().unwrap().0
}

#[test]
fn names_pids_and_parents_are_seen_in_the_child() {
    // test_current, test_parent_process
    assert_eq!(current_process().name(), "MainProcess");
    assert!(parent_process().is_none());
    for m in METHODS {
        let h = get_context(Some(m)).spawn(my_name, ()).unwrap();
        let name = h.process().name();
        let pid = h.pid();
        assert!(name.starts_with("Process-"), "{name}");
        let (seen, seen_pid, parent) = h.join().unwrap();
        assert_eq!(seen, name, "{m}");
        assert_eq!(seen_pid, pid);
        assert_eq!(parent, Some(("MainProcess".to_string(), std::process::id() as i32)));

        let h = get_context(Some(m)).spawn(grandchild_name, ()).unwrap();
        let name = h.process().name();
        assert_eq!(h.join().unwrap(), format!("{name}:1"), "{m}");
    }
}

#[test]
fn default_names_count_up() {
    let a = Process::new(nothing, ());
    let b = Process::new(nothing, ());
    let n = |p: &Process| p.name().trim_start_matches("Process-").parse::<u32>().unwrap();
    assert!(n(&b) > n(&a));
    let c = Process::builder(nothing, ()).name("custom").build();
    assert_eq!(c.name(), "custom");
}

/// What the child was started as: its name, daemon flag and start method.
fn report_identity(conn: Connection) {
    let me = current_process();
    conn.send(&(me.name().to_string(), me.daemon(), multiproc::get_start_method())).unwrap();
}

#[test]
fn builder_options_and_setters_reach_the_child() {
    // Python's Process(name=, daemon=), ctx.Process, then p.name = / p.daemon = before start
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p =
            Process::builder(report_identity, (child,)).name("built").daemon(true).start_method(m).start();
        let p = p.unwrap();
        assert_eq!((p.name(), p.daemon()), ("built".to_string(), true));
        assert_eq!(parent.recv::<(String, bool, StartMethod)>().unwrap(), ("built".to_string(), true, m));
        assert!(p.join().unwrap().success(), "{m}");

        let (parent, child) = Pipe::duplex().unwrap();
        let p = get_context(Some(m)).process_builder(report_identity, (child,)).build();
        assert!(!p.daemon(), "{m}: not daemonic by default");
        assert!(p.pid().is_none() && !p.is_alive(), "{m}: built, not started");
        p.set_name("renamed");
        p.set_daemon(true).unwrap();
        p.start().unwrap();
        assert_eq!(parent.recv::<(String, bool, StartMethod)>().unwrap(), ("renamed".to_string(), true, m));
        assert!(p.join().unwrap().success(), "{m}");
    }
}

#[test]
fn a_builder_shows_its_options() {
    let b = Process::builder(nothing, ()).name("shown").daemon(true).start_method(StartMethod::Spawn);
    let s = format!("{b:?}");
    assert!(s.contains(r#"name: "shown""#) && s.contains("daemon: true") && s.contains("Spawn"), "{s}");
}

fn zero() -> u8 {
    0
}
fn one(a: String) -> String {
    a.to_uppercase()
}
fn three(a: u8, b: Vec<u32>, c: Option<String>) -> (u8, u32, String) {
    (a, b.iter().sum(), c.unwrap_or_default())
}
#[allow(clippy::too_many_arguments)]
fn twelve(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8, j: u8, k: u8, l: u8) -> u32 {
    [a, b, c, d, e, f, g, h, i, j, k, l].iter().map(|&x| x as u32).sum()
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Point {
    x: i64,
    label: String,
}

fn moved(p: Point) -> Point {
    Point { x: p.x + 1, label: format!("{}!", p.label) }
}

#[test]
fn spawn_returns_values_of_every_arity() {
    for m in METHODS {
        let ctx = get_context(Some(m));
        assert_eq!(ctx.spawn(zero, ()).unwrap().join().unwrap(), 0);
        assert_eq!(ctx.spawn(one, ("abc".to_string(),)).unwrap().join().unwrap(), "ABC");
        let r = ctx.spawn(three, (1u8, vec![1u32, 2, 3], Some("x".to_string()))).unwrap().join().unwrap();
        assert_eq!(r, (1, 6, "x".to_string()));
        let r = ctx.spawn(twelve, (1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8)).unwrap();
        assert_eq!(r.join().unwrap(), 78);
        let r = ctx.spawn(moved, (Point { x: 1, label: "p".into() },)).unwrap().join().unwrap();
        assert_eq!(r, Point { x: 2, label: "p!".into() });
        let closure = ctx.spawn(|a: u64, b: u64| a * b, (6u64, 7u64)).unwrap();
        assert_eq!(closure.join().unwrap(), 42);
    }
}

fn echo_upper(conn: Connection) {
    while let Ok(s) = conn.recv::<String>() {
        conn.send(&s.to_uppercase()).unwrap();
    }
}

#[test]
fn a_connection_is_a_valid_argument() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(echo_upper, (child,)).start_method(m).start().unwrap();
        for word in ["one", "two", "three"] {
            parent.send(&word.to_string()).unwrap();
            assert_eq!(parent.recv::<String>().unwrap(), word.to_uppercase());
        }
        drop(parent); // the child's recv sees end-of-file and it returns
        assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap().map(|s| s.exitcode()), Some(0), "{m}");
    }
}

fn try_start_child() -> String {
    match Process::new(nothing, ()).start() {
        Ok(_) => "started".into(),
        Err(e) => e.to_string(),
    }
}

fn report_child_start(conn: Connection) {
    conn.send(&try_start_child()).unwrap();
}

#[test]
fn daemonic_processes_cannot_have_children() {
    // test_daemon_argument / "daemonic processes are not allowed to have children"
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(report_child_start, (child,)).daemon(true).start_method(m).start().unwrap();
        assert!(p.daemon());
        let msg: String = parent.recv().unwrap();
        assert!(msg.contains("daemonic"), "{m}: {msg}");
        p.join().unwrap();
    }
}

#[test]
fn set_daemon_after_start_is_an_error() {
    let p = start_sleeper(StartMethod::Forkserver, 30_000);
    assert!(p.set_daemon(true).is_err());
    p.kill().unwrap();
    p.join().unwrap();
}

#[test]
fn active_children_lists_running_children_only() {
    // test_active_children
    let p = start_sleeper(StartMethod::Forkserver, 30_000);
    let pid = p.pid().unwrap();
    assert!(active_children().iter().any(|c| c.pid() == Some(pid)));
    p.kill().unwrap();
    p.join().unwrap();
    assert!(!active_children().iter().any(|c| c.pid() == Some(pid)));
}

#[test]
fn start_methods_are_named_as_in_python() {
    assert_eq!(multiproc::get_all_start_methods()[0], StartMethod::Forkserver);
    for m in METHODS {
        assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
    }
    assert!("threads".parse::<StartMethod>().is_err());
    assert!(multiproc::cpu_count() >= 1);
}

#[test]
fn debug_looks_like_pythons_repr() {
    let p = Process::builder(nothing, ()).name("reprtest").build();
    assert_eq!(format!("{p:?}"), "<Process name='reprtest' initial>");
    p.start().unwrap();
    p.join().unwrap();
    let s = format!("{p:?}");
    assert!(s.contains("stopped exitcode=0"), "{s}");
}

/// In a fresh child: one thread panics and is held inside the panic hook (so it holds std's
/// hook lock) while this thread starts a `Fork` child. The child must run and exit; returns its
/// exit code, or `None` if it did not end within 20 s.
fn fork_while_another_thread_is_in_the_panic_hook() -> Option<i32> {
    use std::sync::{Arc, Condvar, Mutex};
    let state = Arc::new((Mutex::new((false, false)), Condvar::new())); // (inside, released)
    let in_hook = state.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() == Some(&"held in the hook") {
            let (m, cv) = &*in_hook;
            let mut g = m.lock().unwrap();
            g.0 = true;
            cv.notify_all();
            while !g.1 {
                g = cv.wait(g).unwrap();
            }
        }
        previous(info);
    }));
    let panicking = std::thread::spawn(|| panic!("held in the hook"));
    {
        let (m, cv) = &*state;
        let mut g = m.lock().unwrap();
        while !g.0 {
            g = cv.wait(g).unwrap();
        }
    }
    let p = Process::builder(nothing, ()).start_method(StartMethod::Fork).start().unwrap();
    let status = p.join_timeout(Duration::from_secs(20)).unwrap();
    if status.is_none() {
        p.kill().unwrap();
        p.join().unwrap();
    }
    {
        let (m, cv) = &*state;
        m.lock().unwrap().1 = true;
        cv.notify_all();
    }
    assert!(panicking.join().is_err());
    status.map(|s| s.exitcode())
}

#[test]
fn a_fork_child_runs_while_another_thread_of_the_parent_panics() {
    let h = get_context(Some(StartMethod::Spawn)).spawn(fork_while_another_thread_is_in_the_panic_hook, ());
    let h = h.unwrap();
    match h.join_timeout(Duration::from_secs(60)) {
        Ok(code) => assert_eq!(code.unwrap(), Some(0), "the forked child hung in its startup"),
        Err(h) => {
            h.process().kill().unwrap();
            panic!("the helper hung");
        }
    }
}

fn panics_in_a_fork_child_still_carry_their_message() -> String {
    // A hook that replaces every other one: a Fork child's panic then comes with its message
    // from the panic's payload.
    std::panic::set_hook(Box::new(|_| {}));
    let err =
        get_context(Some(StartMethod::Fork)).spawn(panics_with_value, (9,)).unwrap().join().unwrap_err();
    let Error::Child(child) = err else { panic!("expected a child error, got {err:?}") };
    child.panic_message().unwrap().to_string()
}

#[test]
fn panic_messages_keep_their_location() {
    for m in METHODS {
        let err = get_context(Some(m)).spawn(panics_with_value, (4,)).unwrap().join().unwrap_err();
        let Error::Child(child) = err else { panic!("expected a child error, got {err:?}") };
        let msg = child.panic_message().unwrap();
        assert!(msg.contains("task 4 failed") && msg.contains("process.rs"), "{m}: {msg}");
    }
    // In a child that set a hook of its own, Fork grandchildren still report the message.
    let msg = get_context(Some(StartMethod::Spawn))
        .spawn(panics_in_a_fork_child_still_carry_their_message, ())
        .unwrap()
        .join()
        .unwrap();
    assert!(msg.contains("task 9 failed"), "{msg}");
}

/// Refuses to be encoded when it holds 13, and to be decoded when it holds 7, each with a
/// message of its own.
#[derive(Debug, PartialEq)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky, refused to encode"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <u32 as serde::Deserialize>::deserialize(d)?;
        if v == 7 {
            return Err(serde::de::Error::custom("7 is refused on arrival"));
        }
        Ok(Picky(v))
    }
}

fn send_picky(conn: Connection, v: u32) {
    conn.send(&Picky(v)).unwrap();
}

fn make_picky(v: u32) -> Picky {
    Picky(v)
}

fn take_picky_quietly(_p: Picky) {}

fn take_picky(p: Picky) -> u32 {
    p.0
}

#[test]
fn custom_serde_errors_reach_the_caller() {
    const ENC: &str = "13 is unlucky, refused to encode";
    const DEC: &str = "7 is refused on arrival";
    let (a, b) = Pipe::duplex().unwrap();
    let e = a.send(&Picky(13)).unwrap_err();
    assert!(e.to_string().contains(ENC), "send: {e}");
    // Nested inside other values too.
    let e = a.send(&(1u8, vec![Picky(1), Picky(13)])).unwrap_err();
    assert!(e.to_string().contains(ENC), "send nested: {e}");
    a.send(&Picky(7)).unwrap();
    let e = b.recv::<Picky>().unwrap_err();
    assert!(e.to_string().contains(DEC), "recv: {e}");
    a.send(&Some(vec![(0u8, Picky(7))])).unwrap();
    let e = b.recv::<Option<Vec<(u8, Picky)>>>().unwrap_err();
    assert!(e.to_string().contains(DEC), "recv nested: {e}");
    let e = Process::new(take_picky_quietly, (Picky(13),)).start().unwrap_err();
    assert!(e.to_string().contains(ENC), "process arguments: {e}");
    for m in METHODS {
        let ctx = get_context(Some(m));
        let (a, b) = Pipe::duplex().unwrap();
        ctx.process(send_picky, (b, 7)).start().unwrap().join().unwrap();
        let e = a.recv::<Picky>().unwrap_err();
        assert!(e.to_string().contains(DEC), "{m}: recv from a child: {e}");
        let e = ctx.spawn(make_picky, (13,)).unwrap().join().unwrap_err();
        assert!(e.to_string().contains(ENC), "{m}: a result that cannot be encoded: {e}");
        let e = ctx.spawn(make_picky, (7,)).unwrap().join().unwrap_err();
        assert!(e.to_string().contains(DEC), "{m}: a result that cannot be decoded: {e}");
        let e = ctx.spawn(take_picky, (Picky(7),)).unwrap().join().unwrap_err();
        assert!(e.to_string().contains(DEC), "{m}: arguments that cannot be decoded: {e}");
    }
    let pool = multiproc::Pool::builder().processes(1).build().unwrap();
    let e = pool.apply(take_picky, (Picky(13),)).unwrap_err();
    assert!(e.to_string().contains(ENC), "pool arguments: {e}");
    let e = pool.apply(take_picky, (Picky(7),)).unwrap_err();
    assert!(e.to_string().contains(DEC), "pool arguments in the worker: {e}");
    let e = pool.apply(make_picky, (13,)).unwrap_err();
    assert!(e.to_string().contains(ENC), "pool result in the worker: {e}");
    let e = pool.apply(make_picky, (7,)).unwrap_err();
    assert!(e.to_string().contains(DEC), "pool result: {e}");
    assert_eq!(pool.apply(take_picky, (Picky(5),)).unwrap(), 5, "the pool stays usable");
    drop(pool);
    let manager = multiproc::Manager::start().unwrap();
    let list = manager.list::<Picky>([]).unwrap();
    let e = list.append(Picky(13)).unwrap_err();
    assert!(e.to_string().contains(ENC), "manager append: {e}");
    list.append(Picky(7)).unwrap();
    let e = list.get(0).unwrap_err();
    assert!(e.to_string().contains(DEC), "manager get: {e}");
}
