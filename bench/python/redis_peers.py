#!/usr/bin/env python3
"""The Python peers of the bench's Redis rows, on the same Redis server as ours.

  rq_apply_async        RQ: q.enqueue(square, i) x N, then each job's result (2 `rq worker`s,
                        RQ's default Worker, which forks a work horse per job)
  rq_map                RQ: q.enqueue_many(N jobs) in one pipeline, then each result (RQ has no map
                        or chunking)
  celery_apply_async    Celery: square.delay(i) x N, then .get() each (a prefork worker with
                        concurrency 2, Redis broker and Redis result backend)
  celery_map            Celery: square.chunks(zip(range(N)), CHUNK)().get(), CHUNK as ours
                        (N / 8: Python's default chunk size for 2 workers)
  redispy_queue_small   redis-py: one producer process LPUSHes N ints one by one, the parent
                        BRPOPs them one by one

Each returns the timed region's seconds, its operation count and the CPU seconds of this
process tree (its workers included) in it, as anchor.py does. Workers are started on first use
and stopped at `quit`, outside the timed regions.

Usage: python3 redis_peers.py --serve --url redis://127.0.0.1:PORT/0
  stdin:  hello | run NAME N | quit   (tab-separated)   stdout: ok <TAB> payload | err <TAB> why
"""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from anchor import Meter  # noqa: E402  (tree CPU time, as the other rows)

WORKERS = 2
QUEUE = f"bench-peers-{os.getpid()}"


class Peers:
    def __init__(self, url):
        self.url = url
        self.rq_workers = []
        self.celery = None
        self.env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_QUEUE=QUEUE,
                        PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))

    # ---- RQ
    def rq_queue(self):
        import redis
        import rq
        conn = redis.Redis.from_url(self.url)
        q = rq.Queue(QUEUE + "-rq", connection=conn)
        if not self.rq_workers:
            for _ in range(WORKERS):
                self.rq_workers.append(subprocess.Popen(
                    [sys.executable, "-m", "rq.cli", "worker", "--url", self.url, "--quiet",
                     QUEUE + "-rq"], cwd=HERE, env=self.env, stdout=subprocess.DEVNULL))
            self.rq_wait(q, [q.enqueue("redis_tasks.square", i) for i in range(4)])
        return q

    @staticmethod
    def rq_wait(q, jobs):
        for i, job in enumerate(jobs):
            r = job.latest_result(timeout=120)
            if r is None or r.return_value != i * i:
                raise RuntimeError(f"RQ job {i}: {r and r.type} {r and r.return_value}")

    def rq_apply_async(self, n):
        q = self.rq_queue()
        m = Meter()
        jobs = [q.enqueue("redis_tasks.square", i) for i in range(n)]
        self.rq_wait(q, jobs)
        return m.stop(n)

    def rq_map(self, n):
        import rq
        q = self.rq_queue()
        m = rq.Queue.prepare_data
        meter = Meter()
        jobs = q.enqueue_many([m("redis_tasks.square", (i,)) for i in range(n)])
        self.rq_wait(q, jobs)
        return meter.stop(n)

    # ---- Celery
    def celery_task(self):
        os.environ.update(BENCH_REDIS_URL=self.url, BENCH_QUEUE=QUEUE)
        import redis_tasks
        if redis_tasks.app is None:
            raise RuntimeError("celery is not installed")
        if self.celery is None:
            self.celery = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "redis_tasks", "worker", "-c", str(WORKERS),
                 "-P", "prefork", "-Q", QUEUE, "-n", f"{QUEUE}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
                cwd=HERE, env=self.env, stdout=subprocess.DEVNULL)
            if redis_tasks.celery_square.delay(3).get(timeout=120) != 9:
                raise RuntimeError("Celery warm-up task")
        return redis_tasks.celery_square

    def celery_apply_async(self, n):
        square = self.celery_task()
        m = Meter()
        rs = [square.delay(i) for i in range(n)]
        for i, r in enumerate(rs):
            assert r.get(timeout=120) == i * i
        return m.stop(n)

    def celery_map(self, n):
        square = self.celery_task()
        chunk = max(1, -(-n // (4 * WORKERS)))
        m = Meter()
        out = square.chunks(zip(range(n)), chunk)().get(timeout=300)
        s = m.stop(n)
        flat = [x for c in out for x in c]
        assert flat == [i * i for i in range(n)], "celery chunks"
        return s

    # ---- redis-py
    def redispy_queue_small(self, n):
        import redis
        key = f"{QUEUE}-list-{time.monotonic_ns()}"
        r = redis.Redis.from_url(self.url)
        m = Meter()
        p = mp.get_context("fork").Process(target=lpush_loop, args=(self.url, key, n))
        p.start()
        for i in range(n):
            _, v = r.brpop(key, timeout=60)
            assert int(v) == i
        p.join()
        s = m.stop(n)
        r.delete(key)
        return s

    def stop(self):
        procs = self.rq_workers + ([self.celery] if self.celery else [])
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.celery is not None or self.rq_workers:
            import redis
            r = redis.Redis.from_url(self.url)
            keys = list(r.scan_iter(f"*{QUEUE}*", count=1000))
            if keys:
                r.delete(*keys)


def lpush_loop(url, key, n):
    import redis
    r = redis.Redis.from_url(url)
    for i in range(n):
        r.lpush(key, i)


def banner():
    import importlib.metadata as md
    vs = []
    for pkg in ("redis", "rq", "celery"):
        try:
            vs.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            vs.append(f"{pkg} missing")
    return f"CPython {sys.version.split()[0]} ({sys.executable}), " + ", ".join(vs)


def serve(url):
    peers = Peers(url)
    out = sys.stdout
    try:
        for line in sys.stdin:
            f = line.rstrip("\n").split("\t")
            try:
                if f[0] == "quit":
                    break
                if f[0] == "hello":
                    reply = banner()
                elif f[0] == "run":
                    secs, ops, cpu = getattr(peers, f[1])(int(f[2]))
                    reply = f"{secs:.9f}\t{ops}\t{cpu:.4f}"
                else:
                    raise ValueError(f"unknown command {f[0]!r}")
                out.write(f"ok\t{reply}\n")
            except Exception as e:  # report and keep serving
                traceback.print_exc(file=sys.stderr)
                out.write(f"err\t{type(e).__name__}: {e}\n".replace("\n", " ").rstrip() + "\n")
            out.flush()
    finally:
        peers.stop()


def main():
    argv = sys.argv[1:]
    url = argv[argv.index("--url") + 1] if "--url" in argv else "redis://127.0.0.1:6379/0"
    if "--serve" in argv:
        serve(url)
    elif "run" in argv:
        i = argv.index("run")
        peers = Peers(url)
        try:
            secs, ops, cpu = getattr(peers, argv[i + 1])(int(argv[i + 2]))
        finally:
            peers.stop()
        print(f"{argv[i + 1]}\tsecs {secs:.4f}\tops {ops}\t{ops / secs:.0f}/s\tcpu {cpu:.3f}\t{banner()}")
    else:
        print(__doc__)


if __name__ == "__main__":
    main()
