//! This library on the benchmark workloads (definitions in `python/anchor.py`).

use multiprocessing::{Connection, Pipe, Pool, Process, StartMethod};
use std::time::Instant;

fn nothing() {}

fn square(x: u64) -> u64 {
    x * x
}

/// Start + join of a child that does nothing, microseconds per process.
pub fn spawn_join(method: StartMethod, n: usize) -> f64 {
    Process::new(nothing, ()).start_method(method).start().unwrap().join().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let p = Process::new(nothing, ()).start_method(method).start().unwrap();
        assert!(p.join().unwrap().success());
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e6
}

fn echo(conn: Connection, n: usize) {
    for _ in 0..n {
        let v: u64 = conn.recv().unwrap();
        conn.send(&v).unwrap();
    }
}

/// Ping-pong of an 8-byte item over a duplex pipe, round trips per second.
pub fn pipe_roundtrip(n: usize) -> f64 {
    let (a, b) = Pipe::new(true).unwrap();
    let p = Process::new(echo, (b, n)).start().unwrap();
    let t = Instant::now();
    for i in 0..n as u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    p.join().unwrap();
    rate
}

/// `Pool(2).map(square, range(n))` with the default chunk size, tasks per second.
pub fn pool_map_tiny(n: usize) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.map(square, 0..100u64).unwrap();
    let t = Instant::now();
    let out = pool.map(square, 0..n as u64).unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(out[n - 1], ((n - 1) * (n - 1)) as u64);
    rate
}

/// `Pool(2).apply_async(square)` n times, then `get()` each, tasks per second.
pub fn pool_apply_async(n: usize) -> f64 {
    let pool = Pool::new(2).unwrap();
    pool.map(square, 0..100u64).unwrap();
    let t = Instant::now();
    let results: Vec<_> = (0..n as u64).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Lock acquire + release in one process, operations per second.
pub fn lock_uncontended(n: usize) -> f64 {
    let lock = multiprocessing::Lock::new().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        drop(lock.acquire().unwrap());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn increment(v: multiprocessing::Value<i64>, n: usize) {
    for _ in 0..n {
        v.with_lock(|x| *x += 1);
    }
}

/// Two processes each add 1 to a shared `Value` n times under its lock, increments per second.
pub fn value_increment(n: usize) -> f64 {
    let v = multiprocessing::Value::new(0i64).unwrap();
    let t = Instant::now();
    let ps: Vec<Process> = (0..2).map(|_| Process::new(increment, (v.clone(), n)).start().unwrap()).collect();
    for p in ps {
        p.join().unwrap();
    }
    let rate = 2.0 * n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(v.get(), 2 * n as i64);
    rate
}

fn produce_small(q: multiprocessing::Queue<u64>, n: usize) {
    for i in 0..n as u64 {
        q.put(i).unwrap();
    }
}

/// One producer process puts n 8-byte integers; the parent gets them, items per second.
pub fn queue_small(n: usize) -> f64 {
    let q = multiprocessing::Queue::new().unwrap();
    let t = Instant::now();
    let p = Process::new(produce_small, (q.clone(), n)).start().unwrap();
    for i in 0..n as u64 {
        assert_eq!(q.get().unwrap(), i);
    }
    p.join().unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

fn produce_big(q: multiprocessing::Queue<multiprocessing::Bytes>, n: usize) {
    let blob = multiprocessing::Bytes(vec![b'x'; 1 << 20]);
    for _ in 0..n {
        q.put(blob.clone()).unwrap();
    }
}

/// One producer process puts n 1 MiB byte strings; the parent gets them, MiB per second.
pub fn queue_1mb(n: usize) -> f64 {
    let q = multiprocessing::Queue::new().unwrap();
    let t = Instant::now();
    let p = Process::new(produce_big, (q.clone(), n)).start().unwrap();
    for _ in 0..n {
        assert_eq!(q.get().unwrap().0.len(), 1 << 20);
    }
    p.join().unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

/// `ListProxy::append` from the parent to a manager's list, operations per second.
pub fn manager_list_append(n: usize) -> f64 {
    let manager = multiprocessing::Manager::start().unwrap();
    let l = manager.list::<u64>([]).unwrap();
    for i in 0..100 {
        l.append(i).unwrap(); // warm up, as the CPython script's manager is already connected
    }
    let t = Instant::now();
    for i in 0..n as u64 {
        l.append(i).unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(l.len().unwrap(), 100 + n);
    rate
}
