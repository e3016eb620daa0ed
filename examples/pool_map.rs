//! Example 7 of the tutorial: a pool of two workers maps `work_log` over four jobs.
//!
//! Python:
//! ```python
//! w = (["V", 5], ["X", 2], ["Y", 1], ["Z", 3])
//! def work_log(work_data):
//!     print(" Process name %s waiting time %s seconds" % (work_data[0], work_data[1]))
//!     time.sleep(int(work_data[1]))
//!     print(" Process %s Executed." % work_data[0])
//! def pool_handler():
//!     p = Pool(2)
//!     p.map(work_log, w)
//! ```
//! With two workers the four jobs (5 + 2 + 1 + 3 = 11 seconds of sleep) take about 6 seconds.

use multiproc::Pool;
use std::time::{Duration, Instant};

fn work_log(work_data: (String, u64)) {
    let (name, seconds) = work_data;
    println!(" Process name {name} waiting time {seconds} seconds");
    std::thread::sleep(Duration::from_secs(seconds));
    println!(" Process {name} Executed.");
}

fn pool_handler() -> multiproc::Result<()> {
    let w = [("V", 5), ("X", 2), ("Y", 1), ("Z", 3)].map(|(name, secs)| (name.to_string(), secs));
    let p = Pool::new(2)?;
    p.map(work_log, w).get()?;
    Ok(())
}

pub fn main() -> multiproc::Result<()> {
    let start = Instant::now();
    pool_handler()?;
    eprintln!("(took {:.1} s)", start.elapsed().as_secs_f64());
    Ok(())
}
