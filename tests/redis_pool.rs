//! A `Pool` on a Redis broker (`multiproc::redis::PoolBuilder`), with workers started by
//! the builder and workers started as on another machine (this test binary run again with
//! `MP_REDIS_WORKER`). Needs `REDIS_URL` (skipped, saying so, when unset); the restart tests
//! start their own `redis-server` on a free loopback port.
#![cfg(feature = "redis")]

use multiproc::redis::{PoolBuilder, AUTHKEY_ENV, WORKER_ENV};
use multiproc::{Error, StartMethod, TaskErrorKind};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEY: &[u8] = b"redis pool test key";
const KEY_HEX: &str = "726564697320706f6f6c2074657374206b6579";

fn url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "REDIS_URL not set, skipping (set it to a Redis 7 server, e.g. redis://127.0.0.1:6390/0)"
            );
            None
        }
    }
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test-{what}-{}-{nanos}", std::process::id())
}

/// This test binary, run as a worker of `pool` the way another machine would run it.
fn remote_worker(exe: &std::path::Path, url: &str, pool: &str, key_hex: &str) -> Child {
    Command::new(exe)
        .env(WORKER_ENV, format!("{url}#{pool}"))
        .env(AUTHKEY_ENV, key_hex)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_child(mut c: Child, within: Duration) -> (i32, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        assert!(Instant::now() < deadline, "worker pid {} did not exit within {within:?}", c.id());
        // Polling a child's exit status (std has no wait with a timeout).
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// The value and the pid of the broker worker (the task process's parent) that ran it.
fn square_where(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(30));
    (x * x, std::os::unix::process::parent_id())
}

#[test]
fn map_apply_imap_starmap_and_callbacks_on_local_workers() {
    let Some(url) = url() else { return };
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver] {
        let pool = PoolBuilder::new(&url).processes(2).authkey(KEY).start_method(method).build().unwrap();
        assert_eq!(pool.map(square, [1, 2, 3]).unwrap(), vec![1, 4, 9]);
        assert_eq!(pool.apply(|a: i32, b: i32| a + b, (2, 3)).unwrap(), 5);
        let r = pool.apply_async(square, (9,)).unwrap();
        assert_eq!(r.get().unwrap(), 81);
        let v: Vec<u64> = pool.imap(square, 0..20u64).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(v, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
        let mut u: Vec<u64> =
            pool.imap_unordered(square, 0..20u64).unwrap().collect::<Result<_, _>>().unwrap();
        u.sort();
        assert_eq!(u, v);
        assert_eq!(pool.starmap(|a: u32, b: u32| a * b, vec![(2, 3), (4, 5)]).unwrap(), vec![6, 20]);
        let big = pool.map_chunked(square, 0..1000u64, 50).unwrap();
        assert_eq!(big.iter().sum::<u64>(), (0..1000u64).map(|x| x * x).sum::<u64>());
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let r = pool.apply_async(square, (7,)).unwrap();
        r.callback(move |v: &u64| tx.lock().unwrap().send(*v).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 49);
        assert_eq!(r.get().unwrap(), 49);
        match pool.apply(|s: String| -> u32 { panic!("bad input {s}") }, ("x".to_string(),)) {
            Err(Error::Task(e)) => {
                assert_eq!(e.kind(), TaskErrorKind::Panicked);
                assert!(e.message().contains("bad input x"), "{e}");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        pool.close();
        pool.join().unwrap();
        assert!(pool.apply_async(square, (1,)).is_err(), "a closed pool takes no task");
    }
}

#[test]
fn executor_on_the_broker() {
    let Some(url) = url() else { return };
    let ex = PoolBuilder::new(&url).processes(2).authkey(KEY).build_executor().unwrap();
    let futures: Vec<_> = (1..=3u64).map(|x| ex.submit(square, (x,))).collect::<Result<_, _>>().unwrap();
    let mut done: Vec<u64> =
        multiproc::as_completed(futures).map(|f| f.result()).collect::<Result<_, _>>().unwrap();
    done.sort();
    assert_eq!(done, vec![1, 4, 9]);
    ex.shutdown(true, false);
}

#[test]
fn map_and_imap_across_two_remote_worker_processes() {
    let Some(url) = url() else { return };
    let name = unique("remote");
    let pool = PoolBuilder::new(&url).name(&name).authkey(KEY).build().unwrap();
    let exe = std::env::current_exe().unwrap();
    let workers: Vec<Child> = (0..2).map(|_| remote_worker(&exe, &url, &name, KEY_HEX)).collect();
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let got = pool.map_chunked(square_where, 0..60u64, 1).unwrap();
    assert_eq!(got.iter().map(|v| v.0).collect::<Vec<_>>(), (0..60u64).map(|x| x * x).collect::<Vec<_>>());
    let ran_on: std::collections::HashSet<u32> = got.iter().map(|v| v.1).collect();
    assert_eq!(ran_on, pids.iter().copied().collect(), "tasks should run on both remote workers");
    let v: Vec<(u64, u32)> = pool.imap(square_where, 0..10u64).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(v.iter().map(|v| v.0).collect::<Vec<_>>(), (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    for w in workers {
        let (code, err) = wait_child(w, Duration::from_secs(30));
        assert_eq!(code, 0, "a worker should leave cleanly when its pool finishes: {err}");
    }
}

fn sleep_where(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::os::unix::process::parent_id()
}

#[test]
fn slow_tasks_after_quick_ones_are_spread_over_the_workers() {
    let Some(url) = url() else { return };
    let pool = PoolBuilder::new(&url).processes(2).authkey(KEY).build().unwrap();
    // Quick tasks first: the workers learn to take many at a time.
    let quick: Vec<_> = (0..2000u64).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    for (i, r) in quick.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    // Then a burst of slow ones, whose run time no worker knows yet: each worker takes at most
    // its share, not the whole burst.
    let ran_on = pool.map_chunked(sleep_where, [300u64; 6], 1).unwrap();
    let mut per: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for w in ran_on {
        *per.entry(w).or_default() += 1;
    }
    assert_eq!(per.len(), 2, "six slow tasks ran on one worker: {per:?}");
    assert!(per.values().all(|&n| n <= 4), "one worker took most of the burst: {per:?}");
    pool.close();
    pool.join().unwrap();
}

/// Pushes the pid of the broker worker running it, then takes a while.
fn report_then_sleep(marks: multiproc::redis::Queue<u32>, ms: u64) -> u32 {
    let worker = std::os::unix::process::parent_id();
    marks.put(worker).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    worker
}

#[test]
fn a_worker_killed_mid_task_has_its_task_run_again_and_one_result() {
    let Some(url) = url() else { return };
    let marks: multiproc::redis::Queue<u32> = multiproc::redis::Queue::open(&url, &unique("marks")).unwrap();
    let pool = PoolBuilder::new(&url)
        .processes(2)
        .authkey(KEY)
        .heartbeat_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = pool.apply_async(report_then_sleep, (marks.clone(), 1500)).unwrap();
    let first = marks.get_timeout(Duration::from_secs(30)).unwrap();
    // SAFETY: `first` is one of this test's own worker processes (a child of this process).
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    let t = Instant::now();
    let ran_on = r.get_timeout(Duration::from_secs(60)).unwrap();
    assert_ne!(ran_on, first, "the result must come from the other worker");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The task ran twice (once on the killed worker), and gave one result.
    assert_eq!(marks.get_timeout(Duration::from_secs(5)).unwrap(), ran_on);
    assert!(marks.get_nowait().is_err());
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    marks.unlink().unwrap();
}

fn die() -> u32 {
    std::process::abort()
}

#[test]
fn a_task_that_kills_its_process_fails_after_the_death_limit_naming_the_deaths() {
    let Some(url) = url() else { return };
    let pool = PoolBuilder::new(&url).processes(2).authkey(KEY).max_deaths(2).build().unwrap();
    let t = Instant::now();
    match pool.apply_async(die, ()).unwrap().get_timeout(Duration::from_secs(60)) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind(), TaskErrorKind::WorkerDied, "{e}");
            let m = e.message();
            assert!(m.contains("2 worker deaths"), "{m}");
            assert_eq!(m.matches("SIGABRT").count(), 2, "{m}");
        }
        other => panic!("expected a worker death, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(60));
    // The pool goes on.
    assert_eq!(pool.map(square, [1, 2, 3]).unwrap(), vec![1, 4, 9]);
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn task_timeout_kills_the_task_as_locally() {
    let Some(url) = url() else { return };
    let pool = PoolBuilder::new(&url)
        .processes(1)
        .authkey(KEY)
        .task_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let t = Instant::now();
    match pool.apply(sleep_ms, (20_000,)) {
        Err(Error::Task(e)) => assert_eq!(e.kind(), TaskErrorKind::TimedOut, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(pool.apply(sleep_ms, (10,)).unwrap(), 10);
}

fn redis_cli(url: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli").arg("-u").arg(url).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_tampered_task_message_is_refused_and_never_run() {
    let Some(url) = url() else { return };
    let name = unique("tamper");
    let marks: multiproc::redis::Queue<u32> = multiproc::redis::Queue::open(&url, &unique("marks")).unwrap();
    let pool = PoolBuilder::new(&url).name(&name).authkey(KEY).build().unwrap();
    let r = pool.apply_async(report_then_sleep, (marks.clone(), 0)).unwrap();
    // Change the last byte of the stored task (its arguments), as someone with write access
    // to the broker could.
    let data = format!("mp:pool:{{{name}}}:data");
    let script = "local v = redis.call('HGET', KEYS[1], ARGV[1]) \
                  local b = (string.byte(v, #v) + 1) % 256 \
                  redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, #v - 1) .. string.char(b)) return #v";
    let Some(len) = redis_cli(&url, &["EVAL", script, "1", &data, "1"]) else {
        eprintln!("redis-cli not found, skipping");
        return;
    };
    assert!(len.parse::<usize>().unwrap() > 32, "{len}");
    let worker = remote_worker(&std::env::current_exe().unwrap(), &url, &name, KEY_HEX);
    match r.get_timeout(Duration::from_secs(30)) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind(), TaskErrorKind::Codec, "{e}");
            assert!(e.message().contains("authentication"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(marks.get_nowait().is_err(), "the tampered task must not run");
    pool.close();
    pool.join().unwrap();
    let (code, err) = wait_child(worker, Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("refused task 1"), "{err}");
    marks.unlink().unwrap();
}

#[test]
fn a_worker_with_another_authkey_serves_nothing() {
    let Some(url) = url() else { return };
    let name = unique("authkey");
    let pool = PoolBuilder::new(&url).name(&name).authkey(KEY).build().unwrap();
    let r = pool.apply_async(square, (6,)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let (code, err) = wait_child(remote_worker(&exe, &url, &name, "00ff00ff"), Duration::from_secs(30));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("authkey is not the pool's"), "{err}");
    assert!(!r.ready(), "nothing ran the task");
    let good = remote_worker(&exe, &url, &name, KEY_HEX);
    assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 36);
    pool.close();
    pool.join().unwrap();
    assert_eq!(wait_child(good, Duration::from_secs(30)).0, 0);
}

#[test]
fn a_worker_of_another_build_refuses_the_pool() {
    let Some(url) = url() else { return };
    // Another program of this package, built with it: the example.
    let exe = std::env::current_exe().unwrap();
    let other = exe.parent().unwrap().parent().unwrap().join("examples").join("redis_pool");
    if !other.exists() {
        eprintln!("{} not built, skipping", other.display());
        return;
    }
    let name = unique("build");
    let pool = PoolBuilder::new(&url).name(&name).authkey(KEY).build().unwrap();
    let r = pool.apply_async(square, (4,)).unwrap();
    let (code, err) = wait_child(remote_worker(&other, &url, &name, KEY_HEX), Duration::from_secs(30));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("differs from the pool's"), "{err}");
    assert!(!r.ready());
    let good = remote_worker(&exe, &url, &name, KEY_HEX);
    assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 16);
    pool.close();
    pool.join().unwrap();
    assert_eq!(wait_child(good, Duration::from_secs(30)).0, 0);
}

/// A `redis-server` of this test's own, on a free loopback port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(port: Option<u16>) -> Option<Server> {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        });
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("redis-server not found, skipping");
            return None;
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Server { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn mark_then_sleep(marks: multiproc::redis::Queue<u32>, x: u64) -> u64 {
    marks.put(1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    x * x
}

#[test]
fn the_server_killed_and_restarted_mid_map_loses_nothing() {
    let Some(main_url) = url() else { return };
    let Some(mut server) = Server::start(None) else { return };
    let marks: multiproc::redis::Queue<u32> =
        multiproc::redis::Queue::open(&main_url, &unique("marks")).unwrap();
    let pool = PoolBuilder::new(&server.url())
        .processes(2)
        .authkey(KEY)
        .heartbeat_timeout(Duration::from_secs(1))
        .reconnect_window(Duration::from_secs(30))
        .build()
        .unwrap();
    let items: Vec<_> = (0..30u64).map(|x| (marks.clone(), x)).collect();
    let m = pool.starmap_async_chunked(mark_then_sleep, items, 1).unwrap();
    // Three tasks have started: the map is under way.
    for _ in 0..3 {
        marks.get_timeout(Duration::from_secs(60)).unwrap();
    }
    let port = server.port;
    server.kill();
    // The restarted server has none of the pool's keys: the client sends its tasks again.
    let _server = Server::start(Some(port)).unwrap();
    let values = m.get_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(values, (0..30u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(pool.apply(square, (8,)).unwrap(), 64);
    pool.close();
    pool.join().unwrap();
    marks.unlink().unwrap();
}

#[test]
fn the_server_gone_for_good_fails_pending_calls_within_bounded_time() {
    let Some(_) = url() else { return };
    let Some(mut server) = Server::start(None) else { return };
    let pool = PoolBuilder::new(&server.url())
        .processes(1)
        .authkey(KEY)
        .reconnect_window(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    let r = pool.apply_async(sleep_ms, (3000,)).unwrap();
    server.kill();
    let t = Instant::now();
    match r.get_timeout(Duration::from_secs(60)) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind(), TaskErrorKind::Broken, "{e}");
            assert!(e.message().contains("cannot be reached"), "{e}");
        }
        other => panic!("expected a broker error, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // New calls fail at once, and dropping the pool returns promptly.
    assert!(pool.apply(square, (1,)).is_err());
    let t = Instant::now();
    drop(pool);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

fn takes_a_connection(_c: multiproc::Connection) -> u32 {
    1
}

#[test]
fn a_task_carrying_a_handle_is_refused_with_a_clear_error() {
    let Some(url) = url() else { return };
    let pool = PoolBuilder::new(&url).processes(1).authkey(KEY).build().unwrap();
    let (a, _b) = multiproc::Pipe::new(true).unwrap();
    match pool.apply_async(takes_a_connection, (a,)).unwrap().get_timeout(Duration::from_secs(30)) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind(), TaskErrorKind::Codec, "{e}");
            assert!(e.message().contains("cannot carry handles"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pool.apply(square, (2,)).unwrap(), 4);
}

#[test]
fn close_right_after_submitting_lets_every_task_finish() {
    let Some(url) = url() else { return };
    for _ in 0..20 {
        let pool = PoolBuilder::new(&url).processes(1).authkey(KEY).build().unwrap();
        let r = pool.map_async_chunked(square, 0..40u64, 1).unwrap();
        let one = pool.apply_async(square, (12,)).unwrap();
        pool.close();
        pool.join().unwrap();
        assert_eq!(r.get().unwrap(), (0..40u64).map(|x| x * x).collect::<Vec<_>>());
        assert_eq!(one.get().unwrap(), 144);
    }
}
