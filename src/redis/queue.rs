//! [`Queue`] and [`JoinableQueue`] on a Redis broker.
//!
//! Keys of a queue named `N` (the braces keep them in one cluster slot):
//! - `Queue`: `mp:q:{N}:items` (a list of encoded items), `mp:q:{N}:meta` (its `maxsize`),
//!   `mp:q:{N}:space` (wake-up tokens for blocked putters).
//! - `JoinableQueue` (the reliable-queue pattern, with leases): `mp:jq:{N}:items` (a list of
//!   item ids, FIFO), `:data` (id -> encoded item), `:inflight` (a sorted set: id -> lease
//!   deadline in ms), `:unfinished` (items put and not yet done), `:seq`, and token lists
//!   `:ready`, `:space`, `:joined`.
//!
//! Every step that must be atomic is one Lua script: a put checks `maxsize` and appends in one
//! step; a `JoinableQueue` get first puts back items whose lease expired (at the front: they
//! were first), then takes one and leases it for the visibility timeout; `task_done` ends the
//! lease and counts the item done once even if it was delivered twice. Blocked calls wait on a
//! token list with `BLPOP` in slices of at most a quarter second, so that expired leases and a
//! vanished server are noticed within bounded time.
//!
//! An unbounded `Queue` batches both ways. A put goes to the handle's backlog and returns; the
//! handle's I/O thread writes the backlog out in order, many items per `RPUSH` (one round trip),
//! as the local queue's feeder thread does. A get that finds the handle's buffer empty takes
//! up to as many items as its caller consumes in [`AHEAD_WINDOW`] (judged by the time the caller
//! spends between gets, at most [`AHEAD_MAX`]) with one `BLMPOP`/`LPOP .. COUNT`, and later gets
//! are served from the buffer. Items left in the buffer for [`AHEAD_STALE`] (the caller slowed
//! down or stopped getting) are given back to the front of the list by the I/O thread, and so
//! are all of them when the last handle is dropped. A bounded `Queue` and a `JoinableQueue` do
//! neither: every put and get is its own round trip, so that `maxsize`, `qsize` and `join` are
//! exact across processes.

use super::link::{block_secs, Link, DEFAULT_RECONNECT_WINDOW};
use crate::error::{Error, Result};
use crate::queue::TaskDoneError;
use crate::sync::lock;
use crate::wire;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest single wait on the server; longer waits are several.
const SLICE: Duration = Duration::from_millis(250);

/// How long the next wait on the server may be, for a call waiting up to `deadline` (`None`:
/// no wait, `Some(None)`: forever): `None` for no wait, zero once the deadline has passed.
fn next_wait(deadline: Option<Option<Instant>>) -> Option<Duration> {
    match deadline {
        None => None,
        Some(None) => Some(SLICE),
        Some(Some(d)) => Some(d.saturating_duration_since(Instant::now()).min(SLICE)),
    }
}
/// Default visibility timeout of a [`JoinableQueue`] item.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(60);
/// An unbounded queue's get takes ahead about this much of its caller's work.
const AHEAD_WINDOW: Duration = Duration::from_millis(2);
/// Most items one get of an unbounded queue takes from the server.
const AHEAD_MAX: usize = 128;
/// Items taken ahead go back to the front of the queue when the handle has not asked for one
/// for this long.
const AHEAD_STALE: Duration = Duration::from_millis(100);
/// Most items, and bytes, one write of the backlog carries.
const FEED_ITEMS: usize = 1024;
const FEED_BYTES: usize = 1 << 20;

crate::queue::queue_errors! {
    queue: "broker queue ([`redis::Queue`](Queue), [`redis::JoinableQueue`](JoinableQueue))",
    put_also: "",
    get_also: "",
    put_derive: [],
    get_derive: [Debug],
    fault: Broker(Error),
    put_fault_doc: "The broker could not be reached within the reconnect window, or refused the command.",
    get_fault_doc: "The broker could not be reached within the reconnect window, or refused the command.",
    encode_doc: "The value could not be encoded (or holds handles, which cannot leave the machine).",
    decode_doc: "An item could not be decoded as `T`; it was taken off the queue (a `JoinableQueue` \
        item is marked done), so one bad item cannot block the queue.",
    to_error: |e| e,
}

const PUT: &str = r"
local max = tonumber(ARGV[1])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -1 end
return redis.call('RPUSH', KEYS[1], ARGV[2])
";

const JQ_PUT: &str = r"
local max = tonumber(ARGV[1])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -1 end
local id = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('RPUSH', KEYS[1], id)
redis.call('INCR', KEYS[3])
redis.call('RPUSH', KEYS[5], 1)
redis.call('LTRIM', KEYS[5], -64, -1)
return id
";

const JQ_GET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for i = #expired, 1, -1 do
  redis.call('ZREM', KEYS[3], expired[i])
  redis.call('LPUSH', KEYS[1], expired[i])
end
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return false end
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), id)
    return {id, data}
  end
end
";

const JQ_DONE: &str = r"
local r = redis.call('ZREM', KEYS[1], ARGV[1])
if r == 0 then r = redis.call('LREM', KEYS[2], 0, ARGV[1]) end
if r == 0 then return -1 end
redis.call('HDEL', KEYS[3], ARGV[1])
local left = redis.call('DECR', KEYS[4])
if left <= 0 then
  redis.call('RPUSH', KEYS[5], 1)
  redis.call('LTRIM', KEYS[5], -64, -1)
end
return left
";

fn script(src: &'static str, cell: &'static OnceLock<::redis::Script>) -> &'static ::redis::Script {
    cell.get_or_init(|| ::redis::Script::new(src))
}

static PUT_S: OnceLock<::redis::Script> = OnceLock::new();
static JQ_PUT_S: OnceLock<::redis::Script> = OnceLock::new();
static JQ_GET_S: OnceLock<::redis::Script> = OnceLock::new();
static JQ_DONE_S: OnceLock<::redis::Script> = OnceLock::new();

struct Keys {
    items: String,
    meta: String,
    space: String,
    data: String,
    inflight: String,
    unfinished: String,
    seq: String,
    ready: String,
    joined: String,
}

impl Keys {
    fn new(joinable: bool, name: &str) -> Keys {
        let p = if joinable { format!("mp:jq:{{{name}}}") } else { format!("mp:q:{{{name}}}") };
        Keys {
            items: format!("{p}:items"),
            meta: format!("{p}:meta"),
            space: format!("{p}:space"),
            data: format!("{p}:data"),
            inflight: format!("{p}:inflight"),
            unfinished: format!("{p}:unfinished"),
            seq: format!("{p}:seq"),
            ready: format!("{p}:ready"),
            joined: format!("{p}:joined"),
        }
    }
}

/// The put backlog of an unbounded queue's handle, and its I/O thread.
struct Feed {
    /// Encoded items put and not yet written, oldest first.
    backlog: VecDeque<Vec<u8>>,
    /// Items the thread is writing now (taken from the backlog).
    writing: usize,
    /// Why the last write failed (its items were lost): the next put or flush reports it.
    error: Option<Error>,
    /// The thread is waiting for work (a put must wake it).
    idle: bool,
    /// The last handle is gone: write what is left, give back the buffer, end.
    stop: bool,
    thread: Option<JoinHandle<()>>,
}

/// Items one get took ahead, for the gets after it.
struct Ahead {
    items: VecDeque<Vec<u8>>,
    /// When the items were taken (None: there are none).
    since: Option<Instant>,
    /// When the last get returned, and the average time the caller spends between gets (ns).
    returned: Option<Instant>,
    gap_ns: Option<u64>,
}

impl Ahead {
    /// How many items the next trip to the server takes.
    fn want(&mut self, now: Instant) -> usize {
        if let Some(r) = self.returned.take() {
            let gap = now.saturating_duration_since(r).as_nanos().min(u64::MAX as u128) as u64;
            self.gap_ns = Some(self.gap_ns.map_or(gap, |g| (g * 3 + gap) / 4));
        }
        match self.gap_ns {
            None => 1,
            Some(g) => (AHEAD_WINDOW.as_nanos() as u64 / g.max(1)).clamp(1, AHEAD_MAX as u64) as usize,
        }
    }
}

/// What an unbounded queue's I/O thread shares with the handles.
struct Io {
    url: String,
    items: String,
    feed: Mutex<Feed>,
    /// Signalled when the thread has work (`feed.idle`), and when a write ends.
    cv: Condvar,
    ahead: Mutex<Ahead>,
}

impl Io {
    /// The I/O thread: writes the backlog out in order, many items per round trip, and gives
    /// back items taken ahead that nobody asked for in time.
    fn run(&self) {
        let mut link: Option<Link> = None;
        let open_link = |link: &mut Option<Link>| -> Result<()> {
            if link.is_none() {
                *link = Some(Link::new(&self.url, DEFAULT_RECONNECT_WINDOW)?);
            }
            Ok(())
        };
        loop {
            let (batch, stop) = {
                let mut f = lock(&self.feed);
                while f.backlog.is_empty() && !f.stop {
                    let buffered = lock(&self.ahead).since.is_some();
                    f.idle = true;
                    // Woken by a put; else, with items taken ahead, in time to give them back.
                    f = if buffered {
                        self.cv.wait_timeout(f, AHEAD_STALE / 4).unwrap_or_else(|p| p.into_inner()).0
                    } else {
                        self.cv.wait(f).unwrap_or_else(|p| p.into_inner())
                    };
                    f.idle = false;
                    if buffered && f.backlog.is_empty() && !f.stop {
                        break;
                    }
                }
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(item) = f.backlog.front() {
                    if !batch.is_empty() && (batch.len() >= FEED_ITEMS || bytes + item.len() > FEED_BYTES) {
                        break;
                    }
                    bytes += item.len();
                    batch.push(f.backlog.pop_front().expect("front"));
                }
                f.writing = batch.len();
                (batch, f.stop && f.backlog.is_empty())
            };
            if !batch.is_empty() {
                let r = open_link(&mut link).and_then(|()| {
                    link.as_mut().expect("opened").call("putting on a queue", false, None, |c| {
                        let mut cmd = ::redis::cmd("RPUSH");
                        cmd.arg(&self.items);
                        for item in &batch {
                            cmd.arg(item.as_slice());
                        }
                        cmd.query::<()>(c)
                    })
                });
                let mut f = lock(&self.feed);
                f.writing = 0;
                if let Err(e) = r {
                    log::error!(
                        "multiproc: {} items put on the Redis queue {:?} were lost: {e}",
                        batch.len(),
                        self.items
                    );
                    f.error = Some(e);
                }
                self.cv.notify_all();
            }
            // Items taken ahead: back to the front when stale, or all of them at the end.
            let back: Vec<Vec<u8>> = {
                let mut a = lock(&self.ahead);
                let asked = a.returned.or(a.since);
                match asked {
                    Some(t) if a.since.is_some() && (stop || t.elapsed() >= AHEAD_STALE) => {
                        a.since = None;
                        a.items.drain(..).collect()
                    }
                    _ => Vec::new(),
                }
            };
            if !back.is_empty() {
                let r = open_link(&mut link).and_then(|()| {
                    link.as_mut().expect("opened").call("giving items back to a queue", false, None, |c| {
                        let mut cmd = ::redis::cmd("LPUSH");
                        cmd.arg(&self.items);
                        // LPUSH puts its last argument first: the oldest item goes last.
                        for item in back.iter().rev() {
                            cmd.arg(item.as_slice());
                        }
                        cmd.query::<()>(c)
                    })
                });
                if let Err(e) = r {
                    log::error!(
                        "multiproc: {} items taken ahead from the Redis queue {:?} were lost: {e}",
                        back.len(),
                        self.items
                    );
                }
            }
            if stop {
                return;
            }
        }
    }

    /// Waits until the backlog is written (or its write failed).
    fn wait_written(&self) -> MutexGuard<'_, Feed> {
        let mut f = lock(&self.feed);
        while (!f.backlog.is_empty() || f.writing > 0) && f.thread.is_some() {
            f = self.cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        f
    }

    /// Waits until the backlog is written; the error of a write that failed since the last
    /// report (its items were lost).
    fn flush(&self) -> Result<()> {
        match self.wait_written().error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Starts the I/O thread if it is not running.
    fn ensure_thread(self: &Arc<Io>, f: &mut Feed) -> Result<()> {
        if f.thread.is_none() {
            let io = self.clone();
            let t = std::thread::Builder::new()
                .name("redis-queue-io".into())
                .spawn(move || io.run())
                .map_err(Error::io("starting a Redis queue's I/O thread"))?;
            f.thread = Some(t);
        }
        Ok(())
    }
}

/// What the handles of one queue share: the name, keys, and connections for the getting and
/// the putting side (so a get blocked in one thread never holds up a put in another).
struct Core {
    url: String,
    name: String,
    joinable: bool,
    maxsize: usize,
    visibility: Duration,
    keys: Keys,
    getter: Mutex<Link>,
    putter: Mutex<Link>,
    /// Ids of items this handle took and has not marked done, oldest first.
    taken: Mutex<VecDeque<String>>,
    /// The backlog and the items taken ahead of an unbounded plain queue (None: every put and
    /// get is its own round trip).
    io: Option<Arc<Io>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let Some(io) = &self.io else { return };
        let thread = {
            let mut f = lock(&io.feed);
            f.stop = true;
            io.cv.notify_all();
            f.thread.take()
        };
        if let Some(t) = thread {
            // Bounded: the thread's calls give up after the reconnect window.
            let _ = t.join();
        }
    }
}

impl Core {
    fn open(
        url: &str,
        name: &str,
        joinable: bool,
        maxsize: Option<usize>,
        visibility: Duration,
    ) -> Result<Core> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(Error::invalid(format!(
                "a Redis queue name must be non-empty and without braces, not {name:?}"
            )));
        }
        let keys = Keys::new(joinable, name);
        let mut putter = Link::new(url, DEFAULT_RECONNECT_WINDOW)?;
        let getter = Link::new(url, DEFAULT_RECONNECT_WINDOW)?;
        let stored: usize = match maxsize {
            Some(m) => {
                let (_, v): (bool, Option<usize>) = putter.call("opening a queue", true, None, |c| {
                    ::redis::pipe()
                        .cmd("HSETNX")
                        .arg(&keys.meta)
                        .arg("maxsize")
                        .arg(m)
                        .cmd("HGET")
                        .arg(&keys.meta)
                        .arg("maxsize")
                        .query(c)
                })?;
                let v = v.unwrap_or(m);
                if v != m {
                    return Err(Error::invalid(format!(
                        "the Redis queue {name:?} already exists with maxsize {v}, not {m}"
                    )));
                }
                v
            }
            None => {
                let v: Option<usize> = putter.call("opening a queue", true, None, |c| {
                    ::redis::cmd("HGET").arg(&keys.meta).arg("maxsize").query(c)
                })?;
                v.unwrap_or(0)
            }
        };
        let io = (!joinable && stored == 0).then(|| {
            Arc::new(Io {
                url: url.to_string(),
                items: keys.items.clone(),
                feed: Mutex::new(Feed {
                    backlog: VecDeque::new(),
                    writing: 0,
                    error: None,
                    idle: false,
                    stop: false,
                    thread: None,
                }),
                cv: Condvar::new(),
                ahead: Mutex::new(Ahead {
                    items: VecDeque::new(),
                    since: None,
                    returned: None,
                    gap_ns: None,
                }),
            })
        });
        Ok(Core {
            url: url.to_string(),
            name: name.to_string(),
            joinable,
            maxsize: stored,
            visibility,
            keys,
            getter: Mutex::new(getter),
            putter: Mutex::new(putter),
            taken: Mutex::new(VecDeque::new()),
            io,
        })
    }

    /// Queues `bytes` on the backlog of an unbounded queue (the I/O thread writes it); the
    /// error of an earlier write that failed, if one did.
    fn put_backlog(&self, io: &Arc<Io>, bytes: Vec<u8>) -> Result<()> {
        let mut f = lock(&io.feed);
        if let Some(e) = f.error.take() {
            return Err(e);
        }
        io.ensure_thread(&mut f)?;
        f.backlog.push_back(bytes);
        if f.idle {
            f.idle = false;
            io.cv.notify_all();
        }
        Ok(())
    }

    /// Waits until this handle's puts are on the server (a no-op for a queue without backlog).
    fn flush(&self) -> Result<()> {
        self.io.as_ref().map_or(Ok(()), |io| io.flush())
    }

    /// A get of an unbounded queue: from the items taken ahead, or from the server, taking
    /// ahead as many as the caller's pace asks for.
    fn get_ahead(&self, io: &Arc<Io>, deadline: Option<Option<Instant>>) -> Result<Option<Vec<u8>>> {
        // This handle's own puts come first, as they would on a local queue.
        drop(io.wait_written());
        let want = {
            let mut a = lock(&io.ahead);
            let now = Instant::now();
            let want = a.want(now);
            if let Some(item) = a.items.pop_front() {
                if a.items.is_empty() {
                    a.since = None;
                }
                a.returned = Some(now);
                return Ok(Some(item));
            }
            want
        };
        let mut link = lock(&self.getter);
        let k = &self.keys;
        loop {
            let wait = next_wait(deadline);
            let got: Vec<Vec<u8>> = match wait {
                Some(w) if !w.is_zero() => {
                    let r: Option<(String, Vec<Vec<u8>>)> =
                        link.call("getting from a queue", false, Some(w), |c| {
                            ::redis::cmd("BLMPOP")
                                .arg(block_secs(w))
                                .arg(1)
                                .arg(&k.items)
                                .arg("LEFT")
                                .arg("COUNT")
                                .arg(want)
                                .query(c)
                        })?;
                    r.map(|(_, v)| v).unwrap_or_default()
                }
                _ => {
                    let r: Option<Vec<Vec<u8>>> = link.call("getting from a queue", false, None, |c| {
                        ::redis::cmd("LPOP").arg(&k.items).arg(want).query(c)
                    })?;
                    r.unwrap_or_default()
                }
            };
            let mut got = got.into_iter();
            if let Some(first) = got.next() {
                let mut a = lock(&io.ahead);
                a.items.extend(got);
                if !a.items.is_empty() {
                    a.since.get_or_insert_with(Instant::now);
                    drop(a);
                    // The thread gives the rest back if nobody asks for it in time.
                    let mut f = lock(&io.feed);
                    io.ensure_thread(&mut f)?;
                    if f.idle {
                        f.idle = false;
                        io.cv.notify_all();
                    }
                    a = lock(&io.ahead);
                }
                a.returned = Some(Instant::now());
                return Ok(Some(first));
            }
            match wait {
                Some(w) if !w.is_zero() => {}
                _ => return Ok(None),
            }
        }
    }

    /// One attempt to put: `false` when full.
    fn try_put(&self, link: &mut Link, bytes: &[u8]) -> Result<bool> {
        let k = &self.keys;
        let n: i64 = if self.joinable {
            link.call("putting on a queue", false, None, |c| {
                script(JQ_PUT, &JQ_PUT_S)
                    .key(&k.items)
                    .key(&k.data)
                    .key(&k.unfinished)
                    .key(&k.seq)
                    .key(&k.ready)
                    .arg(self.maxsize)
                    .arg(bytes)
                    .invoke(c)
            })?
        } else {
            link.call("putting on a queue", false, None, |c| {
                script(PUT, &PUT_S).key(&k.items).arg(self.maxsize).arg(bytes).invoke(c)
            })?
        };
        Ok(n >= 0)
    }

    fn put_bytes(&self, bytes: &[u8], deadline: Option<Option<Instant>>) -> Result<bool> {
        let mut link = lock(&self.putter);
        loop {
            if self.try_put(&mut link, bytes)? {
                return Ok(true);
            }
            let wait = match next_wait(deadline) {
                Some(w) if !w.is_zero() => w,
                _ => return Ok(false),
            };
            let _: Option<(String, String)> =
                link.call("waiting for room in a queue", true, Some(wait), |c| {
                    ::redis::cmd("BLPOP").arg(&self.keys.space).arg(block_secs(wait)).query(c)
                })?;
        }
    }

    fn signal_space(&self, link: &mut Link) -> Result<()> {
        if self.maxsize == 0 {
            return Ok(());
        }
        link.call("signalling room in a queue", true, None, |c| {
            ::redis::pipe()
                .cmd("RPUSH")
                .arg(&self.keys.space)
                .arg(1)
                .ignore()
                .cmd("LTRIM")
                .arg(&self.keys.space)
                .arg(-64)
                .arg(-1)
                .ignore()
                .query::<()>(c)
        })
    }

    /// One item, waiting up to `deadline` (`None`: no wait, `Some(None)`: forever).
    fn get_bytes(&self, deadline: Option<Option<Instant>>) -> Result<Option<Vec<u8>>> {
        if let Some(io) = &self.io {
            return self.get_ahead(io, deadline);
        }
        let mut link = lock(&self.getter);
        let k = &self.keys;
        loop {
            let wait = next_wait(deadline);
            let got: Option<Vec<u8>> = if self.joinable {
                let r: Option<(String, Vec<u8>)> = link.call("getting from a queue", false, None, |c| {
                    script(JQ_GET, &JQ_GET_S)
                        .key(&k.items)
                        .key(&k.data)
                        .key(&k.inflight)
                        .arg(self.visibility.as_millis() as u64)
                        .invoke(c)
                })?;
                r.map(|(id, data)| {
                    lock(&self.taken).push_back(id);
                    data
                })
            } else {
                match wait {
                    None => link.call("getting from a queue", false, None, |c| {
                        ::redis::cmd("LPOP").arg(&k.items).query(c)
                    })?,
                    Some(w) if !w.is_zero() => {
                        let r: Option<(String, Vec<u8>)> =
                            link.call("getting from a queue", false, Some(w), |c| {
                                ::redis::cmd("BLPOP").arg(&k.items).arg(block_secs(w)).query(c)
                            })?;
                        r.map(|(_, v)| v)
                    }
                    Some(_) => link.call("getting from a queue", false, None, |c| {
                        ::redis::cmd("LPOP").arg(&k.items).query(c)
                    })?,
                }
            };
            if let Some(bytes) = got {
                self.signal_space(&mut link)?;
                return Ok(Some(bytes));
            }
            match wait {
                None => return Ok(None),
                Some(w) if w.is_zero() => return Ok(None),
                Some(w) => {
                    if self.joinable {
                        let _: Option<(String, String)> =
                            link.call("waiting for a queue item", true, Some(w), |c| {
                                ::redis::cmd("BLPOP").arg(&k.ready).arg(block_secs(w)).query(c)
                            })?;
                    }
                }
            }
        }
    }

    /// Items on the server, and those this handle took ahead (after writing its backlog).
    fn qsize(&self) -> Result<usize> {
        if let Some(io) = &self.io {
            drop(io.wait_written());
        }
        let n: usize = lock(&self.putter).call("reading a queue's size", true, None, |c| {
            ::redis::cmd("LLEN").arg(&self.keys.items).query(c)
        })?;
        Ok(n + self.io.as_ref().map_or(0, |io| lock(&io.ahead).items.len()))
    }

    fn task_done(&self) -> Result<std::result::Result<(), TaskDoneError>> {
        let Some(id) = lock(&self.taken).pop_front() else { return Ok(Err(TaskDoneError::TooManyCalls)) };
        let k = &self.keys;
        let r = lock(&self.putter).call("marking a queue item done", true, None, |c| {
            script(JQ_DONE, &JQ_DONE_S)
                .key(&k.inflight)
                .key(&k.items)
                .key(&k.data)
                .key(&k.unfinished)
                .key(&k.joined)
                .arg(&id)
                .invoke::<i64>(c)
        });
        match r {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                lock(&self.taken).push_front(id);
                Err(e)
            }
        }
    }

    fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut link = lock(&self.getter);
        loop {
            let left: Option<i64> = link.call("joining a queue", true, None, |c| {
                ::redis::cmd("GET").arg(&self.keys.unfinished).query(c)
            })?;
            if left.unwrap_or(0) <= 0 {
                return Ok(true);
            }
            let wait = match deadline {
                None => SLICE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    left.min(SLICE)
                }
            };
            let _: Option<(String, String)> = link.call("joining a queue", true, Some(wait), |c| {
                ::redis::cmd("BLPOP").arg(&self.keys.joined).arg(block_secs(wait)).query(c)
            })?;
        }
    }

    fn unlink(&self) -> Result<()> {
        self.flush()?;
        if let Some(io) = &self.io {
            let mut a = lock(&io.ahead);
            a.items.clear();
            a.since = None;
        }
        let k = &self.keys;
        lock(&self.putter).call("deleting a queue", true, None, |c| {
            ::redis::cmd("DEL")
                .arg(&k.items)
                .arg(&k.meta)
                .arg(&k.space)
                .arg(&k.data)
                .arg(&k.inflight)
                .arg(&k.unfinished)
                .arg(&k.seq)
                .arg(&k.ready)
                .arg(&k.joined)
                .query::<()>(c)
        })
    }
}

fn encode<T: Serialize>(value: &T) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    match wire::encode(value, &mut bytes) {
        Ok(fds) if fds.is_empty() => Ok(bytes),
        Ok(_) => {
            Err("an item of a Redis queue cannot carry handles (connections, queues, shared memory)".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

macro_rules! queue_common {
    ($(#[$m:meta])* pub struct $Q:ident<T>, joinable: $joinable:literal) => {
        $(#[$m])*
        pub struct $Q<T> {
            core: Arc<Core>,
            closed: Arc<AtomicBool>,
            _t: PhantomData<fn() -> T>,
        }

        impl<T> $Q<T> {
            /// Opens the queue `name` at `url` (`maxsize`: the bound to create it with or check).
            fn open_core(
                url: &str,
                name: &str,
                maxsize: Option<usize>,
                visibility: Duration,
            ) -> Result<Self> {
                Ok(Self::on(Arc::new(Core::open(url, name, $joinable, maxsize, visibility)?)))
            }

            /// A handle on `core` with a `closed` flag of its own.
            fn on(core: Arc<Core>) -> Self {
                $Q { core, closed: Arc::new(AtomicBool::new(false)), _t: PhantomData }
            }
        }

        impl<T> Clone for $Q<T> {
            /// Another handle on the same queue, sharing this one's connections.
            fn clone(&self) -> Self {
                Self::on(self.core.clone())
            }
        }

        impl<T> fmt::Debug for $Q<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Q))
                    .field("name", &self.core.name)
                    .field("maxsize", &self.core.maxsize)
                    .finish_non_exhaustive()
            }
        }

        impl<T: Serialize + DeserializeOwned> $Q<T> {
            /// A put waiting up to `deadline` (`None`: no wait, `Some(None)`: forever); `Full`
            /// when no room came in time, which each public form says in its own terms.
            fn put_with(
                &self,
                value: T,
                deadline: Option<Option<Instant>>,
            ) -> std::result::Result<(), TryPutError<T>> {
                if self.closed.load(Ordering::Relaxed) {
                    return Err(TryPutError::Closed(value));
                }
                let bytes = match encode(&value) {
                    Ok(b) => b,
                    Err(e) => return Err(TryPutError::Encode(value, e)),
                };
                if let Some(io) = &self.core.io {
                    return self.core.put_backlog(io, bytes).map_err(|e| TryPutError::Broker(value, e));
                }
                match self.core.put_bytes(&bytes, deadline) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(TryPutError::Full(value)),
                    Err(e) => Err(TryPutError::Broker(value, e)),
                }
            }

            /// Puts `value` at the back, waiting while the queue is full (so its error is
            /// never "full").
            pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
                let mut value = value;
                loop {
                    match self.put_with(value, Some(None)) {
                        Ok(()) => return Ok(()),
                        // A wait without deadline does not end unfulfilled; wait again.
                        Err(TryPutError::Full(v)) => value = v,
                        Err(TryPutError::Closed(v)) => return Err(PutError::Closed(v)),
                        Err(TryPutError::Encode(v, m)) => return Err(PutError::Encode(v, m)),
                        Err(TryPutError::Broker(v, e)) => return Err(PutError::Broker(v, e)),
                    }
                }
            }

            /// Puts `value`, waiting at most `timeout` for room;
            /// [`PutTimeoutError::Timeout`] with the value back when there was none.
            pub fn put_timeout(
                &self,
                value: T,
                timeout: Duration,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
                self.put_with(value, Some(Some(Instant::now() + timeout))).map_err(|e| match e {
                    TryPutError::Full(v) => PutTimeoutError::Timeout(v),
                    TryPutError::Closed(v) => PutTimeoutError::Closed(v),
                    TryPutError::Encode(v, m) => PutTimeoutError::Encode(v, m),
                    TryPutError::Broker(v, e) => PutTimeoutError::Broker(v, e),
                })
            }

            /// Puts `value` if there is room now; [`TryPutError::Full`] with the value back
            /// otherwise.
            pub fn put_nowait(&self, value: T) -> std::result::Result<(), TryPutError<T>> {
                self.put_with(value, None)
            }

            /// An item, waiting up to `deadline` as for [`put_with`](Self::put_with); `None`
            /// when none came in time.
            fn get_with(
                &self,
                deadline: Option<Option<Instant>>,
            ) -> std::result::Result<Option<T>, GetError> {
                if self.closed.load(Ordering::Relaxed) {
                    return Err(GetError::Closed);
                }
                match self.core.get_bytes(deadline) {
                    Ok(Some(bytes)) => wire::decode(&bytes, Vec::new())
                        .map(Some)
                        .map_err(|e| GetError::Decode(e.to_string())),
                    Ok(None) => Ok(None),
                    Err(e) => Err(GetError::Broker(e)),
                }
            }

            /// Takes the item at the front, waiting for one (so its error is never "empty").
            pub fn get(&self) -> std::result::Result<T, GetError> {
                loop {
                    if let Some(item) = self.get_with(Some(None))? {
                        return Ok(item);
                    }
                }
            }

            /// Takes the item at the front, waiting at most `timeout`;
            /// [`GetTimeoutError::Timeout`] when none came.
            pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
                self.get_with(Some(Some(Instant::now() + timeout)))?.ok_or(GetTimeoutError::Timeout)
            }

            /// Takes the item at the front if there is one now; [`TryGetError::Empty`]
            /// otherwise.
            pub fn get_nowait(&self) -> std::result::Result<T, TryGetError> {
                self.get_with(None)?.ok_or(TryGetError::Empty)
            }

            /// Items in the queue now (taken items excluded), as the server counts them.
            pub fn qsize(&self) -> Result<usize> {
                self.core.qsize()
            }

            /// Whether the queue holds no item now.
            pub fn empty(&self) -> Result<bool> {
                Ok(self.qsize()? == 0)
            }

            /// Whether the queue holds `maxsize` items now (never for an unbounded queue).
            pub fn full(&self) -> Result<bool> {
                Ok(self.core.maxsize > 0 && self.qsize()? >= self.core.maxsize)
            }

            /// The queue's bound (0: unbounded), as stored on the server.
            pub fn maxsize(&self) -> usize {
                self.core.maxsize
            }

            /// The queue's name.
            pub fn name(&self) -> &str {
                &self.core.name
            }

            /// This handle puts and gets no more (Python's `close`); other handles and other
            /// processes go on. The items stay on the server, and those this process put are
            /// still written out.
            pub fn close(&self) {
                self.closed.store(true, Ordering::Relaxed);
            }

            /// Waits until every item this handle (and its clones in this process) put is on
            /// the server, where any process can take it and it outlives this one. `Err` when a
            /// write of the backlog failed since the last report: the broker was away for longer
            /// than the reconnect window, and those items were lost. Only an unbounded
            /// [`Queue`] has a backlog; for the others every put is on the server when it
            /// returns.
            pub fn flush(&self) -> Result<()> {
                self.core.flush()
            }

            /// Deletes the queue's keys from the server (its items are lost).
            pub fn unlink(&self) -> Result<()> {
                self.core.unlink()
            }
        }

        impl<T> Serialize for $Q<T> {
            /// A queue travels as its URL, name and options; the receiver opens its own
            /// connections.
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                (&self.core.url, &self.core.name, self.core.maxsize, self.core.visibility.as_millis() as u64)
                    .serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $Q<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let (url, name, maxsize, vis): (String, String, usize, u64) = Deserialize::deserialize(d)?;
                Self::open_core(&url, &name, Some(maxsize), Duration::from_millis(vis))
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

queue_common! {
    /// A FIFO queue on a Redis broker, shared by every process that opens it by URL and name.
    ///
    /// The API is the local [`Queue`](crate::Queue)'s, with the differences a server brings:
    /// `qsize`, `empty` and `full` ask the server and may fail; a broker that is away for longer
    /// than the reconnect window (10 s) turns calls into the `Broker` case of their error
    /// ([`PutError::Broker`], [`GetError::Broker`], ...). Items are plain serde values (no handles).
    /// Each form of `put` and `get` has its own error type, as on the local queue.
    ///
    /// **Batching (unbounded queues).** As on a local queue, `put` hands the item to this handle's
    /// backlog and returns; a thread writes the backlog to the server in order, many items per
    /// round trip. Dropping the last handle of a process waits for it (as Python joins the feeder
    /// thread), and so does [`flush`](Self::flush); a process that leaves without dropping it
    /// (`std::process::exit`, a signal) loses what was not yet written. A write that fails (the
    /// broker away for longer than the reconnect window) loses its items, and the next `put` or
    /// `flush` reports it. This handle's own puts are on the server before its next `get`,
    /// `qsize`, `empty` or `full`.
    ///
    /// A `get` takes up to as many items as its caller consumes in about 2 ms (at most 128) in one
    /// round trip, and serves the next gets from them; a caller that spends more than 2 ms between
    /// gets takes one item at a time. Items taken ahead are this handle's: counted by its own
    /// `qsize` but not by other handles', and given back to the front of the queue when the handle
    /// has not asked for one for 100 ms, or when its last clone is dropped. So one consumer sees the
    /// items in the order they were put; with several, an item given back comes after newer items
    /// that another consumer took meanwhile (as a [`JoinableQueue`] item whose lease expired does).
    /// A consumer that dies takes the items it took ahead with it, as it takes the item it was
    /// working on: a plain queue delivers at most once, a [`JoinableQueue`] at least once.
    ///
    /// A bounded queue ([`with_maxsize`](Self::with_maxsize)) does neither: every put checks the
    /// bound on the server and every get takes one item, so that the bound holds across processes.
    ///
    /// ```no_run
    /// let q = multiproc::redis::Queue::<u32>::open("redis://127.0.0.1:6379/0", "jobs")?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub struct Queue<T>, joinable: false
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Opens the queue `name` on the server at `url` (`redis://[user:password@]host:port/db`),
    /// with the bound it was created with (unbounded if it was never given one).
    pub fn open(url: &str, name: &str) -> Result<Queue<T>> {
        Self::open_core(url, name, None, DEFAULT_VISIBILITY)
    }

    /// Opens (creating if needed) the queue `name` bounded to `maxsize` items (0: unbounded).
    /// Every handle of one queue sees the same bound: opening an existing queue with another
    /// one is an error.
    pub fn with_maxsize(url: &str, name: &str, maxsize: usize) -> Result<Queue<T>> {
        Self::open_core(url, name, Some(maxsize), DEFAULT_VISIBILITY)
    }
}

queue_common! {
    /// A [`Queue`] whose items are counted until marked done (Python's `JoinableQueue`), and come
    /// back when the consumer that took one dies before marking it done.
    ///
    /// Each item a `get` returns is leased to this handle for the queue's visibility timeout (60 s
    /// by default, [`with_options`](Self::with_options)): [`task_done`](Self::task_done) ends the
    /// oldest lease the handle holds. An item whose lease expires goes back to the front of the
    /// queue and is delivered again (at-least-once): a consumer that takes longer than the timeout
    /// may see its item run twice, and its late `task_done` still counts it once.
    pub struct JoinableQueue<T>, joinable: true
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Opens the joinable queue `name` on the server at `url`, with the bound it was created
    /// with and a 60 s visibility timeout.
    pub fn open(url: &str, name: &str) -> Result<JoinableQueue<T>> {
        Self::open_core(url, name, None, DEFAULT_VISIBILITY)
    }

    /// Opens (creating if needed) the queue bounded to `maxsize` items (0: unbounded), with
    /// items taken by this handle coming back after `visibility` if not marked done.
    pub fn with_options(
        url: &str,
        name: &str,
        maxsize: usize,
        visibility: Duration,
    ) -> Result<JoinableQueue<T>> {
        if visibility < Duration::from_millis(1) {
            return Err(Error::invalid("a visibility timeout must be at least 1 ms"));
        }
        Self::open_core(url, name, Some(maxsize), visibility)
    }

    /// Marks the oldest item this handle took as done (Python's `task_done`).
    /// [`TaskDoneError::TooManyCalls`] when the handle holds no item; a broker failure leaves
    /// the item held, to be marked again.
    pub fn task_done(&self) -> Result<std::result::Result<(), TaskDoneError>> {
        self.core.task_done()
    }

    /// Waits until every item ever put has been marked done (Python's `join`).
    pub fn join(&self) -> Result<()> {
        self.core.join(None).map(drop)
    }

    /// [`join`](Self::join) for at most `timeout`; whether every item was done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.core.join(Some(Instant::now() + timeout))
    }

    /// Items put and not yet marked done, as the server counts them.
    pub fn unfinished(&self) -> Result<u64> {
        let v: Option<i64> = lock(&self.core.putter).call("reading a queue", true, None, |c| {
            ::redis::cmd("GET").arg(&self.core.keys.unfinished).query(c)
        })?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }
}
