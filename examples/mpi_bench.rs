//! A smoke-level measure of the MPI pool: `map` of a square over 200k inputs with chunksize
//! n/16, and `apply_async` + `get` x 20k, best of 3 runs each.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_bench
//! mpirun --oversubscribe -n 3 target/release/examples/mpi_bench
//! ```
//!
//! The same workloads on `mpi4py.futures` (run as
//! `mpirun --oversubscribe -n 3 python3 -m mpi4py.futures bench.py`):
//!
//! ```text
//! import time
//! from mpi4py.futures import MPIPoolExecutor
//! def square(x): return x * x
//! if __name__ == "__main__":
//!     with MPIPoolExecutor() as ex:
//!         n = 200_000
//!         best = min(_t(lambda: list(ex.map(square, range(n), chunksize=n // 16))) for _ in range(3))
//!         print(f"mpi4py map: {n / best:,.0f} tasks/s")
//!         n = 20_000
//!         best = min(_t(lambda: [f.result() for f in [ex.submit(square, i) for i in range(n)]]) for _ in range(3))
//!         print(f"mpi4py submit+result: {n / best:,.0f} tasks/s")
//! # with: def _t(f): t = time.perf_counter(); f(); return time.perf_counter() - t
//! ```

use std::time::Instant;

multiproc::mpi_workers!();

fn square(x: u64) -> u64 {
    x * x
}

fn best<F: FnMut()>(mut f: F) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> multiproc::Result<()> {
    // The default builder; `MP_BENCH_MAX_PREFETCH` caps the window a rank holds beyond its
    // running tasks (0: one task per process, the round trip's worth of waiting on each).
    let mut b = multiproc::mpi::PoolBuilder::new();
    if let Some(n) = std::env::var("MP_BENCH_MAX_PREFETCH").ok().and_then(|v| v.parse().ok()) {
        b = b.max_prefetch(n);
    }
    let p = b.build()?;
    let n = 200_000u64;
    let want: u64 = (0..n).map(square).fold(0, u64::wrapping_add);
    let t = best(|| {
        let v = p.map(square, 0..n).chunksize((n / 16) as usize).get().unwrap();
        assert_eq!(v.into_iter().fold(0, u64::wrapping_add), want);
    });
    println!("mpi_pool_map: {:.0} tasks/s", n as f64 / t);
    let n = 20_000u64;
    let t = best(|| {
        let rs: Vec<_> = (0..n).map(|i| p.apply_async(square, (i,)).unwrap()).collect();
        for (i, r) in rs.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64);
        }
    });
    println!("mpi_pool_apply_async: {:.0} tasks/s", n as f64 / t);
    p.close();
    p.join()
}
