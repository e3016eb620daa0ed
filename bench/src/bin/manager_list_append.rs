//! manager_list_append: `ListProxy::append` from the parent, ops/second (the workload of the
//! same name in shared/bench/python_anchor.py; CPython twin: bench/python/manager_list_append.py).
//!
//! `cargo run --release -p bench --bin manager_list_append [-- N]`

use std::time::Instant;

fn main() -> multiprocessing::Result<()> {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let manager = multiprocessing::Manager::start()?;
    let l = manager.list::<u64>([])?;
    for i in 0..1000 {
        l.append(i)?; // warm up: connection, caches
    }
    let t = Instant::now();
    for i in 0..n {
        l.append(i)?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(l.len()?, 1000 + n as usize);
    println!("manager_list_append\t{rate:.1}\tops/s");
    Ok(())
}
