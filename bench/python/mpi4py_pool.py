#!/usr/bin/env python3
"""mpi4py.futures on the MPI rows of the `multiprocessing` crate's bench (bench/src/mpi.rs).

Run by the bench as `mpirun --oversubscribe --bind-to none -n 3 python3 -m mpi4py.futures
mpi4py_pool.py`: rank 0 runs this script, the other ranks serve its MPIPoolExecutor. The
workloads match bench/src/mpi.rs:
  mpi_pool_map           ex.map(square, range(200_000), chunksize=200_000 // 16), N // 200k times
  mpi_pool_apply_async   [ex.submit(square, i) for i in range(20_000)], then .result() of each,
                         N // 20k times

stdin (forwarded by mpirun to rank 0): run <TAB> NAME <TAB> N | quit
stdout: ready <TAB> banner, then per run: ok <TAB> secs <TAB> ops   or   err <TAB> message
(the bench measures the CPU of the whole job from outside).
"""
import sys
import time
import traceback

import mpi4py
from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor

MAP_N = 200_000
APPLY_N = 20_000


def square(x):
    return x * x


def blocks(n, size):
    return max(1, -(-n // size))


def run(ex, name, n):
    if name == "mpi_pool_map":
        k = blocks(n, MAP_N)
        t = time.perf_counter()
        for _ in range(k):
            out = list(ex.map(square, range(MAP_N), chunksize=MAP_N // 16))
        secs = time.perf_counter() - t
        assert out[-1] == (MAP_N - 1) ** 2 and len(out) == MAP_N
        return secs, k * MAP_N
    if name == "mpi_pool_apply_async":
        k = blocks(n, APPLY_N)
        t = time.perf_counter()
        for _ in range(k):
            fs = [ex.submit(square, i) for i in range(APPLY_N)]
            out = [f.result() for f in fs]
        secs = time.perf_counter() - t
        assert out[-1] == (APPLY_N - 1) ** 2
        return secs, k * APPLY_N
    raise ValueError(f"no workload {name}")


def main():
    with MPIPoolExecutor() as ex:
        ex.submit(square, 1).result()
        lib = MPI.Get_library_version().strip().splitlines()[0]
        workers = MPI.COMM_WORLD.Get_size() - 1
        print(f"ready\tmpi4py {mpi4py.__version__} ({lib}), {workers} worker ranks", flush=True)
        for line in sys.stdin:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "quit":
                break
            try:
                secs, ops = run(ex, parts[1], int(parts[2]))
                print(f"ok\t{secs}\t{ops}", flush=True)
            except Exception as e:  # reported to the bench, which leaves the figure out
                traceback.print_exc()
                print(f"err\t{type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
