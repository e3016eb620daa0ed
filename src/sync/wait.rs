//! The wait core: the crate's one process-shared lock and its one wait policy. Locks
//! (`sync`), the queue ring, the pipe's lanes and the manager's streams all wait here.
//!
//! # When to spin
//!
//! A wait first spins (re-checks in a loop) only when spinning can pay, then sleeps on a futex
//! (or, for the lanes and streams, in `poll`/`read` on a descriptor). Spinning pays only when
//! the process that will end the wait runs *at the same time* on another CPU, so:
//!
//! - **CPUs this process may use**: the affinity mask (`sched_getaffinity`) bounded by the
//!   cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), worked out once per process. With
//!   fewer than two, a wait never spins: on one CPU a spin only burns the time slice the peer
//!   needs to make progress, so the waiter yields once (the peer, just woken, runs first) and
//!   then sleeps; and where a yield turns out to hand the CPU to other work for a whole time
//!   slice, it stops yielding for a while (see `Spinner::yield_once`).
//! - **Whether the CPUs are free**: more runnable tasks than online CPUs, the waiter counted
//!   (`/proc/loadavg`, read at most every [`LOAD_EVERY`]), means a spinning waiter is charged
//!   CPU time that a busy loop or compiler would otherwise get. The scheduler (EEVDF) then owes
//!   it less, so its later wake-ups stop preempting that work and it is preempted for a whole
//!   time slice just when its peer answers; a waiter that sleeps at once is woken ahead of
//!   them. So no spin then either. (Measured here with a busy loop per CPU: a small-item queue
//!   did 0.8-1.0 M items/s spinning at one task over the CPU count, 2.3-4.2 M not spinning.)
//!   (The machine-wide count misses busy loops pinned to this process's CPUs on a machine with
//!   many other CPUs idle; this thread's own run-queue delay would catch them, but holding off
//!   spinning on it measured slower here than spinning, so it is not used.)
//! - **Apart on a busy machine**: the one exception to the rule above, for a wait that knows
//!   where its peer ran (a pipe's lane records the CPU of the sender of each record). Two
//!   processes in a ping-pong on a busy machine run either on one CPU (beside the other work)
//!   or on two (each beside other work), and the scheduler keeps whichever it started with.
//!   On one CPU a sleep is the fast way (a wake-up there needs no other CPU); on two, each
//!   wake-up is an inter-processor interrupt and a preemption of the other CPU's work (tens of
//!   microseconds in a virtual machine), while a spin sees the peer's write in well under a
//!   microsecond whenever both happen to run. So a waiter whose peer last ran on another CPU
//!   spins as the adaptive policy says, and one whose peer shares its CPU sleeps at once.
//!   (Measured here beside two busy loops: a pipe's ping-pong on two CPUs went from 21-26k to
//!   550-610k round trips a second; on one CPU it stays at about 138k.)
//! - **Whether the peer runs**: where the other side publishes whether it is asleep (a lane's
//!   `reader_active` word, a lock word's waiters bit), a spin stops as soon as it reads that
//!   nothing running will end it.
//! - **How often recent spins paid** ([`Spinner`], after glibc's adaptive mutex): each kind of
//!   wait keeps a moving average of how long successful spins took and spins four times that,
//!   at least [`SPIN_FLOOR`] (about a wake-up of a sleeping peer) and at most [`SPIN_CAP`];
//!   when most recent spins ended in a sleep anyway (a peer that is preempted on a busy
//!   machine, or one that takes long), it only probes briefly, and spins in full one wait in
//!   [`PROBE_EVERY`] to notice when that changes.
//!
//! # The lock
//!
//! One `u32` word naming its holder:
//!
//! | value | meaning | moved by |
//! | --- | --- | --- |
//! | `0` | free | release (swap to 0) |
//! | `pid` | held by process `pid`, nobody sleeping | acquire (CAS 0 -> pid) |
//! | `pid \| WAITERS` | held, a waiter may sleep on the word | a waiter (CAS pid -> pid\|WAITERS) before sleeping; an acquirer that has slept takes the lock as `me\|WAITERS` |
//!
//! A waiter sleeps on the futex in slices of [`SLICE`]. After each slice it checks that the
//! holder still exists and has not exited ([`sys::pid_alive`]: `kill(pid, 0)`, and a zombie
//! nobody reaped counts as dead); if not, it takes the word over (CAS holder -> me|WAITERS) and
//! reports the holder's death, the way `std::sync::Mutex` reports poisoning. So a holder that
//! died, reaped or not, is detected within one slice. Release swaps 0 in and wakes one sleeper
//! if the WAITERS bit was set. Pids fit in 22 bits (`pid_max` <= 2^22), so bit 31 is free.
//!
//! Pid reuse: the word has no room for the holder's start time beside its pid, so a pid reused
//! by an unrelated process before a waiter looks delays detection until that process ends. It
//! cannot hand the lock to two holders (the take-over is a compare-and-swap on the exact word),
//! and while the dead holder is a zombie its pid cannot be reused.
//!
//! # Sequence waits
//!
//! [`wait_for`] is the other shape: a condition in shared memory (ring space, a committed
//! record), a sequence word the side that changes it bumps, and a count of sleepers so that the
//! bump and the wake are skipped when nobody sleeps ([`notify`]).

// Under the model checker a spin is one look: the spin policy's clock, CPU count and yields
// go unused there.
#![cfg_attr(loom, allow(dead_code))]

use super::atomic::Word;
use crate::sys::{self, futex};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

/// The lock word's "a waiter may sleep" bit.
pub(crate) const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = !WAITERS;

/// How long a waiter sleeps before it checks that the process it waits on is alive.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// The longest spin of any wait: past this a futex sleep and wake cost less than the spin.
pub(crate) const SPIN_CAP: Duration = Duration::from_micros(50);
/// The shortest full spin: about what waking a sleeping peer takes on an idle CPU, so that a
/// pair of processes that fell asleep once get back to spinning rather than waking each other
/// from then on.
const SPIN_FLOOR: Duration = Duration::from_micros(20);
/// A spin when recent spins did not pay: long enough for a peer that is on a CPU right now.
const PROBE: Duration = Duration::from_micros(2);
/// When recent spins did not pay, one wait in this many still spins in full.
const PROBE_EVERY: u32 = 8;

// ---- where spinning can pay ---------------------------------------------------------------

/// CPUs this process may run on at once: its affinity mask, bounded by its cgroup's CPU quota
/// (whole CPUs, rounded down, at least 1). Worked out once per process.
///
/// Not a `OnceLock`: a `Fork` child of a thread that was filling one in would wait for ever on
/// its futex. Two threads that race here each work it out and store the same value.
pub(crate) fn usable_cpus() -> usize {
    static CPUS: AtomicUsize = AtomicUsize::new(0);
    let known = CPUS.load(Relaxed);
    if known != 0 {
        return known;
    }
    let affinity = sys::affinity_cpu_count();
    let quota = if cfg!(miri) { None } else { cgroup_cpu_quota() };
    let n = match quota {
        Some(q) => affinity.min(q.floor().max(1.0) as usize),
        None => affinity,
    }
    .max(1);
    CPUS.store(n, Relaxed);
    n
}

/// 0: not known yet; 1: never spin; 2: spinning may pay.
static MAY_SPIN: AtomicU8 = AtomicU8::new(0);

/// Whether any wait may spin: two CPUs or more are usable.
#[cfg(not(loom))]
#[inline]
pub(crate) fn may_spin() -> bool {
    match MAY_SPIN.load(Relaxed) {
        0 => {
            let yes = usable_cpus() > 1;
            MAY_SPIN.store(if yes { 2 } else { 1 }, Relaxed);
            yes
        }
        v => v == 2,
    }
}

/// Under the model checker: as the model says ([`model::MANY_CPUS`]).
#[cfg(loom)]
pub(crate) fn may_spin() -> bool {
    model::MANY_CPUS.with(std::cell::Cell::get)
}

/// What the model checker's runs (`cfg(loom)`, see `docs/design.md`) stand in for the machine.
#[cfg(loom)]
pub(crate) mod model {
    std::thread_local! {
        /// Whether waits go as with two usable CPUs or more ([`super::may_spin`]). Loom runs
        /// the threads of a model on the thread that calls it, so a test sets this around it.
        pub(crate) static MANY_CPUS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    }
}

/// The CPU quota of this process's cgroup and its ancestors, in CPUs (`None`: no limit or no
/// cgroup file to read).
fn cgroup_cpu_quota() -> Option<f64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<f64> = None;
    let mut keep = |q: Option<f64>| {
        if let Some(q) = q.filter(|q| *q > 0.0) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    };
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        let v2 = controllers.is_empty();
        let v1 = controllers.split(',').any(|c| c == "cpu");
        if !v2 && !v1 {
            continue;
        }
        // The cgroup's own directory and each ancestor: a limit anywhere above applies. Inside a
        // container the path may name the host's view; the mount root is then the cgroup.
        let roots: &[&str] = if v2 {
            &["/sys/fs/cgroup"]
        } else {
            &["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu"]
        };
        for root in roots {
            let mut dir = std::path::PathBuf::from(format!("{root}{}", path.trim_end_matches('/')));
            loop {
                keep(if v2 { read_cpu_max(&dir) } else { read_cfs_quota(&dir) });
                if dir.as_os_str().len() <= root.len() || !dir.pop() {
                    break;
                }
            }
            keep(if v2 { read_cpu_max(root.as_ref()) } else { read_cfs_quota(root.as_ref()) });
        }
    }
    best
}

/// cgroup v2 `cpu.max`: `"max 100000"` (no limit) or `"<quota> <period>"`.
fn read_cpu_max(dir: &std::path::Path) -> Option<f64> {
    let s = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
    parse_cpu_max(&s)
}

fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut f = s.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// cgroup v1 `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`.
fn read_cfs_quota(dir: &std::path::Path) -> Option<f64> {
    let quota: f64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?.trim().parse().ok()?;
    let period: f64 = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// How often the run queue length is looked at again.
const LOAD_EVERY: Duration = Duration::from_millis(5);

/// Whether more tasks are runnable than there are CPUs online, as of at most [`LOAD_EVERY`]
/// ago. False where that cannot be read.
pub(crate) fn oversubscribed() -> bool {
    static CHECKED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // Under Miri and the model checker the machine's load must not steer a run (a model checker
    // replays each interleaving and needs the same choices every time).
    if cfg!(miri) || cfg!(loom) {
        return false;
    }
    let now_ms = sys::monotonic_ns() / 1_000_000 + 1;
    let last = CHECKED_MS.load(Relaxed);
    if now_ms.saturating_sub(last) < LOAD_EVERY.as_millis() as u64 {
        return OVER.load(Relaxed);
    }
    CHECKED_MS.store(now_ms, Relaxed);
    // The count includes the waiter itself: more runnable tasks than CPUs means one of them
    // waits for a CPU right now, and a spin would take the CPU from it.
    let over = run_queue().is_some_and(|running| running > sys::cpu_count());
    OVER.store(over, Relaxed);
    over
}

/// Runnable tasks now, the fourth field of `/proc/loadavg` (`running/total`).
fn run_queue() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

// ---- adaptive spinning --------------------------------------------------------------------

/// The spin policy of one kind of wait, in this process: how long successful spins took
/// (moving average) and how often spins paid. Plain loads and stores: two threads updating at
/// once lose an update, which only nudges an estimate.
pub(crate) struct Spinner {
    /// Moving average of the nanoseconds a successful spin took.
    avg_ns: AtomicU32,
    /// Share of recent spins that paid, out of 256.
    hits: AtomicU32,
    /// Waits since the last full spin while spins did not pay.
    skipped: AtomicU32,
    /// With one usable CPU: until when (monotonic ns) waits sleep without yielding first, and
    /// for how long the next slow yield turns yields off.
    quiet_until: AtomicU64,
    quiet_ns: AtomicU64,
    /// Slow yields in a row.
    slow_yields: AtomicU32,
}

/// Waiting for a process-shared lock.
pub(crate) static LOCK: Spinner = Spinner::new();
/// A queue's consumers waiting for items and producers for room.
pub(crate) static RING: Spinner = Spinner::new();
/// A pipe's receiver waiting for a message and its sender for lane space.
pub(crate) static LANE: Spinner = Spinner::new();
/// A manager proxy waiting for its reply, and the server for the next request.
pub(crate) static STREAM: Spinner = Spinner::new();

impl Spinner {
    pub(crate) const fn new() -> Spinner {
        Spinner {
            avg_ns: AtomicU32::new(5_000),
            hits: AtomicU32::new(256),
            skipped: AtomicU32::new(0),
            quiet_until: AtomicU64::new(0),
            quiet_ns: AtomicU64::new(0),
            slow_yields: AtomicU32::new(0),
        }
    }

    /// How long the next wait may spin; zero where spinning cannot pay.
    #[inline]
    pub(crate) fn budget(&self) -> Duration {
        if !may_spin() {
            return Duration::ZERO;
        }
        self.budget_slow()
    }

    fn budget_slow(&self) -> Duration {
        if oversubscribed() {
            return Duration::ZERO;
        }
        self.adaptive()
    }

    /// The budget from recent spins alone.
    fn adaptive(&self) -> Duration {
        let full = Duration::from_nanos(4 * self.avg_ns.load(Relaxed) as u64).clamp(SPIN_FLOOR, SPIN_CAP);
        if self.hits.load(Relaxed) >= 64 {
            return full;
        }
        let skipped = self.skipped.load(Relaxed) + 1;
        if skipped >= PROBE_EVERY {
            self.skipped.store(0, Relaxed);
            full
        } else {
            self.skipped.store(skipped, Relaxed);
            PROBE
        }
    }

    /// Records how a spin of `budget` ended: `Some(time it took)` when the wait ended during
    /// the spin, `None` when the waiter went to sleep after it.
    pub(crate) fn spun(&self, budget: Duration, outcome: Option<Duration>) {
        let hits = self.hits.load(Relaxed);
        match outcome {
            Some(t) => {
                let avg = self.avg_ns.load(Relaxed) as i64;
                let took = t.min(SPIN_CAP).as_nanos() as i64;
                self.avg_ns.store((avg + (took - avg) / 8).max(0) as u32, Relaxed);
                self.hits.store((hits + (256 - hits.min(256)) / 8 + 1).min(256), Relaxed);
            }
            // A probe that failed says little: only a full spin's failure counts.
            None if budget > PROBE => self.hits.store(hits - hits / 8 - (hits > 0) as u32, Relaxed),
            None => {}
        }
    }

    /// Under the model checker, which has no clock: one look, which it may schedule before or
    /// after the peer's move (a spin that pays, or one that ends in a sleep).
    #[cfg(loom)]
    pub(crate) fn spin(&self, mut ready: impl FnMut() -> bool, _peer_runs: impl FnMut() -> bool) -> bool {
        ready()
    }

    /// As [`spin`](Self::spin), but on an oversubscribed machine it still spins where `apart`
    /// says the peer last ran on another CPU than this waiter runs on (see "Apart on a busy
    /// machine" in the module doc).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn spin_where(
        &self,
        ready: impl FnMut() -> bool,
        peer_runs: impl FnMut() -> bool,
        apart: impl FnOnce() -> bool,
    ) -> bool {
        if !may_spin() {
            return self.yield_once(ready);
        }
        if oversubscribed() && !apart() {
            return false;
        }
        self.spin_for(self.adaptive(), ready, peer_runs)
    }

    /// Under the model checker: one look, as [`spin`](Self::spin).
    #[cfg(loom)]
    pub(crate) fn spin_where(
        &self,
        mut ready: impl FnMut() -> bool,
        _peer_runs: impl FnMut() -> bool,
        _apart: impl FnOnce() -> bool,
    ) -> bool {
        ready()
    }

    /// Spins until `ready` or the budget is spent, stopping early once `peer_runs` says that
    /// nothing running will make `ready` true. Whether `ready` came true.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn spin(&self, ready: impl FnMut() -> bool, peer_runs: impl FnMut() -> bool) -> bool {
        if !may_spin() {
            return self.yield_once(ready);
        }
        let budget = self.budget();
        if budget.is_zero() {
            return false;
        }
        self.spin_for(budget, ready, peer_runs)
    }

    #[cold]
    fn spin_for(
        &self,
        budget: Duration,
        mut ready: impl FnMut() -> bool,
        mut peer_runs: impl FnMut() -> bool,
    ) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..16 {
                if ready() {
                    self.spun(budget, Some(start.elapsed()));
                    return true;
                }
                std::hint::spin_loop();
            }
            let spent = start.elapsed();
            if spent >= budget || !peer_runs() {
                if ready() {
                    self.spun(budget, Some(spent));
                    return true;
                }
                // A spin cut short by a sleeping peer says nothing about how long spins take.
                if spent >= budget {
                    self.spun(budget, None);
                }
                return false;
            }
        }
    }

    /// With one usable CPU: instead of a spin, let whatever else is runnable here (the peer,
    /// most likely, just woken by this waiter) run first, once. A producer then fills a queue in
    /// a burst before its consumer is woken at all, and a ping-pong partner answers before this
    /// side sleeps; with nothing else runnable the yield returns at once.
    ///
    /// A yield is cheap only while the peer is all that runs here. On a CPU shared with other
    /// work (a busy loop, a compiler) it hands the CPU to that work for the rest of its time
    /// slice (milliseconds), and the scheduler charges the yielder for it: its next wake-ups
    /// no longer preempt that work, so every later wait of the pair also lasts a time slice
    /// (measured here: a ping-pong on a CPU beside a busy loop did under 1,000 round trips a
    /// second yielding every wait, about 30,000 with yields turned off as below). So
    /// [`SLOW_YIELDS`] yields in a row that took longer than [`YIELD_PAID`] turn yields off
    /// for a while, [`YIELD_QUIET`] doubling up to [`YIELD_QUIET_MAX`] while they
    /// stay slow, and a quick one turns them back on for good.
    #[cold]
    fn yield_once(&self, mut ready: impl FnMut() -> bool) -> bool {
        let now = sys::monotonic_ns();
        if now < self.quiet_until.load(Relaxed) {
            return false;
        }
        std::thread::yield_now();
        let done = ready();
        self.note_yield(now, sys::monotonic_ns().saturating_sub(now));
        done
    }

    /// Counts a yield that began at `start` and took `took` ns: slow ones in a row turn yields
    /// off for a while, a quick one turns the count (and the backoff) back to zero.
    fn note_yield(&self, start: u64, took: u64) {
        if took > YIELD_PAID.as_nanos() as u64 {
            let slow = self.slow_yields.load(Relaxed) + 1;
            self.slow_yields.store(slow, Relaxed);
            if slow < SLOW_YIELDS {
                return;
            }
            self.slow_yields.store(0, Relaxed);
            let quiet = (self.quiet_ns.load(Relaxed) * 2)
                .clamp(YIELD_QUIET.as_nanos() as u64, YIELD_QUIET_MAX.as_nanos() as u64);
            self.quiet_ns.store(quiet, Relaxed);
            self.quiet_until.store(start + took + quiet, Relaxed);
        } else {
            self.slow_yields.store(0, Relaxed);
            self.quiet_ns.store(0, Relaxed);
        }
    }
}

/// The longest yield that costs no more than the peer's turn (a message handled and answered:
/// microseconds); another task's time slice takes at least 700 us.
const YIELD_PAID: Duration = Duration::from_micros(100);
/// Slow yields in a row that turn yields off: one alone may be an interrupt or a kernel
/// thread's turn on an otherwise dedicated CPU.
const SLOW_YIELDS: u32 = 2;
/// How long yields stay off after the first slow one.
const YIELD_QUIET: Duration = Duration::from_millis(50);
/// The longest they stay off: a probe costs one time slice, so at most a few per second.
const YIELD_QUIET_MAX: Duration = Duration::from_secs(1);

/// No hint about the peer: it may be running.
#[inline]
pub(crate) fn unknown_peer() -> bool {
    true
}

// ---- the lock -----------------------------------------------------------------------------

/// How an acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock is ours.
    Yes,
    /// The lock is ours, taken over from this holder, which died holding it.
    FromDead(i32),
    /// The deadline passed (or, for [`try_lock`], the lock is held).
    TimedOut,
}

fn me() -> u32 {
    sys::getpid() as u32
}

/// Acquires `word`, waiting until `deadline` (`None`: for ever).
#[inline]
pub(crate) fn lock(word: &impl Word, deadline: Option<Instant>) -> Acquired {
    let me = me();
    if word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
        return Acquired::Yes;
    }
    lock_slow(word, me, deadline)
}

#[cold]
fn lock_slow(word: &impl Word, me: u32, deadline: Option<Instant>) -> Acquired {
    // Spin only while nobody sleeps on the word: with sleepers queued the lock goes to one of
    // them at the next release, and this spin would only compete with it.
    let free = || word.load(Relaxed) == 0 && word.compare_exchange(0, me, Acquire, Relaxed).is_ok();
    if LOCK.spin(free, || word.load(Relaxed) & WAITERS == 0) {
        return Acquired::Yes;
    }
    loop {
        let cur = word.load(Relaxed);
        if cur == 0 {
            // Having waited, we cannot know whether others sleep: keep the WAITERS bit.
            if word.compare_exchange(0, me | WAITERS, Acquire, Relaxed).is_ok() {
                return Acquired::Yes;
            }
            continue;
        }
        if cur & WAITERS == 0 && word.compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed).is_err() {
            continue;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Acquired::TimedOut;
        }
        let slice_end = now + SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        if let Ok(futex::Wait::TimedOut) = word.sleep(cur | WAITERS, Some(until)) {
            let holder = (cur & PID_MASK) as i32;
            if holder != 0
                && !sys::pid_alive(holder)
                && word.compare_exchange(cur | WAITERS, me | WAITERS, Acquire, Relaxed).is_ok()
            {
                log::debug!("lock recovered from dead process {holder}");
                return Acquired::FromDead(holder);
            }
        }
    }
}

/// Acquires `word` only if it is free now, or its holder is dead.
pub(crate) fn try_lock(word: &impl Word) -> Acquired {
    let me = me();
    let cur = word.load(Relaxed);
    if cur == 0 && word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
        return Acquired::Yes;
    }
    let holder = (cur & PID_MASK) as i32;
    if holder != 0
        && !sys::pid_alive(holder)
        && word.compare_exchange(cur, me | (cur & WAITERS), Acquire, Relaxed).is_ok()
    {
        return Acquired::FromDead(holder);
    }
    Acquired::TimedOut
}

/// Releases `word`. `false` if it was not held.
#[inline]
pub(crate) fn unlock(word: &impl Word) -> bool {
    let old = word.swap(0, Release);
    if old & WAITERS != 0 {
        word.wake(1);
    }
    old != 0
}

/// The pid holding `word`, if any.
pub(crate) fn holder(word: &impl Word) -> Option<i32> {
    match word.load(Relaxed) & PID_MASK {
        0 => None,
        pid => Some(pid as i32),
    }
}

// ---- sequence waits -----------------------------------------------------------------------

/// Outcome of [`wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    /// `abandon` said, after a sleep slice, that the wait cannot end (a peer died).
    Abandon,
}

/// Wakes the sleepers on `seq`, if any. The caller has just changed, with a `SeqCst` store or
/// read-modify-write, what they wait for; a waiter counts itself in `waiters` (`SeqCst`) before
/// it checks that condition. So either this load sees the waiter, or the waiter's check sees
/// the change: with nobody waiting, `seq` is left alone and the waiters' line is only read.
#[inline]
pub(crate) fn notify(seq: &impl Word, waiters: &impl Word) {
    if waiters.load(SeqCst) != 0 {
        notify_slow(seq);
    }
}

#[cold]
fn notify_slow(seq: &impl Word) {
    seq.fetch_add(1, SeqCst);
    seq.wake_all();
}

/// Waits until `ready()`: spins as `spinner` allows, then sleeps on `seq` in slices of
/// [`SLICE`], asking `abandon` after each slice that passed without a wake whether to give up.
#[inline]
pub(crate) fn wait_for(
    spinner: &Spinner,
    seq: &impl Word,
    waiters: &impl Word,
    ready: impl Fn() -> bool,
    deadline: Option<Instant>,
    abandon: impl FnMut() -> bool,
) -> Waited {
    if ready() {
        return Waited::Ready;
    }
    wait_for_slow(spinner, seq, waiters, ready, deadline, abandon)
}

#[cold]
fn wait_for_slow(
    spinner: &Spinner,
    seq: &impl Word,
    waiters: &impl Word,
    ready: impl Fn() -> bool,
    deadline: Option<Instant>,
    mut abandon: impl FnMut() -> bool,
) -> Waited {
    if spinner.spin(&ready, unknown_peer) {
        return Waited::Ready;
    }
    loop {
        let seen = seq.load(SeqCst);
        waiters.fetch_add(1, SeqCst);
        if ready() {
            waiters.fetch_sub(1, SeqCst);
            return Waited::Ready;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            waiters.fetch_sub(1, SeqCst);
            return Waited::TimedOut;
        }
        let slice = now + SLICE;
        let until = deadline.map_or(slice, |d| d.min(slice));
        let r = seq.sleep(seen, Some(until));
        waiters.fetch_sub(1, SeqCst);
        if ready() {
            return Waited::Ready;
        }
        if matches!(r, Ok(futex::Wait::TimedOut)) && abandon() {
            return Waited::Abandon;
        }
    }
}

// ---- parking on a flag word ----------------------------------------------------------------

/// A flag word's value while its one waiter sleeps on it in [`park`] (0 and 1 are the
/// owner's own states, e.g. "asleep elsewhere" and "running").
pub(crate) const PARKED: u32 = 2;

/// Sleeps on `flag` until `ready()`, a wake from [`unpark`], or `until`. The flag says
/// [`PARKED`] while the waiter sleeps, then `awake`. Whether `ready()` held on return.
///
/// The waker makes its change (a `SeqCst` store) before it reads the flag, and the waiter
/// parks (a `SeqCst` store) before it checks `ready`: so either the waiter sees the change or
/// the waker sees it parked. The waker moves the flag off [`PARKED`] before it wakes, so a
/// waiter that has not reached its futex wait yet does not sleep on the old value; a return
/// from the futex with the flag still [`PARKED`] (a signal, a spurious wake) sleeps again.
pub(crate) fn park(flag: &impl Word, awake: u32, ready: impl Fn() -> bool, until: Instant) -> bool {
    flag.store(PARKED, SeqCst);
    while !ready() && flag.load(SeqCst) == PARKED {
        if !matches!(flag.sleep(PARKED, Some(until)), Ok(futex::Wait::Retry)) {
            break;
        }
    }
    flag.store(awake, SeqCst);
    ready()
}

/// Wakes the waiter parked on `flag`, if any, leaving the flag at `then`. `None` if the flag
/// was not [`PARKED`]; else how many sleepers the futex woke (0 when the waiter had parked but
/// not yet gone to sleep, or died parked: the caller may want to check on it).
#[inline]
pub(crate) fn unpark(flag: &impl Word, then: u32) -> Option<usize> {
    if flag.load(SeqCst) != PARKED {
        return None;
    }
    unpark_slow(flag, then)
}

#[cold]
fn unpark_slow(flag: &impl Word, then: u32) -> Option<usize> {
    flag.compare_exchange(PARKED, then, SeqCst, SeqCst).ok()?;
    Some(flag.wake_all())
}

/// How long a waiter parked on a flag sleeps before it checks that its peer is still there.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    //! The wait core between threads of one process (its compare-and-swaps do not care who
    //! asks). Run under Miri with
    //! `MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test --lib sync::wait`.
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A pid no process has (pid_max is at most 2^22).
    const DEAD: u32 = (1 << 22) - 1;

    #[test]
    fn uncontended_lock_and_unlock() {
        let w = AtomicU32::new(0);
        assert_eq!(lock(&w, None), Acquired::Yes);
        assert_eq!(holder(&w), Some(sys::getpid()));
        assert_eq!(try_lock(&w), Acquired::TimedOut, "held: a failed try leaves it held");
        assert_eq!(holder(&w), Some(sys::getpid()));
        assert!(unlock(&w));
        assert!(!unlock(&w));
        assert_eq!(try_lock(&w), Acquired::Yes);
    }

    #[test]
    fn a_lock_deadline_is_honoured() {
        let w = AtomicU32::new(0);
        lock(&w, None);
        let t = Instant::now();
        assert_eq!(lock(&w, Some(t + Duration::from_millis(30))), Acquired::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(holder(&w), Some(sys::getpid()), "still ours");
    }

    #[test]
    fn a_dead_holder_is_taken_over_by_lock_and_try_lock() {
        let w = AtomicU32::new(DEAD | WAITERS);
        let t = Instant::now();
        assert_eq!(lock(&w, Some(t + Duration::from_secs(5))), Acquired::FromDead(DEAD as i32));
        assert!(t.elapsed() < Duration::from_secs(1), "within a slice or so: {:?}", t.elapsed());
        assert_eq!(holder(&w), Some(sys::getpid()));
        w.store(DEAD, SeqCst);
        assert_eq!(try_lock(&w), Acquired::FromDead(DEAD as i32));
        assert_eq!(holder(&w), Some(sys::getpid()));
    }

    #[test]
    fn threads_exclude_each_other_and_no_wake_up_is_lost() {
        // Sleepers, spinners and releases racing. A lost wake-up would leave a sleeper asleep
        // until its slice ends: the time bound below catches that happening more than rarely.
        const ROUNDS: u64 = if cfg!(miri) { 50 } else { 20_000 };
        const THREADS: u64 = if cfg!(miri) { 3 } else { 8 };
        let w = AtomicU32::new(0);
        let counter = AtomicU64::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for i in 0..ROUNDS {
                        assert_eq!(lock(&w, None), Acquired::Yes);
                        let v = counter.load(Relaxed);
                        if i % 64 == 0 {
                            std::thread::yield_now(); // make others sleep on the word
                        }
                        counter.store(v + 1, Relaxed);
                        assert!(unlock(&w));
                    }
                });
            }
        });
        assert_eq!(counter.load(Relaxed), THREADS * ROUNDS);
        assert_eq!(w.load(SeqCst), 0);
        if !cfg!(miri) {
            assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
        }
    }

    #[test]
    fn sequence_waits_see_every_change_and_time_out() {
        // One side bumps a counter and notifies; many waiters each wait for the next value. A
        // wake-up lost between a waiter's check and its sleep would stall it until its slice
        // ends: the time bound below catches that.
        let n: u64 = if cfg!(miri) { 20 } else { 5_000 };
        let (seq, waiters, value) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU64::new(0));
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut want = 1;
                    while want <= n {
                        let ready = || value.load(SeqCst) >= want;
                        assert_eq!(wait_for(&RING, &seq, &waiters, ready, None, || false), Waited::Ready);
                        want = value.load(SeqCst) + 1;
                    }
                });
            }
            for _ in 0..n {
                value.fetch_add(1, SeqCst);
                notify(&seq, &waiters);
                if !cfg!(miri) {
                    std::thread::yield_now();
                }
            }
        });
        if !cfg!(miri) {
            // Without lost wake-ups this takes milliseconds; each lost one costs a 10 ms slice.
            assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        }
        let never = || false;
        let t = Instant::now();
        let d = Some(t + Duration::from_millis(25));
        assert_eq!(wait_for(&RING, &seq, &waiters, never, d, || false), Waited::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(25));
        assert_eq!(waiters.load(SeqCst), 0, "waiters counted out again");
        let d = Some(Instant::now() + Duration::from_secs(5));
        assert_eq!(wait_for(&RING, &seq, &waiters, never, d, || true), Waited::Abandon);
    }

    #[test]
    fn a_parked_waiter_never_misses_its_wake_up() {
        // A ping-pong through two flag words: each side parks until the other's counter moves.
        // A lost wake-up would leave a side asleep until its (long) deadline: the bound catches it.
        let n: u64 = if cfg!(miri) { 20 } else { 20_000 };
        let (flags, counters) =
            ([AtomicU32::new(1), AtomicU32::new(1)], [AtomicU64::new(0), AtomicU64::new(0)]);
        let t = Instant::now();
        std::thread::scope(|s| {
            for side in 0..2 {
                let (flags, counters) = (&flags, &counters);
                s.spawn(move || {
                    let other = 1 - side;
                    for i in 0..n {
                        if side == 1 || i > 0 {
                            // Side 1 waits for side 0's turn i, side 0 for side 1's turn i - 1.
                            let want = if side == 1 { i + 1 } else { i };
                            let ready = || counters[other].load(SeqCst) >= want;
                            while !park(&flags[side], 1, ready, Instant::now() + Duration::from_secs(30)) {}
                        }
                        counters[side].store(i + 1, SeqCst);
                        unpark(&flags[other], 0);
                    }
                });
            }
        });
        assert_eq!(counters[0].load(SeqCst), n);
        assert_eq!(counters[1].load(SeqCst), n);
        if !cfg!(miri) {
            assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
        }
        // Not parked: nothing to wake, the flag left alone.
        let f = AtomicU32::new(1);
        assert_eq!(unpark(&f, 0), None);
        assert_eq!(f.load(SeqCst), 1);
        let t = Instant::now();
        assert!(!park(&f, 1, || false, t + Duration::from_millis(20)));
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(f.load(SeqCst), 1, "awake again");
    }

    #[test]
    #[cfg_attr(miri, ignore = "signals")]
    fn a_signal_does_not_end_a_park_before_its_deadline() {
        extern "C" fn nothing(_: libc::c_int) {}
        // SAFETY: a handler that does nothing, installed without SA_RESTART so that the futex
        // wait returns EINTR; a zeroed sigaction is a valid empty mask and flags.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let flag = std::sync::Arc::new(AtomicU32::new(1));
        let f = flag.clone();
        let slice = Duration::from_millis(300);
        let parked = std::thread::spawn(move || {
            let t = Instant::now();
            let ready = park(&*f, 1, || false, t + slice);
            (ready, t.elapsed())
        });
        use std::os::unix::thread::JoinHandleExt;
        let thread = parked.as_pthread_t();
        let mut signals = 0;
        while !parked.is_finished() {
            if flag.load(SeqCst) == PARKED {
                // SAFETY: the thread is alive (not finished, and joined only below).
                unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
                signals += 1;
            }
            std::thread::yield_now();
        }
        let (ready, took) = parked.join().unwrap();
        assert!(!ready);
        assert!(signals > 0, "the waiter was never seen parked");
        assert!(took >= slice, "{signals} signals ended the park after {took:?}, before its {slice:?}");
        assert_eq!(flag.load(SeqCst), 1, "awake again");
    }

    #[test]
    fn the_spin_budget_adapts_and_stays_capped() {
        let s = Spinner::new();
        // Spins that keep failing shrink the spin to a probe, with a full spin now and then.
        for _ in 0..64 {
            s.spun(SPIN_CAP, None);
        }
        assert!(s.hits.load(Relaxed) < 64);
        let budgets: Vec<_> = (0..PROBE_EVERY).map(|_| s.adaptive()).collect();
        assert_eq!(budgets.iter().filter(|b| **b == PROBE).count(), PROBE_EVERY as usize - 1);
        assert!(budgets.iter().all(|b| *b <= SPIN_CAP));
        if !may_spin() {
            assert_eq!(s.budget(), Duration::ZERO, "one usable CPU: never spin");
        }
        // Spins that succeed quickly bring it back, sized to what they needed.
        for _ in 0..64 {
            s.spun(SPIN_CAP, Some(Duration::from_nanos(500)));
        }
        assert!(s.hits.load(Relaxed) >= 64);
        assert!(s.avg_ns.load(Relaxed) < 2_000, "{}", s.avg_ns.load(Relaxed));
        assert_eq!(s.adaptive(), SPIN_FLOOR, "short waits: the shortest full spin");
        // Long successful spins lengthen it, up to the cap.
        for _ in 0..64 {
            s.spun(SPIN_CAP, Some(Duration::from_micros(40)));
        }
        assert_eq!(s.adaptive(), SPIN_CAP);
    }

    #[test]
    fn spinning_stops_when_the_peer_sleeps() {
        let s = Spinner::new();
        // A spin of the longest budget, cut short: far quicker than the budget on any machine
        // that runs the check within a second.
        let t = Instant::now();
        assert!(!s.spin_for(Duration::from_secs(5), || false, || false));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(s.spin_for(Duration::from_secs(5), || true, || false));
        let mut n = 0;
        assert!(
            s.spin_for(
                Duration::from_secs(5),
                || {
                    n += 1;
                    n > 100
                },
                || true
            ),
            "spins on while the peer runs"
        );
    }

    #[test]
    fn one_slow_yield_keeps_yields_on_and_two_in_a_row_turn_them_off() {
        let s = Spinner::new();
        // `ready` runs inside the timed yield, so a slow one stands for a yield that gave the
        // CPU away for longer than the peer's turn.
        let slow = || {
            std::thread::sleep(YIELD_PAID * 3);
            false
        };
        let quiet = |s: &Spinner| sys::monotonic_ns() < s.quiet_until.load(Relaxed);
        assert!(!s.yield_once(slow));
        assert!(!quiet(&s), "one slow yield (an interrupt, a kernel thread) turned yields off");
        // A quick yield, counted as one: how long a real one takes depends on the machine's load.
        s.note_yield(sys::monotonic_ns(), 0);
        assert!(!s.yield_once(slow));
        assert!(!quiet(&s), "a quick yield between two slow ones starts the count again");
        assert!(!s.yield_once(slow));
        assert!(quiet(&s), "two slow yields in a row turn yields off");
        // While they are off, a wait does not yield (nor look at `ready`).
        assert!(!s.yield_once(|| true));
    }

    #[test]
    fn the_run_queue_is_read() {
        if !cfg!(miri) {
            // This thread is running, so at least one task is.
            assert!(run_queue().is_some_and(|n| n >= 1));
        }
        let _ = oversubscribed();
    }

    #[test]
    fn cgroup_quota_files_parse() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("garbage"), None);
        let n = usable_cpus();
        assert!(n >= 1 && n <= sys::cpu_count().max(1), "{n}");
    }
}
