#!/usr/bin/env python3
"""CPython's multiprocessing on the benchmark workloads of the `multiprocessing` crate.

Each workload prints one line:  name <TAB> value <TAB> unit
The definitions match bench/src/workloads.rs:
  spawn_join_<method>   start + join of a child that does nothing; per process, microseconds
  queue_small           1 producer process -> parent, 8-byte int items; items/second
  queue_1mb             1 producer process -> parent, 1 MiB bytes items; MiB/second
  pipe_roundtrip        ping-pong of an 8-byte item over a duplex Pipe; round trips/second
  pool_map_tiny         Pool(2).map(square, range(N)) default chunksize; tasks/second
  pool_apply_async      Pool(2).apply_async(square) x N then get(); tasks/second
  manager_list_append   ListProxy.append from the parent; ops/second
  lock_uncontended      Lock acquire+release in one process; ops/second
  value_increment       2 processes x N increments of Value('q') under its lock; increments/second
Usage: python3 anchor.py [--quick] [--only name,name]
"""
import multiprocessing as mp
import sys
import time

QUICK = "--quick" in sys.argv
ONLY = None
if "--only" in sys.argv:
    ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(","))


def wanted(name):
    return ONLY is None or name in ONLY


def nothing():
    pass


def square(x):
    return x * x


def producer_small(q, n):
    for i in range(n):
        q.put(i)


def producer_big(q, n, size):
    blob = b"x" * size
    for _ in range(n):
        q.put(blob)


def echo(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def incr(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def report(name, value, unit):
    print(f"{name}\t{value:.1f}\t{unit}", flush=True)


def bench_spawn(method, n):
    ctx = mp.get_context(method)
    p = ctx.Process(target=nothing)
    p.start(); p.join()
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
    report(f"spawn_join_{method}", (time.perf_counter() - t) / n * 1e6, "us/process")


def main():
    n = 20000 if QUICK else 200000
    for method, k in (("fork", 200), ("forkserver", 100), ("spawn", 20)):
        if wanted(f"spawn_join_{method}"):
            bench_spawn(method, k if not QUICK else max(5, k // 10))

    if wanted("queue_small"):
        q = mp.Queue()
        p = mp.Process(target=producer_small, args=(q, n))
        t = time.perf_counter(); p.start()
        for _ in range(n):
            q.get()
        p.join()
        report("queue_small", n / (time.perf_counter() - t), "items/s")

    if wanted("queue_1mb"):
        big, size = (100 if QUICK else 1000), 1 << 20
        q = mp.Queue()
        p = mp.Process(target=producer_big, args=(q, big, size))
        t = time.perf_counter(); p.start()
        for _ in range(big):
            q.get()
        p.join()
        report("queue_1mb", big * size / (1 << 20) / (time.perf_counter() - t), "MiB/s")

    if wanted("pipe_roundtrip"):
        rt = n // 4
        a, b = mp.Pipe()
        p = mp.Process(target=echo, args=(b, rt)); p.start()
        t = time.perf_counter()
        for i in range(rt):
            a.send(i); a.recv()
        report("pipe_roundtrip", rt / (time.perf_counter() - t), "roundtrips/s")
        p.join()

    if wanted("pool_map_tiny") or wanted("pool_apply_async"):
        with mp.Pool(2) as pool:
            pool.map(square, range(100))
            if wanted("pool_map_tiny"):
                t = time.perf_counter()
                pool.map(square, range(n))
                report("pool_map_tiny", n / (time.perf_counter() - t), "tasks/s")
            if wanted("pool_apply_async"):
                k = n // 10
                t = time.perf_counter()
                rs = [pool.apply_async(square, (i,)) for i in range(k)]
                for r in rs:
                    r.get()
                report("pool_apply_async", k / (time.perf_counter() - t), "tasks/s")

    if wanted("manager_list_append"):
        with mp.Manager() as m:
            lst = m.list()
            k = n // 10
            t = time.perf_counter()
            for i in range(k):
                lst.append(i)
            report("manager_list_append", k / (time.perf_counter() - t), "ops/s")

    if wanted("lock_uncontended"):
        lock = mp.Lock()
        t = time.perf_counter()
        for _ in range(n * 5):
            lock.acquire(); lock.release()
        report("lock_uncontended", n * 5 / (time.perf_counter() - t), "ops/s")

    if wanted("value_increment"):
        v = mp.Value("q", 0)
        k = n // 4
        ps = [mp.Process(target=incr, args=(v, k)) for _ in range(2)]
        t = time.perf_counter()
        for p in ps: p.start()
        for p in ps: p.join()
        assert v.value == 2 * k
        report("value_increment", 2 * k / (time.perf_counter() - t), "increments/s")


if __name__ == "__main__":
    main()
