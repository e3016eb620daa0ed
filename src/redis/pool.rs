//! The client side of a broker pool: a [`Backend`] that carries the facade's tasks to the
//! broker and their results back, and the [`PoolBuilder`] that makes such a [`Pool`].
//!
//! Keys of a pool named `P` (prefix `mp:pool:{P}:`):
//! - `build`, `hello`, `timeout`: the client's build id, a message signed with the authkey
//!   (a worker checks both before serving), the task timeout in ms.
//! - `alive` (expires unless the client refreshes it), `state` (`finished` at the end).
//! - `tasks`: a list of task ids waiting for a worker; `data`: id -> signed task message.
//! - `results`: signed results for the client.
//! - `workers`: the set of registered workers; `hb:W`: worker `W`'s heartbeat (expires when the
//!   worker stops refreshing it); `w:W`: the ids worker `W` has taken (moved there atomically
//!   by `BLMOVE`, the reliable-list pattern).
//! - `deaths`, `deathlog`: per task, how many workers died running it and which;
//!   `poisoned`: ids that reached the pool's death limit; `refused`: why workers refused to
//!   serve (another build, another authkey).
//!
//! The backend runs two threads: the pool thread (the facade's `join` waits for it) reads
//! results, settles the tasks of workers whose heartbeat stopped (their taken ids go back to
//! the front of `tasks`, counting a death), and ends the pool; a sender thread moves new tasks
//! from the intake to the broker. Results are matched to pending tasks by id, so a task that
//! ran twice (its worker was presumed dead, or the broker restarted) completes once.
//!
//! When the server goes away, calls are retried for the reconnect window; a connection that
//! comes back (the server restarted, possibly empty) has every pending task sent again. Past
//! the window, every pending task fails with [`TaskErrorKind::Broken`] naming the broker.

use super::link::{block_secs, Link, PipelineSteps, DEFAULT_RECONNECT_WINDOW};
use super::message::{self, ResultMsg, TaskMsg};
use super::worker::{worker_process, WorkerArgs};
use crate::error::{Error, Result};
use crate::pool::backend::{self, Backend, Phase, Shared, Task, TaskError, TaskErrorKind};
use crate::process::{Process, StartMethod};
use crate::sync::lock;
use crate::{Executor, Pool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The keys of one pool.
#[derive(Clone)]
pub(crate) struct PoolKeys {
    pub(crate) prefix: String,
}

impl PoolKeys {
    pub(crate) fn new(name: &str) -> PoolKeys {
        PoolKeys { prefix: format!("mp:pool:{{{name}}}:") }
    }
    pub(crate) fn k(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }
    pub(crate) fn wlist(&self, worker: &str) -> String {
        format!("{}w:{worker}", self.prefix)
    }
    pub(crate) fn hb(&self, worker: &str) -> String {
        format!("{}hb:{worker}", self.prefix)
    }
}

/// The Lua body shared by [`DEATHS`] and [`REAP`]: one death counted against task `id` (still
/// pending, `KEYS[6]`), logged as `ARGV[1]`; below the limit `max` it goes back to the front of
/// `tasks`, at it to `poisoned`.
macro_rules! count_death {
    () => {
        r"
  if redis.call('HEXISTS', KEYS[6], id) == 1 then
    local n = redis.call('HINCRBY', KEYS[2], id, 1)
    local log = redis.call('HGET', KEYS[3], id)
    if log then log = log .. '; ' .. ARGV[1] else log = ARGV[1] end
    redis.call('HSET', KEYS[3], id, log)
    if n >= max then redis.call('RPUSH', KEYS[4], id) else redis.call('LPUSH', KEYS[1], id) end
  end
"
    };
}

/// Counts a worker death against each task in `ARGV[3..]`, worker `ARGV[1]` described as
/// `ARGV[2]`: below the limit `ARGV[3]` the task goes back to the front of `tasks`, at it the
/// id goes to `poisoned`. With `KEYS[5]` (a worker's list) the ids are taken out of it first.
pub(crate) const DEATHS: &str = concat!(
    r"
local max = tonumber(ARGV[2])
for i = 3, #ARGV do
  local id = ARGV[i]
  if KEYS[5] then redis.call('LREM', KEYS[5], 1, id) end
",
    count_death!(),
    r"end
return 0
"
);

/// Settles a worker whose heartbeat expired: its taken ids count a death each.
const REAP: &str = concat!(
    r"
if redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
redis.call('SREM', KEYS[8], ARGV[3])
local ids = redis.call('LRANGE', KEYS[5], 0, -1)
redis.call('DEL', KEYS[5])
local max = tonumber(ARGV[2])
for _, id in ipairs(ids) do
",
    count_death!(),
    r"end
return #ids
"
);

/// Most results one read takes.
const RESULTS_AT_ONCE: usize = 1024;

/// Options for a [`Pool`] whose workers take tasks from a Redis broker.
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = multiproc::redis::PoolBuilder::new("redis://127.0.0.1:6379/0")
///     .name("squares")
///     .authkey(b"a secret both sides hold")
///     .processes(2)
///     .build()?;
/// assert_eq!(pool.map(square, 1..4).get()?, vec![1, 4, 9]);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// On another machine, the same program joins the pool as a worker with
/// `MP_REDIS_WORKER=redis://host:port/0#squares MP_REDIS_AUTHKEY=<hex> ./program`.
#[must_use]
pub struct PoolBuilder {
    url: String,
    name: Option<String>,
    processes: usize,
    worker_processes: usize,
    authkey: Option<Vec<u8>>,
    task_timeout: Option<Duration>,
    max_deaths: u32,
    heartbeat_timeout: Duration,
    reconnect_window: Duration,
    method: Option<StartMethod>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("processes", &self.processes)
            .field("task_timeout", &self.task_timeout)
            .field("max_deaths", &self.max_deaths)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// A pool on the server at `url` (`redis://[user:password@]host:port/db`).
    pub fn new(url: &str) -> PoolBuilder {
        PoolBuilder {
            url: url.to_string(),
            name: None,
            processes: 0,
            worker_processes: 1,
            authkey: None,
            task_timeout: None,
            max_deaths: 3,
            heartbeat_timeout: Duration::from_secs(5),
            reconnect_window: DEFAULT_RECONNECT_WINDOW,
            method: None,
        }
    }

    /// The pool's name, which remote workers give to join it; unique by default.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Workers started on this machine by the pool (0 by default: only remote ones).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// The key that signs every task and result; workers must be given the same one
    /// ([`AUTHKEY_ENV`](super::AUTHKEY_ENV)). By default the value of that variable, or else
    /// 32 random bytes (then only this machine's workers can serve).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// The longest one task may run: past it, the process running it is killed and the task
    /// fails with [`TaskErrorKind::TimedOut`], as in a local pool.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// How many workers (or their task processes) may die running one task before it fails
    /// with [`TaskErrorKind::WorkerDied`] naming them (3 by default); below it the task is
    /// delivered again.
    pub fn max_deaths(mut self, n: u32) -> Self {
        self.max_deaths = n.max(1);
        self
    }

    /// How long a worker may go without a heartbeat before it counts as dead and its tasks
    /// go to others (5 s by default).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout.max(Duration::from_millis(200));
        self
    }

    /// How long the server may be unreachable before pending calls fail (10 s by default).
    pub fn reconnect_window(mut self, window: Duration) -> Self {
        self.reconnect_window = window;
        self
    }

    /// How this machine's workers are started.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Registers the pool on the broker, starts this machine's workers and returns the pool.
    pub fn build(self) -> Result<Pool> {
        let name = self.name.clone().unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}-{}-{nanos}", super::worker::hostname(), std::process::id())
        });
        if name.is_empty() || name.contains(['{', '}', '#']) {
            return Err(Error::invalid(format!(
                "a pool name must be non-empty, without braces or '#', not {name:?}"
            )));
        }
        let authkey = match self.authkey.clone() {
            Some(k) => k,
            None => match super::worker::authkey_from_env() {
                Some(k) => k,
                None => {
                    let mut k = vec![0u8; 32];
                    getrandom::fill(&mut k).map_err(|e| Error::invalid(format!("no random bytes: {e}")))?;
                    k
                }
            },
        };
        let keys = PoolKeys::new(&name);
        let mut link = Link::new(&self.url, self.reconnect_window)?;
        let hello = message::seal(&authkey, message::HELLO_LABEL, &name)?;
        let timeout_ms = self.task_timeout.map_or(0, |t| t.as_millis().max(1) as u64);
        let exists: bool = link.call("registering a pool", true, None, |c| {
            ::redis::cmd("EXISTS").arg(keys.k("alive")).query(c)
        })?;
        if exists {
            return Err(Error::invalid(format!("a pool named {name:?} is already running on this broker")));
        }
        register(&mut link, &keys, &hello, timeout_ms, self.heartbeat_timeout, self.max_deaths)?;
        let args = WorkerArgs {
            url: self.url.clone(),
            pool: name.clone(),
            authkey: authkey.clone(),
            processes: self.worker_processes as u32,
        };
        let method = self.method.unwrap_or_else(crate::get_start_method);
        let mut locals = Vec::new();
        for i in 0..self.processes {
            let p = Process::builder(worker_process, (args.clone(),))
                .name(format!("RedisPoolWorker-{}", i + 1))
                // Not daemonic: it starts its own task processes. It leaves when the pool
                // finishes, or when this process stops refreshing the pool's liveness.
                .daemon(false)
                .start_method(method)
                .build();
            if let Err(e) = p.start() {
                for p in &locals {
                    stop(p);
                }
                let _ = unregister(&mut link, &keys);
                return Err(e);
            }
            locals.push(p);
        }
        let shared = Shared::new()?;
        let core = Arc::new(Core {
            keys,
            name,
            authkey,
            pending: Mutex::new(HashMap::new()),
            broken: Mutex::new(None),
            url: self.url.clone(),
            stop: AtomicBool::new(false),
            drained: AtomicBool::new(false),
        });
        let backend = RedisBackend {
            core,
            link,
            window: self.reconnect_window,
            heartbeat: self.heartbeat_timeout,
            max_deaths: self.max_deaths,
            locals,
            hello,
            timeout_ms,
            settled: Vec::new(),
        };
        Pool::with_backend(shared, Box::new(backend), self.processes.max(1))
    }

    /// [`build`](Self::build), as an [`Executor`].
    pub fn build_executor(self) -> Result<Executor> {
        Ok(Executor::from_backend_pool(self.build()?))
    }
}

fn register(
    link: &mut Link,
    keys: &PoolKeys,
    hello: &[u8],
    timeout_ms: u64,
    heartbeat: Duration,
    max_deaths: u32,
) -> Result<()> {
    link.call("registering a pool", true, None, |c| {
        ::redis::pipe()
            .cmd("SET")
            .arg(keys.k("build"))
            .arg(message::build_id())
            .ignore()
            .cmd("SET")
            .arg(keys.k("hello"))
            .arg(hello)
            .ignore()
            .cmd("SET")
            .arg(keys.k("timeout"))
            .arg(timeout_ms)
            .ignore()
            .cmd("SET")
            .arg(keys.k("heartbeat"))
            .arg(heartbeat.as_millis() as u64)
            .ignore()
            .cmd("SET")
            .arg(keys.k("maxdeaths"))
            .arg(max_deaths)
            .ignore()
            .set_px(keys.k("alive"), 1, alive_ms(heartbeat))
            .query::<()>(c)
    })
}

fn alive_ms(heartbeat: Duration) -> u64 {
    (heartbeat.as_millis() as u64).max(1000) * 4
}

fn unregister(link: &mut Link, keys: &PoolKeys) -> Result<()> {
    let workers: Vec<String> = link
        .call("removing a pool", true, None, |c| ::redis::cmd("SMEMBERS").arg(keys.k("workers")).query(c))?;
    link.call("removing a pool", true, None, |c| {
        let mut p = ::redis::pipe();
        // Workers still attached see this and leave; it expires on its own.
        p.set_px(keys.k("state"), "finished", 60_000);
        for k in [
            "build",
            "hello",
            "timeout",
            "heartbeat",
            "maxdeaths",
            "alive",
            "tasks",
            "data",
            "results",
            "workers",
            "deaths",
            "deathlog",
            "poisoned",
            "refused",
        ] {
            p.cmd("DEL").arg(keys.k(k)).ignore();
        }
        for w in &workers {
            p.cmd("DEL").arg(keys.wlist(w)).arg(keys.hb(w)).ignore();
        }
        p.query::<()>(c)
    })
}

/// Stops a local worker: SIGTERM, a grace, SIGKILL; reaped.
fn stop(p: &Process) {
    let _ = p.terminate();
    if !matches!(p.join_timeout(Duration::from_millis(500)), Ok(Some(_))) {
        let _ = p.kill();
        let _ = p.join();
    }
}

/// What the pool thread and the sender thread share.
struct Core {
    keys: PoolKeys,
    name: String,
    authkey: Vec<u8>,
    url: String,
    /// Tasks on the broker, by id, with their signed message (sent again after a reconnect).
    pending: Mutex<HashMap<u64, (Task, Vec<u8>)>>,
    /// Set once the broker could not be reached within the window: every task fails with it.
    broken: Mutex<Option<TaskError>>,
    stop: AtomicBool,
    /// Set by the sender once the pool is closed and every task it will ever get was sent.
    drained: AtomicBool,
}

impl Core {
    fn fail_all(&self, e: &TaskError) {
        let all: Vec<_> = lock(&self.pending).drain().collect();
        for (_, (t, _)) in all {
            let id = t.id;
            t.sink.complete(t.index, Err(e.clone().at(id, None)));
        }
    }

    fn broken_by(&self, e: &Error) -> TaskError {
        let te = TaskError::new(
            TaskErrorKind::Broken,
            format!("the Redis broker at {} cannot be reached: {e}", redact(&self.url)),
        );
        lock(&self.broken).get_or_insert(te).clone()
    }

    /// Sends `tasks` to the broker (sign, store, queue); failures fail the tasks.
    fn send(&self, link: &mut Link, tasks: Vec<Task>) {
        let mut batch = Vec::new();
        for task in tasks {
            if !task.sink.start(task.index) {
                continue;
            }
            if !task.fds.is_empty() {
                let id = task.id;
                let e = TaskError::new(
                    TaskErrorKind::Codec,
                    "a task of a broker pool cannot carry handles (connections, queues, shared memory)",
                );
                task.sink.complete(task.index, Err(e.at(id, None)));
                continue;
            }
            if let Some(e) = lock(&self.broken).clone() {
                let id = task.id;
                task.sink.complete(task.index, Err(e.at(id, None)));
                continue;
            }
            let msg = backend::task_call(&task).and_then(|(entry, args)| {
                message::seal(
                    &self.authkey,
                    message::TASK_LABEL,
                    &TaskMsg {
                        pool: self.name.clone(),
                        build: message::build_id().to_string(),
                        id: task.id,
                        entry,
                        args: args.to_vec(),
                    },
                )
            });
            match msg {
                Ok(m) => batch.push((task, m)),
                Err(e) => {
                    let id = task.id;
                    task.sink.complete(
                        task.index,
                        Err(TaskError::new(TaskErrorKind::Codec, e.to_string()).at(id, None)),
                    );
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let wire: Vec<(u64, Vec<u8>)> = batch.iter().map(|(t, m)| (t.id, m.clone())).collect();
        {
            let mut pending = lock(&self.pending);
            for (t, m) in batch {
                pending.insert(t.id, (t, m));
            }
        }
        if let Err(e) = push(link, &self.keys, &wire) {
            let te = self.broken_by(&e);
            self.fail_all(&te);
        }
    }
}

/// Stores and queues tasks (safe to repeat: a task queued twice runs at most once more, and
/// its second result is ignored).
fn push(link: &mut Link, keys: &PoolKeys, tasks: &[(u64, Vec<u8>)]) -> Result<()> {
    for chunk in tasks.chunks(512) {
        link.call("sending tasks", true, None, |c| {
            let mut p = ::redis::pipe();
            for (id, m) in chunk {
                p.cmd("HSET").arg(keys.k("data")).arg(id).arg(m.as_slice()).ignore();
            }
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            p.cmd("RPUSH").arg(keys.k("tasks")).arg(ids).ignore();
            p.query::<()>(c)
        })?;
    }
    Ok(())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

struct RedisBackend {
    core: Arc<Core>,
    link: Link,
    window: Duration,
    heartbeat: Duration,
    max_deaths: u32,
    locals: Vec<Process>,
    hello: Vec<u8>,
    timeout_ms: u64,
    /// Ids of tasks completed since the last [`settle`](Self::settle).
    settled: Vec<u64>,
}

impl Backend for RedisBackend {
    fn serve(mut self: Box<Self>, shared: Arc<Shared>) {
        let core = self.core.clone();
        let sender_link = Link::new(core.url.as_str(), self.window);
        let s2 = shared.clone();
        let c2 = core.clone();
        let sender = std::thread::Builder::new().name("multiproc-redis-send".into()).spawn(move || {
            let Ok(mut link) = sender_link else { return };
            let mut seen = (Phase::Running, 0usize);
            while !c2.stop.load(Ordering::Acquire) {
                let (tasks, phase, jobs) = s2.take_or_wait(seen, Duration::from_millis(200));
                seen = (phase, jobs);
                if !tasks.is_empty() {
                    c2.send(&mut link, tasks);
                } else if phase == Phase::Closed && jobs == 0 {
                    // Closed with nothing left to submit: every task is now in `pending`.
                    c2.drained.store(true, Ordering::Release);
                }
                if phase == Phase::Terminating {
                    return;
                }
            }
        });
        let why = match sender {
            Ok(sender) => {
                let why = self.run(&shared);
                core.stop.store(true, Ordering::Release);
                let _ = sender.join();
                why
            }
            Err(_) => TaskError::new(TaskErrorKind::Broken, "cannot start the pool's sender thread"),
        };
        // Finish: stop local workers, fail what is left, remove the pool's keys.
        for p in &self.locals {
            stop(p);
        }
        let (leftover, _, _) = {
            shared.set_phase(Phase::Finished);
            shared.take_or_wait((Phase::Finished, usize::MAX), Duration::ZERO)
        };
        let why = lock(&core.broken).clone().unwrap_or(why);
        for t in leftover {
            let id = t.id;
            t.sink.complete(t.index, Err(why.clone().at(id, None)));
        }
        core.fail_all(&why);
        let _ = unregister(&mut self.link, &core.keys);
    }
}

impl RedisBackend {
    /// Reads results and watches workers until the pool is done; why unfinished tasks fail.
    fn run(&mut self, shared: &Shared) -> TaskError {
        let core = self.core.clone();
        let mut last_reap = Instant::now();
        let mut generation = self.link.generation();
        loop {
            let phase = shared.phase();
            if phase == Phase::Terminating {
                return TaskError::new(
                    TaskErrorKind::Terminated,
                    "the pool was terminated before the task finished",
                );
            }
            if phase == Phase::Closed {
                // Only the sender knows that no task is between the intake and `pending`.
                if core.drained.load(Ordering::Acquire) && lock(&core.pending).is_empty() {
                    // Let the workers finish, then end.
                    return TaskError::new(TaskErrorKind::Terminated, "the pool was closed");
                }
            }
            let wait = Duration::from_millis(100);
            // One round trip: the finished tasks' keys removed, and the results that have
            // arrived taken (waiting for one if none has).
            let settled = std::mem::take(&mut self.settled);
            let k = &core.keys;
            let got: Result<Option<(String, Vec<Vec<u8>>)>> =
                self.link.call("reading results", true, Some(wait), |c| {
                    let mut p = ::redis::pipe();
                    if !settled.is_empty() {
                        for what in ["data", "deaths", "deathlog"] {
                            p.cmd("HDEL").arg(k.k(what)).arg(&settled).ignore();
                        }
                    }
                    p.cmd("BLMPOP")
                        .arg(block_secs(wait))
                        .arg(1)
                        .arg(k.k("results"))
                        .arg("LEFT")
                        .arg("COUNT")
                        .arg(RESULTS_AT_ONCE);
                    let (r,): (Option<(String, Vec<Vec<u8>>)>,) = p.query(c)?;
                    Ok(r)
                });
            match got {
                Ok(Some((_, msgs))) => {
                    for m in &msgs {
                        self.take_result(m);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let te = core.broken_by(&e);
                    core.fail_all(&te);
                    continue;
                }
            }
            if self.link.generation() != generation {
                // The connection was reopened: the server may have restarted empty.
                generation = self.link.generation();
                let _ = register(
                    &mut self.link,
                    &core.keys,
                    &self.hello,
                    self.timeout_ms,
                    self.heartbeat,
                    self.max_deaths,
                );
                let again: Vec<(u64, Vec<u8>)> =
                    lock(&core.pending).iter().map(|(id, (_, m))| (*id, m.clone())).collect();
                if let Err(e) = push(&mut self.link, &core.keys, &again) {
                    let te = core.broken_by(&e);
                    core.fail_all(&te);
                }
            }
            if last_reap.elapsed() >= self.heartbeat / 4 {
                last_reap = Instant::now();
                if let Err(e) = self.housekeeping() {
                    let te = core.broken_by(&e);
                    core.fail_all(&te);
                }
            }
        }
    }

    /// Removes the finished tasks' messages and death counts from the broker, in one round
    /// trip.
    fn settle(&mut self) {
        if self.settled.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.settled);
        let k = &self.core.keys;
        let _ = self.link.call("settling tasks", true, None, |c| {
            ::redis::pipe()
                .cmd("HDEL")
                .arg(k.k("data"))
                .arg(&ids)
                .ignore()
                .cmd("HDEL")
                .arg(k.k("deaths"))
                .arg(&ids)
                .ignore()
                .cmd("HDEL")
                .arg(k.k("deathlog"))
                .arg(&ids)
                .ignore()
                .query::<()>(c)
        });
    }

    fn take_result(&mut self, msg: &[u8]) {
        let core = &self.core;
        let r: ResultMsg = match message::open(&core.authkey, message::RESULT_LABEL, msg) {
            Ok(r) => r,
            Err(e) => {
                log::error!("multiproc: ignoring a result on the broker: {e}");
                return;
            }
        };
        if r.pool != core.name {
            log::error!("multiproc: ignoring a result for pool {:?} on this pool's list", r.pool);
            return;
        }
        let Some((task, _)) = lock(&core.pending).remove(&r.id) else { return };
        self.settled.push(r.id);
        let text = || String::from_utf8_lossy(&r.body).into_owned();
        let pid = Some(r.pid);
        let outcome = match r.tag {
            backend::RETURNED => Ok(r.body.as_slice()),
            backend::PANICKED => Err(TaskError::new(TaskErrorKind::Panicked, text()).at(r.id, pid)),
            message::DIED => Err(TaskError::new(TaskErrorKind::WorkerDied, text()).at(r.id, pid)),
            message::TIMED_OUT => Err(TaskError::new(TaskErrorKind::TimedOut, text()).at(r.id, pid)),
            message::REFUSED => Err(TaskError::new(
                TaskErrorKind::Codec,
                format!("worker {} refused task {}: {}", r.worker, r.id, text()),
            )
            .at(r.id, pid)),
            _ => Err(TaskError::new(TaskErrorKind::Codec, text()).at(r.id, pid)),
        };
        let id = task.id;
        match outcome {
            Ok(body) => task.sink.complete(task.index, Ok(body)),
            Err(e) => task.sink.complete(task.index, Err(e.at(id, pid))),
        }
    }

    /// Refreshes the pool's liveness, settles dead workers, fails poisoned tasks and reports
    /// refusals.
    fn housekeeping(&mut self) -> Result<()> {
        let core = self.core.clone();
        let k = &core.keys;
        let alive = alive_ms(self.heartbeat);
        let (workers, poisoned, refused): (Vec<String>, Vec<u64>, Vec<String>) =
            self.link.call("watching workers", true, None, |c| {
                ::redis::pipe()
                    .set_px(k.k("alive"), 1, alive)
                    .cmd("SMEMBERS")
                    .arg(k.k("workers"))
                    .take_list(k.k("poisoned"))
                    .take_list(k.k("refused"))
                    .query(c)
            })?;
        for why in refused {
            log::error!("multiproc: a worker refused to serve pool {:?}: {why}", core.name);
        }
        let script = ::redis::Script::new(REAP);
        for w in workers {
            let who = format!("worker {w} stopped its heartbeat (killed, or its machine is gone)");
            self.link.call("settling a dead worker", true, None, |c| {
                script
                    .key(k.k("tasks"))
                    .key(k.k("deaths"))
                    .key(k.k("deathlog"))
                    .key(k.k("poisoned"))
                    .key(k.wlist(&w))
                    .key(k.k("data"))
                    .key(k.hb(&w))
                    .key(k.k("workers"))
                    .arg(&who)
                    .arg(self.max_deaths)
                    .arg(&w)
                    .invoke::<i64>(c)
            })?;
        }
        for id in poisoned {
            let log: Option<String> = self.link.call("reading a task's deaths", true, None, |c| {
                ::redis::cmd("HGET").arg(k.k("deathlog")).arg(id).query(c)
            })?;
            let Some((task, _)) = lock(&core.pending).remove(&id) else { continue };
            self.settled.push(id);
            let msg = format!(
                "task {id} was given up after {} worker deaths while running it: {}",
                self.max_deaths,
                log.unwrap_or_default()
            );
            task.sink.complete(task.index, Err(TaskError::new(TaskErrorKind::WorkerDied, msg).at(id, None)));
        }
        self.settle();
        Ok(())
    }
}
