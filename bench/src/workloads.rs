//! This library on the benchmark workloads (same definitions as `python/anchor.py`). Each takes
//! its operation count and returns what its timed region measured; setup (pools, managers,
//! children that serve the timed loop) stays outside the region.

use crate::host::{rss_kib, Meter, Sample};
use multiproc::{Barrier, Bytes, Connection, Pipe, Pool, Process, Queue, StartMethod};
use std::collections::VecDeque;
use std::time::Instant;

fn nothing() {}

pub fn square(x: u64) -> u64 {
    x * x
}

fn blob_len(b: Bytes) -> u64 {
    b.0.len() as u64
}

/// Burns `us` microseconds of this thread's CPU time (the same work on both sides, whatever
/// the language's speed).
pub fn burn(us: u64) -> u64 {
    let now = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime fills the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    };
    let end = now() + us * 1000;
    let mut spins = 0;
    while now() < end {
        spins += 1;
    }
    spins
}

/// Start + join of a child that does nothing; per process.
pub fn spawn_join(method: StartMethod, n: usize) -> Sample {
    Process::builder(nothing, ()).start_method(method).start().unwrap().join().unwrap();
    let m = Meter::start();
    for _ in 0..n {
        let p = Process::builder(nothing, ()).start_method(method).start().unwrap();
        assert!(p.join().unwrap().success());
    }
    m.stop(n as f64)
}

/// Stops at `u64::MAX`: under fork the child may hold a copy of the parent's end as well, so
/// end-of-file alone would not end it.
fn echo(conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if v == u64::MAX || conn.send(&v).is_err() {
            break;
        }
    }
}

/// A duplex pipe to an echo child; the round trip closure and the child to join.
fn echo_child() -> (Connection, Process) {
    let (a, b) = Pipe::duplex().unwrap();
    let p = Process::new(echo, (b,)).start().unwrap();
    for i in 0..100u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
    }
    (a, p)
}

/// Ping-pong of an 8-byte item over a duplex pipe; per round trip.
pub fn pipe_roundtrip(n: usize) -> Sample {
    let (a, p) = echo_child();
    let m = Meter::start();
    for i in 0..n as u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
    }
    let s = m.stop(n as f64);
    a.send(&u64::MAX).unwrap();
    p.join().unwrap();
    s
}

/// Latency samples (ns) of the pipe round trip, paced or closed loop.
pub fn pipe_latency(interval_ns: u64, n: usize) -> Vec<u64> {
    let (a, p) = echo_child();
    let mut i = 0u64;
    let out = crate::latency::run(interval_ns, n, || {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
        i += 1;
    });
    a.send(&u64::MAX).unwrap();
    p.join().unwrap();
    out
}

fn warm_pool(workers: usize) -> Pool {
    let pool = Pool::new(workers).unwrap();
    pool.map(square, 0..100u64).get().unwrap();
    pool
}

/// `Pool(2).map(square, range(n))`, default chunk size; per task.
pub fn pool_map_tiny(n: usize) -> Sample {
    let pool = warm_pool(2);
    let m = Meter::start();
    let out = pool.map(square, 0..n as u64).get().unwrap();
    let s = m.stop(n as f64);
    assert_eq!(out[n - 1], ((n - 1) * (n - 1)) as u64);
    s
}

/// `Pool(2).apply_async(square)` n times, then `get()` each; per task.
pub fn pool_apply_async(n: usize) -> Sample {
    let pool = warm_pool(2);
    let m = Meter::start();
    let results: Vec<_> = (0..n as u64).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    m.stop(n as f64)
}

/// `Pool(2).apply(square, (i,))` one at a time (`apply_async(..).get()`); per task.
pub fn apply_get_one(n: usize) -> Sample {
    let pool = warm_pool(2);
    let m = Meter::start();
    for i in 0..n as u64 {
        assert_eq!(pool.apply(square, (i,)).unwrap(), i * i);
    }
    m.stop(n as f64)
}

pub fn apply_get_latency(interval_ns: u64, n: usize) -> Vec<u64> {
    let pool = warm_pool(2);
    let mut i = 0u64;
    crate::latency::run(interval_ns, n, || {
        assert_eq!(pool.apply(square, (i,)).unwrap(), i * i);
        i += 1;
    })
}

pub const TEN_MB: usize = 10_000_000;

/// `Pool(2).apply_async(len, (blob,))` with a 10 MB byte string, at most 4 tasks in flight; per
/// task. The clone of the blob per task is part of the figure: it is what a caller writes.
pub fn pool_10mb_arg(n: usize) -> Sample {
    let pool = warm_pool(2);
    let blob = Bytes(vec![b'x'; TEN_MB]);
    let m = Meter::start();
    let mut inflight = VecDeque::new();
    for _ in 0..n {
        if inflight.len() == 4 {
            let r: multiproc::AsyncResult<u64> = inflight.pop_front().unwrap();
            assert_eq!(r.get().unwrap(), TEN_MB as u64);
        }
        inflight.push_back(pool.apply_async(blob_len, (blob.clone(),)).unwrap());
    }
    for r in inflight {
        assert_eq!(r.get().unwrap(), TEN_MB as u64);
    }
    m.stop(n as f64)
}

/// Microseconds of CPU each pool-scaling task burns.
pub const BURN_US: u64 = 200;

/// `Pool(workers).map(burn, [200 us] * n)`, default chunk size; per task.
pub fn pool_scaling(workers: usize, n: usize) -> Sample {
    let pool = warm_pool(workers);
    let m = Meter::start();
    let out = pool.map(burn, vec![BURN_US; n]).get().unwrap();
    let s = m.stop(n as f64);
    assert_eq!(out.len(), n);
    s
}

/// Lock acquire + release in one process; per operation.
pub fn lock_uncontended(n: usize) -> Sample {
    let lock = multiproc::Lock::new().unwrap();
    let m = Meter::start();
    for _ in 0..n {
        drop(lock.acquire().unwrap());
    }
    m.stop(n as f64)
}

fn increment(v: multiproc::Value<i64>, b: Barrier, n: usize) {
    b.wait().unwrap();
    for _ in 0..n {
        v.with_lock(|x| *x += 1);
    }
    b.wait().unwrap();
}

/// Two processes each add 1 to a shared `Value` n/2 times under its lock, released together by a
/// barrier; timed from the barrier's release to the barrier after the last increment.
pub fn value_increment(n: usize) -> Sample {
    let per = n.div_ceil(2);
    let v = multiproc::Value::new(0i64).unwrap();
    let b = Barrier::new(3).unwrap();
    let ps: Vec<Process> =
        (0..2).map(|_| Process::new(increment, (v.clone(), b.clone(), per)).start().unwrap()).collect();
    let cpu0 = crate::host::tree_cpu_secs();
    b.wait().unwrap();
    let t = Instant::now();
    b.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu = crate::host::tree_cpu_secs() - cpu0;
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(v.get(), 2 * per as i64);
    Sample { secs, ops: 2.0 * per as f64, cpu }
}

fn produce_small(q: Queue<u64>, n: usize) {
    for i in 0..n as u64 {
        q.put(i).unwrap();
    }
}

/// One producer process puts n 8-byte integers, the parent gets them; the clock starts before
/// the child does. Per item.
pub fn queue_small(n: usize) -> Sample {
    let q = Queue::new().unwrap();
    let m = Meter::start();
    let p = Process::new(produce_small, (q.clone(), n)).start().unwrap();
    for i in 0..n as u64 {
        assert_eq!(q.get().unwrap(), i);
    }
    p.join().unwrap();
    m.stop(n as f64)
}

fn produce_big(q: Queue<Bytes>, n: usize) {
    let blob = Bytes(vec![b'x'; 1 << 20]);
    for _ in 0..n {
        q.put_ref(&blob).unwrap();
    }
}

/// One producer process puts the same 1 MiB byte string n times (by reference, as CPython
/// pickles the same object and ipc-channel sends the same slice), the parent gets them; per
/// MiB.
pub fn queue_1mb(n: usize) -> Sample {
    let q = Queue::new().unwrap();
    let m = Meter::start();
    let p = Process::new(produce_big, (q.clone(), n)).start().unwrap();
    for _ in 0..n {
        assert_eq!(q.get().unwrap().0.len(), 1 << 20);
    }
    p.join().unwrap();
    m.stop(n as f64)
}

pub const PRODUCERS: usize = 8;

fn produce_after_barrier(q: Queue<u64>, b: Barrier, n: usize) {
    b.wait().unwrap();
    for i in 0..n as u64 {
        q.put(i).unwrap();
    }
}

/// 8 producer processes, released together by a barrier, put n/8 integers each; the parent gets
/// all; timed from the release to the last get. Per item.
pub fn queue_8to1(n: usize) -> Sample {
    let per = n.div_ceil(PRODUCERS);
    let q = Queue::new().unwrap();
    let b = Barrier::new(PRODUCERS as u32 + 1).unwrap();
    let ps: Vec<Process> = (0..PRODUCERS)
        .map(|_| Process::new(produce_after_barrier, (q.clone(), b.clone(), per)).start().unwrap())
        .collect();
    let cpu0 = crate::host::tree_cpu_secs();
    b.wait().unwrap();
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..per * PRODUCERS {
        sum += q.get().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = crate::host::tree_cpu_secs() - cpu0;
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(sum, PRODUCERS as u64 * (per as u64 * (per as u64).saturating_sub(1) / 2));
    Sample { secs, ops: (per * PRODUCERS) as f64, cpu }
}

/// `ListProxy::append` from the parent to a manager's list; per operation.
pub fn manager_list_append(n: usize) -> Sample {
    let manager = multiproc::Manager::start().unwrap();
    let l = manager.list::<u64>([]).unwrap();
    for i in 0..100 {
        l.append(i).unwrap();
    }
    let m = Meter::start();
    for i in 0..n as u64 {
        l.append(i).unwrap();
    }
    let s = m.stop(n as f64);
    assert_eq!(l.len().unwrap(), 100 + n);
    s
}

pub fn manager_latency(interval_ns: u64, n: usize) -> Vec<u64> {
    let manager = multiproc::Manager::start().unwrap();
    let l = manager.list::<u64>([]).unwrap();
    for i in 0..100 {
        l.append(i).unwrap();
    }
    let mut i = 0u64;
    crate::latency::run(interval_ns, n, || {
        l.append(i).unwrap();
        i += 1;
    })
}

pub const CLIENTS: usize = 4;

fn dict_client(d: multiproc::manager::DictProxy<u64, u64>, b: Barrier, id: u64, n: usize) {
    b.wait().unwrap();
    for i in 0..n as u64 {
        d.insert(id * 1000 + i % 100, i).unwrap();
    }
    b.wait().unwrap();
}

/// 4 client processes, released together by a barrier, each set n/4 keys of one manager dict;
/// timed from the release to the barrier after the last set. Per operation.
pub fn manager_dict_4clients(n: usize) -> Sample {
    let per = n.div_ceil(CLIENTS);
    let manager = multiproc::Manager::start().unwrap();
    let d = manager.dict::<u64, u64>().unwrap();
    let b = Barrier::new(CLIENTS as u32 + 1).unwrap();
    let ps: Vec<Process> = (0..CLIENTS as u64)
        .map(|id| Process::new(dict_client, (d.clone(), b.clone(), id, per)).start().unwrap())
        .collect();
    let cpu0 = crate::host::tree_cpu_secs();
    b.wait().unwrap();
    let t = Instant::now();
    b.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu = crate::host::tree_cpu_secs() - cpu0;
    for p in ps {
        assert!(p.join().unwrap().success());
    }
    assert_eq!(d.len().unwrap(), CLIENTS * per.min(100));
    Sample { secs, ops: (per * CLIENTS) as f64, cpu }
}

fn idle(conn: Connection) {
    conn.send(&1u8).unwrap();
    let _ = conn.recv::<u8>();
}

/// Resident memory (KiB) of an idle child started by the pinned start method, waiting on a pipe.
pub fn rss_idle_worker() -> f64 {
    let (a, b) = Pipe::duplex().unwrap();
    let p = Process::new(idle, (b,)).start().unwrap();
    assert_eq!(a.recv::<u8>().unwrap(), 1);
    let rss = rss_kib(p.pid().unwrap()).unwrap_or(f64::NAN);
    a.send(&0u8).unwrap();
    p.join().unwrap();
    rss
}
