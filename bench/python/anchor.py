#!/usr/bin/env python3
"""CPython's multiprocessing on the benchmark workloads of the `multiprocessing` crate.

The definitions match bench/src/workloads.rs (each returns the timed region's seconds, its
operation count and the CPU seconds of this process tree in it):
  spawn_join_<method>    start + join of a child that does nothing; per process
  queue_small            1 producer process -> parent, int items
  queue_1mb              1 producer process -> parent, 1 MiB bytes items (ops = MiB)
  queue_8to1             8 producers released by a Barrier -> parent, int items
  pipe_roundtrip         ping-pong of an int over a duplex Pipe
  pool_map_tiny          Pool(2).map(square, range(N)), default chunksize
  pool_apply_async       Pool(2).apply_async(square) x N, then get() each
  apply_get_one          Pool(2).apply(square, (i,)) one at a time
  pool_10mb_arg          Pool(2).apply_async(len, (10 MB bytes,)), at most 4 in flight
  pool_scaling_w<K>      Pool(K).map(burn, [200 us] * N): each task burns 200 us of thread CPU time
  manager_list_append    ListProxy.append from the parent
  manager_dict_4clients  4 client processes released by a Barrier set keys of one DictProxy
  lock_uncontended       Lock acquire + release in one process
  value_increment        2 processes released by a Barrier, N/2 increments each of Value('q')
  rss_idle_worker        VmRSS (KiB) of an idle child waiting on a Pipe

The start method of every workload (except spawn_join_<method>) is the one given with --method,
taken through mp.get_context(), never the interpreter's default.

Usage:
  python3 anchor.py --serve --method forkserver [--cpus 0,1]   (driven by the Rust bench)
      stdin:  hello | run NAME N METHOD | lat NAME INTERVAL_NS N METHOD | quit  (tab-separated)
      stdout: ok <TAB> payload   or   err <TAB> message
  python3 anchor.py --method forkserver run NAME N                 (one repetition, by hand)
"""
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback

BURN_US = 200
TEN_MB = 10_000_000
PRODUCERS = 8
CLIENTS = 4
_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu():
    """CPU seconds of this process and its descendants, reaped ones included (see host.rs)."""
    root = os.getpid()
    kids, own = {}, 0
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fl = s[s.rfind(")") + 1:].split()
        if len(fl) < 15:
            continue
        pid, ppid, ticks = int(e), int(fl[1]), sum(int(x) for x in fl[11:15])
        if pid == root:
            own = ticks
        kids.setdefault(ppid, []).append((pid, ticks))
    total, stack = own, [root]
    while stack:
        for c, t in kids.get(stack.pop(), ()):
            total += t
            stack.append(c)
    return total / _TCK


class Meter:
    def __init__(self):
        self.cpu0 = tree_cpu()
        self.t0 = time.perf_counter()

    def stop(self, ops):
        secs = time.perf_counter() - self.t0
        return secs, ops, tree_cpu() - self.cpu0


def nothing():
    pass


def square(x):
    return x * x


def burn(us):
    end = time.thread_time_ns() + us * 1000
    spins = 0
    while time.thread_time_ns() < end:
        spins += 1
    return spins


def producer_small(q, n):
    for i in range(n):
        q.put(i)


def producer_big(q, n, size):
    blob = b"x" * size
    for _ in range(n):
        q.put(blob)


def producer_after_barrier(q, b, n):
    b.wait()
    for i in range(n):
        q.put(i)


def echo(conn):
    # Stops at None: under fork the child holds a copy of the parent's end too, so it would
    # never see end-of-file.
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v)


def incr(v, b, n):
    b.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    b.wait()


def dict_client(d, b, cid, n):
    b.wait()
    for i in range(n):
        d[cid * 1000 + i % 100] = i
    b.wait()


def idle(conn):
    conn.send(1)
    try:
        conn.recv()
    except EOFError:
        pass


def spawn_join(method, n):
    ctx = mp.get_context(method)
    p = ctx.Process(target=nothing)
    p.start(); p.join()
    m = Meter()
    for _ in range(n):
        p = ctx.Process(target=nothing)
        p.start(); p.join()
        assert p.exitcode == 0
    return m.stop(n)


def echo_child(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,)); p.start()
    b.close()
    for i in range(100):
        a.send(i); a.recv()
    return a, p


def pipe_roundtrip(ctx, n):
    a, p = echo_child(ctx)
    m = Meter()
    for i in range(n):
        a.send(i)
        assert a.recv() == i
    r = m.stop(n)
    a.send(None); p.join()
    return r


def warm_pool(ctx, k):
    pool = ctx.Pool(k)
    pool.map(square, range(100))
    return pool


def pool_map_tiny(ctx, n):
    with warm_pool(ctx, 2) as pool:
        m = Meter()
        out = pool.map(square, range(n))
        r = m.stop(n)
        assert out[-1] == (n - 1) ** 2
        return r


def pool_apply_async(ctx, n):
    with warm_pool(ctx, 2) as pool:
        m = Meter()
        rs = [pool.apply_async(square, (i,)) for i in range(n)]
        for i, x in enumerate(rs):
            assert x.get() == i * i
        return m.stop(n)


def apply_get_one(ctx, n):
    with warm_pool(ctx, 2) as pool:
        m = Meter()
        for i in range(n):
            assert pool.apply(square, (i,)) == i * i
        return m.stop(n)


def pool_10mb_arg(ctx, n):
    blob = b"x" * TEN_MB
    with warm_pool(ctx, 2) as pool:
        m = Meter()
        inflight = []
        for _ in range(n):
            if len(inflight) == 4:
                assert inflight.pop(0).get() == TEN_MB
            inflight.append(pool.apply_async(len, (blob,)))
        for x in inflight:
            assert x.get() == TEN_MB
        return m.stop(n)


def pool_scaling(ctx, workers, n):
    with warm_pool(ctx, workers) as pool:
        m = Meter()
        out = pool.map(burn, [BURN_US] * n)
        r = m.stop(n)
        assert len(out) == n
        return r


def lock_uncontended(ctx, n):
    lock = ctx.Lock()
    m = Meter()
    for _ in range(n):
        lock.acquire(); lock.release()
    return m.stop(n)


def value_increment(ctx, n):
    per = (n + 1) // 2
    v = ctx.Value("q", 0)
    b = ctx.Barrier(3)
    ps = [ctx.Process(target=incr, args=(v, b, per)) for _ in range(2)]
    for p in ps: p.start()
    cpu0 = tree_cpu()
    b.wait()
    t = time.perf_counter()
    b.wait()
    secs = time.perf_counter() - t
    cpu = tree_cpu() - cpu0
    for p in ps: p.join()
    assert v.value == 2 * per
    return secs, 2 * per, cpu


def queue_small(ctx, n):
    q = ctx.Queue()
    m = Meter()
    p = ctx.Process(target=producer_small, args=(q, n)); p.start()
    for i in range(n):
        assert q.get() == i
    p.join()
    return m.stop(n)


def queue_1mb(ctx, n):
    q = ctx.Queue()
    m = Meter()
    p = ctx.Process(target=producer_big, args=(q, n, 1 << 20)); p.start()
    for _ in range(n):
        assert len(q.get()) == 1 << 20
    p.join()
    return m.stop(n)


def queue_8to1(ctx, n):
    per = -(-n // PRODUCERS)
    q = ctx.Queue()
    b = ctx.Barrier(PRODUCERS + 1)
    ps = [ctx.Process(target=producer_after_barrier, args=(q, b, per)) for _ in range(PRODUCERS)]
    for p in ps: p.start()
    cpu0 = tree_cpu()
    b.wait()
    t = time.perf_counter()
    total = 0
    for _ in range(per * PRODUCERS):
        total += q.get()
    secs = time.perf_counter() - t
    cpu = tree_cpu() - cpu0
    for p in ps: p.join()
    assert total == PRODUCERS * (per * (per - 1) // 2)
    return secs, per * PRODUCERS, cpu


def manager_list_append(ctx, n):
    with ctx.Manager() as mgr:
        lst = mgr.list()
        for i in range(100):
            lst.append(i)
        m = Meter()
        for i in range(n):
            lst.append(i)
        r = m.stop(n)
        assert len(lst) == 100 + n
        return r


def manager_dict_4clients(ctx, n):
    per = -(-n // CLIENTS)
    with ctx.Manager() as mgr:
        d = mgr.dict()
        b = ctx.Barrier(CLIENTS + 1)
        ps = [ctx.Process(target=dict_client, args=(d, b, c, per)) for c in range(CLIENTS)]
        for p in ps: p.start()
        cpu0 = tree_cpu()
        b.wait()
        t = time.perf_counter()
        b.wait()
        secs = time.perf_counter() - t
        cpu = tree_cpu() - cpu0
        for p in ps:
            p.join()
            assert p.exitcode == 0
        assert len(d) == CLIENTS * min(per, 100)
        return secs, per * CLIENTS, cpu


def rss_idle_worker(ctx, _n):
    a, b = ctx.Pipe()
    p = ctx.Process(target=idle, args=(b,)); p.start()
    assert a.recv() == 1
    with open(f"/proc/{p.pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    a.send(0); p.join()
    return rss, 1, 0.0


WORKLOADS = {
    f.__name__: f
    for f in (pipe_roundtrip, pool_map_tiny, pool_apply_async, apply_get_one, pool_10mb_arg,
              lock_uncontended, value_increment, queue_small, queue_1mb, queue_8to1,
              manager_list_append, manager_dict_4clients, rss_idle_worker)
}


def run(name, n, method):
    if name.startswith("spawn_join_"):
        return spawn_join(name[len("spawn_join_"):], n)
    ctx = mp.get_context(method)
    if name.startswith("pool_scaling_w"):
        return pool_scaling(ctx, int(name[len("pool_scaling_w"):]), n)
    return WORKLOADS[name](ctx, n)


def pace(interval_ns, n, rt):
    """Closed loop (interval 0) or paced from the scheduled send time; see latency.rs."""
    out = []
    clock = time.perf_counter_ns
    start = clock()
    cap = interval_ns * n * 2 + 1_000_000_000 if interval_ns else 5_000_000_000
    for i in range(n):
        if interval_ns == 0:
            t0 = clock()
        else:
            t0 = start + interval_ns * i
            while True:
                left = t0 - clock()
                if left <= 0:
                    break
                if left > 200_000:
                    time.sleep((left - 100_000) / 1e9)
        rt()
        out.append(clock() - t0)
        if clock() - start > cap:
            break
    return out


def latency(name, interval_ns, n, method):
    ctx = mp.get_context(method)
    if name == "pipe_roundtrip":
        a, p = echo_child(ctx)
        try:
            return pace(interval_ns, n, lambda: (a.send(1), a.recv()))
        finally:
            a.send(None); p.join()
    if name == "manager_list_append":
        with ctx.Manager() as mgr:
            lst = mgr.list()
            for i in range(100):
                lst.append(i)
            return pace(interval_ns, n, lambda: lst.append(1))
    if name == "apply_get_one":
        with warm_pool(ctx, 2) as pool:
            return pace(interval_ns, n, lambda: pool.apply(square, (3,)))
    raise KeyError(name)


def banner(method):
    return "\t".join([
        f"CPython {platform.python_version()} ({sys.executable})",
        f"start method {mp.get_context(method).get_start_method()}",
        f"affinity {sorted(os.sched_getaffinity(0))}",
    ])


def serve(method):
    out = sys.stdout
    for line in sys.stdin:
        f = line.rstrip("\n").split("\t")
        try:
            if f[0] == "quit":
                break
            if f[0] == "hello":
                reply = banner(method)
            elif f[0] == "run":
                secs, ops, cpu = run(f[1], int(f[2]), f[3])
                reply = f"{secs:.9f}\t{ops}\t{cpu:.4f}"
            elif f[0] == "lat":
                reply = " ".join(map(str, latency(f[1], int(f[2]), int(f[3]), f[4])))
            else:
                raise ValueError(f"unknown command {f[0]!r}")
            out.write(f"ok\t{reply}\n")
        except Exception as e:  # report and keep serving
            traceback.print_exc(file=sys.stderr)
            out.write(f"err\t{type(e).__name__}: {e}\n".replace("\n", " ").rstrip() + "\n")
        out.flush()


def main():
    argv = sys.argv[1:]
    method = argv[argv.index("--method") + 1] if "--method" in argv else "forkserver"
    if "--cpus" in argv:
        os.sched_setaffinity(0, {int(c) for c in argv[argv.index("--cpus") + 1].split(",")})
    if "--serve" in argv:
        serve(method)
    elif "run" in argv:
        i = argv.index("run")
        secs, ops, cpu = run(argv[i + 1], int(argv[i + 2]), method)
        print(f"{argv[i + 1]}\tsecs {secs:.4f}\tops {ops}\tcpu {cpu:.3f}\t{banner(method)}")
    else:
        print(__doc__)


if __name__ == "__main__":
    main()
