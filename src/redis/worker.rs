//! The worker of a broker pool: a process of the same program that takes tasks from the
//! broker and runs them in a local [`Pool`], whose worker processes give it the local pool's
//! failure handling (a task that kills its process, or runs past the task timeout, is
//! reported; the process is replaced).
//!
//! Started two ways: by the pool's builder on the client's machine (a daemonic child), or on
//! any machine by running the program with [`WORKER_ENV`] set to `URL#pool` (and the pool's
//! authkey in [`AUTHKEY_ENV`]): a constructor sees the variable before `main` runs, serves the
//! pool, and exits. Before taking a task the worker checks that it holds the pool's authkey
//! (the client's signed `hello`) and runs the same build as the client; if not, it says why
//! on stderr and in the pool's `refused` list, and exits without running anything.
//!
//! The loop: while the worker holds fewer tasks than its limit, move task ids from `tasks` to
//! this worker's own list atomically (so a worker that dies leaves its tasks where the client
//! finds them): as many as there is room for in one script when tasks wait, else one with a
//! blocking `BLMOVE`; check each message's HMAC and build, and hand the call to the local pool.
//! The limit is one task per local process until tasks have been timed, then as many as fit in
//! 5 ms of their average run time (at most 64 per process), and never more than this worker's
//! share of the work waiting, so that quick tasks travel in batches while a burst of long ones
//! is spread over the workers. A heartbeat thread keeps the worker's heartbeat key alive; a
//! result thread signs the outcomes and, in one script per batch, pushes them and takes their
//! ids off the worker's list. A task whose process died counts a death against it and goes back
//! to the front of `tasks` until the pool's limit.

use super::link::{block_secs, split_fragment, Link, PipelineSteps};
use super::message::{self, ResultMsg, TaskMsg};
use super::pool::{PoolKeys, DEATHS};
use crate::pool::backend::{self, Sink, TaskError, TaskErrorKind};
use crate::Pool;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Environment variable that turns a run of the program into a worker of a broker pool:
/// `redis://[user:password@]host:port/db#poolname`.
pub const WORKER_ENV: &str = "MP_REDIS_WORKER";
/// The pool's authkey for a worker started with [`WORKER_ENV`] (hex, or else the raw value).
pub const AUTHKEY_ENV: &str = "MP_REDIS_AUTHKEY";
/// How many tasks a worker started with [`WORKER_ENV`] runs at once (its local processes);
/// 1 by default.
pub const PROCESSES_ENV: &str = "MP_REDIS_WORKER_PROCESSES";

/// How long a worker waits for its pool to appear on the broker.
const POOL_WAIT: Duration = Duration::from_secs(60);
/// How long a worker keeps trying to reach the broker.
const WORKER_WINDOW: Duration = Duration::from_secs(60);

/// Most tasks taken ahead per local process.
const PREFETCH: usize = 64;
/// Work (by the tasks' average run time) a worker holds per local process beyond the task it
/// runs: quick tasks are taken many at a time, so that the broker's round trips overlap the
/// work, and tasks longer than this one per process, so that a long task never holds up others.
const AHEAD_BUDGET_NS: u64 = 5_000_000;

/// Takes up to `ARGV[1]` task ids into the worker's list, in order, and reads their messages,
/// without waiting: `{id, message, id, message, ...}` (an empty message: the task is already
/// done), `{}` when no task waits. Never beyond this worker's share of the work (the tasks
/// waiting and those it holds, over the workers registered, `KEYS[4]`), so that a burst of tasks
/// is spread over the workers even before their run time is known: `false` when this worker
/// holds its share already (it takes more once one of its tasks is done).
const TAKE: &str = "local waiting = redis.call('LLEN', KEYS[1]) \
    if waiting == 0 then return {} end \
    local held = redis.call('LLEN', KEYS[2]) \
    local share = math.ceil((waiting + held) / math.max(1, redis.call('SCARD', KEYS[4]))) - held \
    local n = math.min(tonumber(ARGV[1]), share) \
    if n < 1 then return false end \
    local out = {} \
    for i = 1, n do \
      local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') \
      if not id then break end \
      out[#out + 1] = id \
      out[#out + 1] = redis.call('HGET', KEYS[3], id) or '' \
    end \
    return out";

/// Pushes the signed results `ARGV[1], ARGV[3], ...` for the client and takes their ids
/// `ARGV[2], ARGV[4], ...` off the worker's list, in one step.
const ACK: &str = "for i = 1, #ARGV, 2 do \
      redis.call('RPUSH', KEYS[1], ARGV[i]) \
      redis.call('LREM', KEYS[2], 1, ARGV[i + 1]) \
    end \
    return 0";

/// Exit code of a worker whose binary differs from the pool's.
pub(crate) const EXIT_OTHER_BUILD: i32 = 3;
/// Exit code of a worker whose authkey differs from the pool's.
pub(crate) const EXIT_BAD_AUTHKEY: i32 = 4;
/// Exit code of a worker that lost the broker or never found its pool.
pub(crate) const EXIT_BROKER: i32 = 5;

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.is_empty() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub(crate) fn authkey_from_env() -> Option<Vec<u8>> {
    let v = std::env::var(AUTHKEY_ENV).ok().filter(|v| !v.is_empty())?;
    Some(parse_hex(&v).unwrap_or_else(|| v.into_bytes()))
}

/// What a worker is told.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) url: String,
    pub(crate) pool: String,
    pub(crate) authkey: Vec<u8>,
    pub(crate) processes: u32,
}

/// The target of the workers a pool's builder starts.
pub(crate) fn worker_process(args: WorkerArgs) -> std::result::Result<(), String> {
    match serve(&args) {
        0 => Ok(()),
        code => Err(format!("the broker pool worker stopped (code {code})")),
    }
}

#[ctor::ctor]
unsafe fn serve_if_worker() {
    let Some(value) = std::env::var_os(WORKER_ENV) else { return };
    let authkey = authkey_from_env();
    // SAFETY: constructors run before `main`, while the process has a single thread, so nothing
    // reads the environment concurrently; the worker's own children must not see these.
    unsafe {
        std::env::remove_var(WORKER_ENV);
        std::env::remove_var(AUTHKEY_ENV);
    }
    let value = value.to_string_lossy().into_owned();
    let (url, pool) = split_fragment(&value);
    let Some(pool) = pool.filter(|p| !p.is_empty()) else {
        eprintln!("multiproc: {WORKER_ENV} must be URL#poolname, not {value:?}");
        std::process::exit(2);
    };
    let Some(authkey) = authkey else {
        eprintln!("multiproc: a broker pool worker needs the pool's authkey in {AUTHKEY_ENV}");
        std::process::exit(2);
    };
    let processes = std::env::var(PROCESSES_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(1u32).max(1);
    let args = WorkerArgs { url: url.to_string(), pool: pool.to_string(), authkey, processes };
    let code = serve(&args);
    std::process::exit(code)
}

/// One task's outcome in the local pool, on its way to the result thread.
struct Done {
    id: u64,
    outcome: std::result::Result<Vec<u8>, TaskError>,
    /// About how long the task ran: from handing it to the local pool to its outcome, divided
    /// by the turns it waited for (`None`: never ran).
    took: Option<Duration>,
}

struct BridgeSink {
    id: u64,
    tx: Mutex<mpsc::Sender<Done>>,
    since: Instant,
    /// The tasks each local process had to run before this one's outcome, this one included.
    turns: u32,
}

impl Sink for BridgeSink {
    fn complete(&self, _index: usize, outcome: std::result::Result<&[u8], TaskError>) {
        let took = Some(self.since.elapsed() / self.turns.max(1));
        let done = Done { id: self.id, outcome: outcome.map(<[u8]>::to_vec), took };
        let _ = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(done);
    }
}

struct Settings {
    timeout_ms: u64,
    heartbeat: Duration,
    max_deaths: u32,
}

fn refuse(link: &mut Link, keys: &PoolKeys, why: &str) {
    eprintln!("multiproc: {why}");
    let _ = link.call("reporting a refusal", true, None, |c| {
        ::redis::cmd("RPUSH").arg(keys.k("refused")).arg(why).query::<()>(c)
    });
}

/// Waits for the pool and checks the authkey and build; the pool's settings, or an exit code.
fn join_pool(
    link: &mut Link,
    keys: &PoolKeys,
    args: &WorkerArgs,
    wid: &str,
) -> std::result::Result<Settings, i32> {
    let start = Instant::now();
    loop {
        type Meta = (Option<Vec<u8>>, Option<String>, Option<u64>, Option<u64>, Option<u32>, Option<String>);
        let meta: Meta = match link.call("joining a pool", true, None, |c| {
            ::redis::cmd("MGET")
                .arg(keys.k("hello"))
                .arg(keys.k("build"))
                .arg(keys.k("timeout"))
                .arg(keys.k("heartbeat"))
                .arg(keys.k("maxdeaths"))
                .arg(keys.k("state"))
                .query(c)
        }) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("multiproc: broker pool worker {wid}: {e}");
                return Err(EXIT_BROKER);
            }
        };
        if meta.5.as_deref() == Some("finished") {
            return Err(0);
        }
        if let (Some(hello), Some(build)) = (meta.0, meta.1) {
            match message::open::<String>(&args.authkey, message::HELLO_LABEL, &hello) {
                Ok(name) if name == args.pool => {}
                _ => {
                    refuse(
                        link,
                        keys,
                        &format!(
                            "worker {wid} cannot serve pool {:?}: its authkey is not the pool's ({AUTHKEY_ENV})",
                            args.pool
                        ),
                    );
                    return Err(EXIT_BAD_AUTHKEY);
                }
            }
            if build != message::build_id() {
                refuse(
                    link,
                    keys,
                    &format!(
                        "worker {wid} refuses pool {:?}: its binary (build {}) differs from the pool's \
                         (build {build}); run the same build of the program on every machine",
                        args.pool,
                        message::build_id()
                    ),
                );
                return Err(EXIT_OTHER_BUILD);
            }
            return Ok(Settings {
                timeout_ms: meta.2.unwrap_or(0),
                heartbeat: Duration::from_millis(meta.3.unwrap_or(5000).max(200)),
                max_deaths: meta.4.unwrap_or(3).max(1),
            });
        }
        if start.elapsed() > POOL_WAIT {
            eprintln!(
                "multiproc: broker pool worker {wid}: no pool {:?} appeared within {POOL_WAIT:?}",
                args.pool
            );
            return Err(EXIT_BROKER);
        }
        // The pool's client has not registered yet: look again shortly.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Serves the pool until it finishes; the process's exit code.
pub(crate) fn serve(args: &WorkerArgs) -> i32 {
    crate::process::print_panics(false);
    let wid = format!("{}/{}", hostname(), std::process::id());
    let keys = PoolKeys::new(&args.pool);
    let mut link = match Link::new(&args.url, WORKER_WINDOW) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("multiproc: broker pool worker: {e}");
            return 2;
        }
    };
    let settings = match join_pool(&mut link, &keys, args, &wid) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut builder = Pool::builder().processes(args.processes as usize);
    if settings.timeout_ms > 0 {
        builder = builder.task_timeout(Duration::from_millis(settings.timeout_ms));
    }
    let local = match builder.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("multiproc: broker pool worker {wid} cannot start its processes: {e}");
            return 1;
        }
    };
    // Registered before the first task is taken, so that the client watches this worker's
    // list from the start, whenever the heartbeat thread first runs.
    let registered = link.call("registering a worker", true, None, |c| {
        announce(&mut ::redis::pipe(), &keys, &wid, settings.heartbeat).query::<()>(c)
    });
    if let Err(e) = registered {
        eprintln!("multiproc: broker pool worker {wid} lost the broker: {e}");
        local.terminate();
        return EXIT_BROKER;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let broker_lost = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (stop, lost, keys, wid, url) =
            (stop.clone(), broker_lost.clone(), keys.clone(), wid.clone(), args.url.clone());
        let period = settings.heartbeat;
        std::thread::spawn(move || heartbeat_loop(&url, &keys, &wid, period, &stop, &lost))
    };
    let inflight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let pace = Arc::new(AtomicU64::new(u64::MAX));
    let (tx, rx) = mpsc::channel::<Done>();
    let results = {
        let (keys, wid, url, authkey, pool, inflight, pace) = (
            keys.clone(),
            wid.clone(),
            args.url.clone(),
            args.authkey.clone(),
            args.pool.clone(),
            inflight.clone(),
            pace.clone(),
        );
        let max_deaths = settings.max_deaths;
        std::thread::spawn(move || {
            result_loop(&url, &keys, &wid, &authkey, &pool, max_deaths, rx, &inflight, &pace)
        })
    };
    let take = ::redis::Script::new(TAKE);
    let mut code = 0;
    let processes = args.processes.max(1) as usize;
    while !stop.load(Ordering::Acquire) {
        // As many tasks per process as fit in the budget by their average run time (one until
        // a task has been timed).
        let per = match pace.load(Ordering::Relaxed) {
            u64::MAX => 1,
            ns => (AHEAD_BUDGET_NS / ns.max(1)).clamp(1, PREFETCH as u64) as usize,
        };
        let limit = processes * per;
        {
            let (n, cv) = &*inflight;
            let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
            while *n >= limit && !stop.load(Ordering::Acquire) {
                n = cv.wait_timeout(n, Duration::from_millis(200)).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        let wait = Duration::from_millis(250);
        let room = limit.saturating_sub(*inflight.0.lock().unwrap_or_else(|p| p.into_inner())).max(1);
        // One round trip for as many tasks as there is room for, when tasks are there; else
        // wait for one with BLMOVE.
        let now: crate::Result<Option<Vec<Vec<u8>>>> = link.call("taking tasks", true, None, |c| {
            take.key(keys.k("tasks"))
                .key(keys.wlist(&wid))
                .key(keys.k("data"))
                .key(keys.k("workers"))
                .arg(room)
                .invoke(c)
        });
        let taken: crate::Result<Vec<(String, Option<Vec<u8>>)>> = match now {
            Ok(None) if *inflight.0.lock().unwrap_or_else(|p| p.into_inner()) > 0 => {
                // This worker holds its share: wait until one of its tasks is done.
                let (n, cv) = &*inflight;
                let held = n.lock().unwrap_or_else(|p| p.into_inner());
                let before = *held;
                let _ = cv
                    .wait_timeout_while(held, Duration::from_millis(100), |n| {
                        *n >= before && !stop.load(Ordering::Acquire)
                    })
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            Ok(Some(flat)) if !flat.is_empty() => {
                let mut out = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(id), Some(data)) = (it.next(), it.next()) {
                    out.push((String::from_utf8_lossy(&id).into_owned(), (!data.is_empty()).then_some(data)));
                }
                Ok(out)
            }
            Ok(_) => link
                .call("taking a task", true, Some(wait), |c| {
                    ::redis::cmd("BLMOVE")
                        .arg(keys.k("tasks"))
                        .arg(keys.wlist(&wid))
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(block_secs(wait))
                        .query::<Option<String>>(c)
                })
                .and_then(|id| match id {
                    None => Ok(Vec::new()),
                    Some(id) => link
                        .call("reading a task", true, None, |c| {
                            ::redis::cmd("HGET").arg(keys.k("data")).arg(&id).query::<Option<Vec<u8>>>(c)
                        })
                        .map(|data| vec![(id, data)]),
                }),
            Err(e) => Err(e),
        };
        let taken = match taken {
            Ok(t) => t,
            Err(e) => {
                eprintln!("multiproc: broker pool worker {wid} lost the broker: {e}");
                code = EXIT_BROKER;
                break;
            }
        };
        for (id_text, body) in taken {
            if let Some(c) = run_task(&mut link, &keys, args, &wid, &id_text, body, &local, &inflight, &tx) {
                // The rest of the batch stays in this worker's list, handed back as it leaves.
                code = c;
                break;
            }
        }
        if code != 0 {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    local.terminate();
    drop(tx);
    let _ = results.join();
    let _ = heartbeat.join();
    if broker_lost.load(Ordering::Acquire) && code == 0 {
        code = EXIT_BROKER;
    }
    // Hand back what was taken and not finished (nothing, after a clean end), and leave.
    let _ = link.call("leaving a pool", true, None, |c| {
        let ids: Vec<String> = ::redis::cmd("LRANGE").arg(keys.wlist(&wid)).arg(0).arg(-1).query(c)?;
        let mut p = ::redis::pipe();
        for id in ids.iter().rev() {
            p.cmd("LPUSH").arg(keys.k("tasks")).arg(id).ignore();
        }
        p.cmd("DEL").arg(keys.wlist(&wid)).ignore();
        p.cmd("DEL").arg(keys.hb(&wid)).ignore();
        p.cmd("SREM").arg(keys.k("workers")).arg(&wid).ignore();
        p.query::<()>(c)
    });
    code
}

/// Checks one taken task and hands it to the local pool; an exit code when the worker must
/// stop (another build).
#[allow(clippy::too_many_arguments)]
fn run_task(
    link: &mut Link,
    keys: &PoolKeys,
    args: &WorkerArgs,
    wid: &str,
    id_text: &str,
    body: Option<Vec<u8>>,
    local: &Pool,
    inflight: &(Mutex<usize>, Condvar),
    tx: &mpsc::Sender<Done>,
) -> Option<i32> {
    let Ok(id) = id_text.parse::<u64>() else {
        let _ = link.call("dropping a bad task id", true, None, |c| {
            ::redis::cmd("LREM").arg(keys.wlist(wid)).arg(1).arg(id_text).query::<()>(c)
        });
        return None;
    };
    let Some(msg) = body else {
        // Already done (a copy queued twice): nothing to run.
        let _ = link.call("dropping a finished task", true, None, |c| {
            ::redis::cmd("LREM").arg(keys.wlist(wid)).arg(1).arg(id).query::<()>(c)
        });
        return None;
    };
    let task: TaskMsg = match message::open(&args.authkey, message::TASK_LABEL, &msg) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("its message failed the authentication check, so it was not run ({e})");
            eprintln!("multiproc: broker pool worker {wid} refused task {id}: {why}");
            *inflight.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            let _ =
                tx.send(Done { id, outcome: Err(TaskError::new(TaskErrorKind::Cancelled, why)), took: None });
            return None;
        }
    };
    if task.id != id || task.pool != args.pool {
        *inflight.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let why = "its message belongs to another task or pool, so it was not run".to_string();
        let _ = tx.send(Done { id, outcome: Err(TaskError::new(TaskErrorKind::Cancelled, why)), took: None });
        return None;
    }
    if task.build != message::build_id() {
        let _ = link.call("handing a task back", true, None, |c| {
            ::redis::pipe()
                .cmd("LREM")
                .arg(keys.wlist(wid))
                .arg(1)
                .arg(id)
                .ignore()
                .cmd("LPUSH")
                .arg(keys.k("tasks"))
                .arg(id)
                .ignore()
                .query::<()>(c)
        });
        refuse(
            link,
            keys,
            &format!(
                "worker {wid} refuses task {id} of pool {:?}: its binary (build {}) differs from the client's (build {})",
                args.pool,
                message::build_id(),
                task.build
            ),
        );
        return Some(EXIT_OTHER_BUILD);
    }
    let held = {
        let mut n = inflight.0.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        *n
    };
    let turns = held.div_ceil(args.processes.max(1) as usize) as u32;
    let sink = Arc::new(BridgeSink { id, tx: Mutex::new(tx.clone()), since: Instant::now(), turns });
    if let Err(e) = local.submit_raw(task.entry, &task.args, sink) {
        let _ = tx.send(Done {
            id,
            outcome: Err(TaskError::new(TaskErrorKind::Broken, e.to_string())),
            took: None,
        });
    }
    None
}

/// Adds to `p` what says worker `wid` serves the pool: its heartbeat key, lapsing after
/// `period` unless renewed, and its place in the pool's set of workers.
fn announce<'p>(
    p: &'p mut ::redis::Pipeline,
    keys: &PoolKeys,
    wid: &str,
    period: Duration,
) -> &'p mut ::redis::Pipeline {
    p.set_px(keys.hb(wid), 1, period.as_millis() as u64).cmd("SADD").arg(keys.k("workers")).arg(wid).ignore()
}

fn heartbeat_loop(
    url: &str,
    keys: &PoolKeys,
    wid: &str,
    period: Duration,
    stop: &AtomicBool,
    lost: &AtomicBool,
) {
    let Ok(mut link) = Link::new(url, WORKER_WINDOW) else { return };
    let mut client_seen = Instant::now();
    let absent_limit = period * 8;
    while !stop.load(Ordering::Acquire) {
        let r: crate::Result<(Option<String>, bool)> = link.call("sending a heartbeat", true, None, |c| {
            announce(&mut ::redis::pipe(), keys, wid, period)
                .cmd("GET")
                .arg(keys.k("state"))
                .cmd("EXISTS")
                .arg(keys.k("alive"))
                .query(c)
        });
        match r {
            Ok((state, alive)) => {
                if state.as_deref() == Some("finished") {
                    stop.store(true, Ordering::Release);
                    return;
                }
                if alive {
                    client_seen = Instant::now();
                } else if client_seen.elapsed() > absent_limit {
                    // The client is gone (it did not refresh its key): nobody wants results.
                    stop.store(true, Ordering::Release);
                    return;
                }
            }
            Err(e) => {
                eprintln!("multiproc: broker pool worker {wid} lost the broker: {e}");
                lost.store(true, Ordering::Release);
                stop.store(true, Ordering::Release);
                return;
            }
        }
        let mut slept = Duration::ZERO;
        let step = (period / 4).min(Duration::from_millis(250));
        while slept < period / 4 && !stop.load(Ordering::Acquire) {
            // The heartbeat's period; wakes often to leave promptly when told to stop.
            std::thread::sleep(step);
            slept += step;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn result_loop(
    url: &str,
    keys: &PoolKeys,
    wid: &str,
    authkey: &[u8],
    pool: &str,
    max_deaths: u32,
    rx: mpsc::Receiver<Done>,
    inflight: &(Mutex<usize>, Condvar),
    pace: &AtomicU64,
) {
    let Ok(mut link) = Link::new(url, WORKER_WINDOW) else { return };
    let deaths = ::redis::Script::new(DEATHS);
    let ack = ::redis::Script::new(ACK);
    let pid = std::process::id() as i32;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut acks: Vec<(u64, Vec<u8>)> = Vec::new();
        for done in batch {
            if let Some(took) = done.took {
                let ns = took.as_nanos().min(u64::MAX as u128 / 8) as u64;
                let old = pace.load(Ordering::Relaxed);
                pace.store(if old == u64::MAX { ns } else { (old * 3 + ns) / 4 }, Ordering::Relaxed);
            }
            let (tag, body, child) = match done.outcome {
                Ok(v) => (backend::RETURNED, v, pid),
                Err(e) => {
                    let child = e.pid().unwrap_or(pid);
                    let tag = match e.kind() {
                        TaskErrorKind::Panicked => backend::PANICKED,
                        TaskErrorKind::TimedOut => message::TIMED_OUT,
                        TaskErrorKind::WorkerDied => message::DIED,
                        // The bridge's own refusals (an unauthenticated or misplaced message).
                        TaskErrorKind::Cancelled => message::REFUSED,
                        _ => backend::FAILED,
                    };
                    (tag, e.message().as_bytes().to_vec(), child)
                }
            };
            if tag == message::DIED {
                let who = format!("on worker {wid}, {}", String::from_utf8_lossy(&body));
                let r = link.call("counting a worker death", true, None, |c| {
                    deaths
                        .key(keys.k("tasks"))
                        .key(keys.k("deaths"))
                        .key(keys.k("deathlog"))
                        .key(keys.k("poisoned"))
                        .key(keys.wlist(wid))
                        .key(keys.k("data"))
                        .arg(&who)
                        .arg(max_deaths)
                        .arg(done.id)
                        .invoke::<i64>(c)
                });
                if let Err(e) = r {
                    eprintln!("multiproc: broker pool worker {wid} could not report task {}: {e}", done.id);
                }
                continue;
            }
            let msg = ResultMsg {
                pool: pool.to_string(),
                id: done.id,
                worker: wid.to_string(),
                tag,
                pid: child,
                body,
            };
            match message::seal(authkey, message::RESULT_LABEL, &msg) {
                Ok(m) => acks.push((done.id, m)),
                Err(e) => {
                    eprintln!("multiproc: broker pool worker {wid} could not report task {}: {e}", done.id)
                }
            }
        }
        if !acks.is_empty() {
            // Safe to repeat: a second copy of a result is ignored by the client.
            let r = link.call("sending results", true, None, |c| {
                let mut inv = ack.key(keys.k("results"));
                inv.key(keys.wlist(wid));
                for (id, m) in &acks {
                    inv.arg(m.as_slice()).arg(*id);
                }
                inv.invoke::<i64>(c)
            });
            if let Err(e) = r {
                eprintln!("multiproc: broker pool worker {wid} could not report {} results: {e}", acks.len());
            }
        }
        let (count, cv) = inflight;
        let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(n);
        cv.notify_all();
    }
}
