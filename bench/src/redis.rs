//! The Redis broker rows (`--features redis`): `redis_pool_apply_async`, `redis_pool_map` and
//! `redis_queue_small`, with RQ, Celery and a redis-py loop as the peers, all on one server.
//!
//! The server is `REDIS_URL`'s, or else a `redis-server` this module starts on a free loopback
//! port (and stops at the end of the run). The Python peers run in `python/redis_peers.py`,
//! one process for the whole run, asked for one repetition at a time so that its repetitions
//! interleave with ours; when `redis`, `rq` or `celery` cannot be imported, they are installed
//! from PyPI into `target/bench-venv` (the output says so, and says so when that fails).

use crate::host::{exclude_from_tree, Meter, Sample};
use crate::{Kind, Measure, RowResult, Workload};
use multiproc::redis::{PoolBuilder, Queue};
use multiproc::{Pool, Process};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Workers of each pool (ours: broker workers started by the builder; RQ: `rq worker`s; Celery:
/// the prefork concurrency).
const WORKERS: usize = 2;

/// The least operations one repetition of ours runs, whatever the calibration's count (which
/// starts small for RQ's sake): fewer would measure the latency of a few tasks, not throughput.
const OURS_MIN_TASKS: usize = 2_000;
const OURS_MIN_MAP: usize = 100_000;
const OURS_MIN_ITEMS: usize = 20_000;

/// What the run says about the Redis rows (server, peers installed or not).
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn note(s: String) {
    eprintln!("bench: {s}");
    NOTES.lock().unwrap().push(s);
}

/// The notes so far, for the placement's summary.
pub fn notes() -> Vec<String> {
    NOTES.lock().unwrap().clone()
}

struct Server {
    url: String,
    /// The server this module started (None: `REDIS_URL`'s).
    child: Option<(Child, std::path::PathBuf)>,
}

/// `None` until first asked; then the server, or why there is none.
static SERVER: Mutex<Option<Result<Server, String>>> = Mutex::new(None);

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn start_server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        if !url.is_empty() {
            return Ok(Server { url, child: None });
        }
    }
    let port = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
    let dir = std::env::temp_dir().join(format!("bench-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls prctl, which is async-signal-safe
        // and takes no pointers: the server goes when the bench does, however it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start redis-server ({e}); set REDIS_URL"))?;
    let t = Instant::now();
    while !ping(port) {
        if t.elapsed() > Duration::from_secs(10) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("redis-server did not answer within 10 s".into());
        }
        // Polling for the server to listen: it has no readiness signal.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its CPU time is no side's: neither ours nor the peers' counts it.
    exclude_from_tree(&[child.id() as i32]);
    let url = format!("redis://127.0.0.1:{port}/0");
    note(format!("redis-server started for this run on {url} (pid {})", child.id()));
    Ok(Server { url, child: Some((child, dir)) })
}

/// The server's URL (started on first use), or None (said once) when there is none.
fn url() -> Option<String> {
    let mut s = SERVER.lock().unwrap();
    let s = s.get_or_insert_with(|| {
        let r = start_server();
        if let Err(e) = &r {
            note(format!("Redis rows left empty: {e}"));
        }
        r
    });
    s.as_ref().ok().map(|s| s.url.clone())
}

/// Stops the peers' driver and the server this module started.
pub fn shutdown() {
    PEERS.with(|p| p.borrow_mut().take());
    if let Some(Ok(Server { child: Some((mut c, dir)), .. })) = SERVER.lock().unwrap().take() {
        // SAFETY: kill takes a pid and a signal number; the pid is our own unreaped child's.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        if c.wait().is_err() {
            let _ = c.kill();
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn broker_pool(url: &str) -> Pool {
    let pool = PoolBuilder::new(url).processes(WORKERS).authkey(b"bench").build().unwrap();
    // Warm: the workers are up and have taken tasks before the clock starts.
    assert_eq!(pool.map(square, 0..100u64).get().unwrap()[99], 99 * 99);
    pool
}

fn finish(pool: Pool) {
    pool.close();
    pool.join().unwrap();
}

/// `apply_async(square, (i,))` n times on a broker pool of 2 local workers, then `get()` each.
fn pool_apply_async(n: usize) -> Option<Sample> {
    let n = n.max(OURS_MIN_TASKS);
    let pool = broker_pool(&url()?);
    let m = Meter::start();
    let results: Vec<_> = (0..n as u64).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    let s = m.stop(n as f64);
    finish(pool);
    Some(s)
}

/// `map(square, 0..n)` on a broker pool of 2 local workers, default chunk size (n / 8).
fn pool_map(n: usize) -> Option<Sample> {
    let n = n.max(OURS_MIN_MAP);
    let pool = broker_pool(&url()?);
    let m = Meter::start();
    let out = pool.map(square, 0..n as u64).get().unwrap();
    let s = m.stop(n as f64);
    assert_eq!(out[n - 1], ((n - 1) * (n - 1)) as u64);
    finish(pool);
    Some(s)
}

fn produce(q: Queue<u64>, n: usize) {
    for i in 0..n as u64 {
        q.put(i).unwrap();
    }
}

/// One producer process puts n integers on a broker queue, the parent gets them; the clock
/// starts before the child, as in `queue_small`.
fn queue_small(n: usize) -> Option<Sample> {
    let n = n.max(OURS_MIN_ITEMS);
    let url = url()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let q: Queue<u64> = Queue::open(&url, &format!("bench-{}-{nanos}", std::process::id())).unwrap();
    let m = Meter::start();
    let p = Process::new(produce, (q.clone(), n)).start().unwrap();
    for i in 0..n as u64 {
        assert_eq!(q.get().unwrap(), i);
    }
    p.join().unwrap();
    let s = m.stop(n as f64);
    q.unlink().unwrap();
    Some(s)
}

/// `python/redis_peers.py --serve`, asked one repetition at a time.
struct Peers {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

thread_local! {
    /// `None` until first asked; `Some(None)` once the peers could not start.
    static PEERS: RefCell<Option<Option<Peers>>> = const { RefCell::new(None) };
}

const PY_MODULES: &str = "import redis, rq, celery, packaging";
const PY_PACKAGES: [&str; 4] = ["redis", "rq", "celery", "packaging"];

fn imports_ok(python: &str) -> bool {
    Command::new(python)
        .args(["-c", PY_MODULES])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An interpreter that has redis-py, RQ and Celery: `BENCH_PYTHON` (or `python3`) if it has
/// them, else the bench's own virtual environment, installed from PyPI when missing.
fn python_with_peers() -> Result<String, String> {
    let system = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    if imports_ok(&system) {
        return Ok(system);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-venv");
    let python = format!("{venv}/bin/python");
    if imports_ok(&python) {
        return Ok(python);
    }
    note(format!(
        "{system} lacks redis-py, RQ or Celery: installing {} from PyPI into target/bench-venv",
        PY_PACKAGES.join(", ")
    ));
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.stdout(Stdio::null()).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.lines().last().unwrap_or("failed").to_string())
        }
    };
    if !std::path::Path::new(&python).exists() {
        run(Command::new(&system).args(["-m", "venv", venv]))
            .map_err(|e| format!("python3 -m venv failed: {e}"))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "-q"]).args(PY_PACKAGES))
        .map_err(|e| format!("pip install failed: {e}"))?;
    if imports_ok(&python) {
        Ok(python)
    } else {
        Err("installed, but still not importable".into())
    }
}

impl Peers {
    fn start(url: &str) -> Result<Peers, String> {
        let python = python_with_peers()?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/redis_peers.py");
        let mut child = Command::new(&python)
            .args([script, "--serve", "--url", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{python}: {e}"))?;
        // Its process tree measures itself (workers included), as the CPython driver does.
        exclude_from_tree(&[child.id() as i32]);
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Peers { child, stdin, stdout };
        let banner = p.ask("hello").ok_or("the peers' driver did not answer")?;
        note(format!("Redis peers: {banner}"));
        Ok(p)
    }

    fn ask(&mut self, line: &str) -> Option<String> {
        writeln!(self.stdin, "{line}").ok()?;
        self.stdin.flush().ok()?;
        let mut reply = String::new();
        if self.stdout.read_line(&mut reply).ok()? == 0 {
            eprintln!("the Redis peers' driver exited");
            return None;
        }
        match reply.trim_end().split_once('\t') {
            Some(("ok", rest)) => Some(rest.to_string()),
            _ => {
                eprintln!("Redis peer {line:?}: {}", reply.trim_end());
                None
            }
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// One repetition of the peer workload `name` (see `python/redis_peers.py`).
fn peer(name: &'static str) -> Measure {
    Box::new(move |n| {
        let url = url()?;
        PEERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let peers = cell.get_or_insert_with(|| match Peers::start(&url) {
                Ok(p) => Some(p),
                Err(e) => {
                    note(format!("RQ, Celery and redis-py columns left empty: {e}"));
                    None
                }
            });
            let r = peers.as_mut()?.ask(&format!("run\t{name}\t{n}"))?;
            let f: Vec<f64> = r.split('\t').filter_map(|x| x.parse().ok()).collect();
            (f.len() == 3).then(|| Sample { secs: f[0], ops: f[1], cpu: f[2] })
        })
    })
}

/// The rows. Every side is given one operation count to start calibrating from, and RQ runs
/// about a hundred tasks a second, so the counts start small.
pub fn workloads() -> Vec<Workload> {
    let row = |name: &str, unit, n0, ours: fn(usize) -> Option<Sample>, peers| Workload {
        name: name.to_string(),
        unit,
        kind: Kind::Rate,
        n0,
        ours: Box::new(ours),
        python: false,
        peers,
        floor: None,
    };
    vec![
        row(
            "redis_pool_apply_async",
            "tasks/s",
            20,
            pool_apply_async,
            vec![("RQ", peer("rq_apply_async")), ("Celery", peer("celery_apply_async"))],
        ),
        row(
            "redis_pool_map",
            "tasks/s",
            200,
            pool_map,
            vec![("RQ enqueue_many", peer("rq_map")), ("Celery chunks", peer("celery_map"))],
        ),
        row(
            "redis_queue_small",
            "items/s",
            2_000,
            queue_small,
            vec![("redis-py LPUSH/BRPOP", peer("redispy_queue_small"))],
        ),
    ]
}

/// The targets against this run's figures: how many times the peers ours is, and the
/// target ratio, one line each.
pub fn targets(rows: &[RowResult]) -> Vec<String> {
    let ours = |row: &str| rows.iter().find(|r| r.name == row)?.ours.as_ref().map(|s| s.figure.median);
    let peer = |row: &str, side: &str| {
        rows.iter().find(|r| r.name == row)?.peers.iter().find(|p| p.side == side).map(|p| p.figure.median)
    };
    let checks = [
        ("redis_pool_apply_async", "redis_pool_apply_async", "RQ", 100.0),
        ("redis_pool_apply_async", "redis_pool_apply_async", "Celery", 20.0),
        ("redis_pool_map", "redis_pool_apply_async", "RQ", 1000.0),
        ("redis_pool_map", "redis_pool_apply_async", "Celery", 200.0),
        ("redis_queue_small", "redis_queue_small", "redis-py LPUSH/BRPOP", 5.0),
    ];
    let mut out = Vec::new();
    if cfg!(debug_assertions) {
        out.push("a debug build of the bench: the Redis figures below are not the library's".to_string());
    }
    for (row, peer_row, side, want) in checks {
        if let (Some(o), Some(p)) = (ours(row), peer(peer_row, side)) {
            let x = o / p;
            let verdict = if x >= want { "met" } else { "NOT met" };
            out.push(format!(
                "target: {row} {} = {}x {side} {peer_row} {} (target >= {want}x): {verdict}",
                crate::table::fig(o),
                crate::table::fig(x),
                crate::table::fig(p),
            ));
        }
    }
    out
}
