//! A `Pool` on a Redis broker (`multiprocessing::redis::PoolBuilder`), with workers started by
//! the builder and workers started as on another machine (this test binary run again with
//! `MP_REDIS_WORKER`). Needs `REDIS_URL` (skipped, saying so, when unset); the restart tests
//! start their own `redis-server` on a free loopback port.
#![cfg(feature = "redis")]

use multiprocessing::redis::{PoolBuilder, AUTHKEY_ENV, WORKER_ENV};
use multiprocessing::{Error, Pool, StartMethod, TaskErrorKind};
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
        multiprocessing::as_completed(futures).map(|f| f.result()).collect::<Result<_, _>>().unwrap();
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

fn _unused(_: Pool) {}
