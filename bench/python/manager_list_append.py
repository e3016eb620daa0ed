"""manager_list_append as in shared/bench/python_anchor.py: ListProxy.append from the parent, ops/s."""
import multiprocessing as mp
import sys
import time

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with mp.Manager() as m:
        lst = m.list()
        for i in range(1000):
            lst.append(i)  # warm up, as the Rust twin does
        t = time.perf_counter()
        for i in range(n):
            lst.append(i)
        print(f"manager_list_append\t{n / (time.perf_counter() - t):.1f}\tops/s", flush=True)
