//! Pool and Executor across real processes.

use multiprocessing::Pool;
use std::time::Instant;

fn square(x: u64) -> u64 {
    x * x
}

/// The two pool workloads of `shared/bench/python_anchor.py`, in release mode:
/// `cargo test --release --test pool -- --ignored --nocapture bench_`
#[test]
#[ignore]
fn bench_pool_workloads() {
    let n: u64 = std::env::var("POOL_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let pool = Pool::new(2).unwrap();
    pool.map(square, 0..100).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let v = pool.map(square, 0..n).unwrap();
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(v.len() as u64, n);
        println!("pool_map_tiny\t{:.1}\ttasks/s", n as f64 / dt);
    }
    for _ in 0..3 {
        let k = n / 10;
        let t = Instant::now();
        let rs: Vec<_> = (0..k).map(|i| pool.apply_async(square, (i,)).unwrap()).collect();
        for (i, r) in rs.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64);
        }
        let dt = t.elapsed().as_secs_f64();
        println!("pool_apply_async\t{:.1}\ttasks/s", k as f64 / dt);
    }
}
