//! The tutorial's pool examples over a Redis broker, with 2 workers started here: example 7
//! (`Pool.map` of `work_log`) and example 8 (`[1, 4, 9]`), printing the same lines as the tour.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --release --features redis --example redis_pool
//! ```
//!
//! Workers on other machines join the same pool by running this same binary with
//! `MP_REDIS_WORKER=redis://host:6379/0#tour MP_REDIS_AUTHKEY=<the key>` (see the README).

use multiproc::redis::{PoolBuilder, AUTHKEY_ENV};
use std::time::{Duration, Instant};

fn work_log(work_data: (String, u64)) {
    let (name, seconds) = work_data;
    println!(" Process name {name} waiting time {seconds} seconds");
    std::thread::sleep(Duration::from_secs(seconds));
    println!(" Process {name} Executed.");
}

fn fun(x: u64) -> u64 {
    x * x
}

fn main() -> multiproc::Result<()> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!(
            "REDIS_URL not set: start a Redis server and set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0"
        );
        return Ok(());
    };
    let key = std::env::var(AUTHKEY_ENV).unwrap_or_else(|_| "tour".into());
    let name = format!("tour-{}", std::process::id());
    let p = PoolBuilder::new(&url).name(&name).authkey(key.as_bytes()).processes(2).build()?;
    eprintln!("(pool {name:?}: more workers can join with {}={url}#{name})", multiproc::redis::WORKER_ENV);

    println!("\n== 7. Pool.map over work items that sleep");
    let start = Instant::now();
    let w = [("V", 5), ("X", 2), ("Y", 1), ("Z", 3)].map(|(name, secs)| (name.to_string(), secs));
    p.map_chunked(work_log, w, 1)?;
    eprintln!("(took {:.1} s)", start.elapsed().as_secs_f64());

    println!("\n== 8. Pool as a context manager");
    println!("{:?}", p.map(fun, [1, 2, 3])?);
    p.close();
    p.join()
}
