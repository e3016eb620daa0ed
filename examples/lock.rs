//! Example 5 of the tutorial: a lock keeps other processes out of the same code until released.

use multiproc::{Lock, Process};

fn report(lock: Lock, n: u32) {
    // acquire() ... the guard's drop is release()
    let _guard = lock.acquire().unwrap_or_else(|died| died.into_inner());
    println!("process {n} holds the lock");
    println!("process {n} releases the lock");
}

pub fn main() -> multiproc::Result<()> {
    let lock = Lock::new()?;
    let ps: Vec<Process> = (1..=3).map(|n| Process::new(report, (lock.clone(), n))).collect();
    for p in &ps {
        p.start()?;
    }
    for p in &ps {
        p.join()?;
    }
    Ok(())
}
