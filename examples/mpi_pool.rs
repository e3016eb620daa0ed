//! The tutorial's pool examples on MPI ranks: example 7 (`Pool.map` of `work_log`) and
//! example 8 (`[1, 4, 9]`), printing the same lines as the tour. Rank 0 runs `main`; the other
//! ranks serve the pool (opted in below), each running tasks in its own local process.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_pool
//! mpirun -n 3 target/release/examples/mpi_pool
//! srun -n 3 target/release/examples/mpi_pool        # under Slurm
//! ```
//!
//! Run without a launcher, it falls back to a local pool of 2 processes.

use std::time::{Duration, Instant};

multiproc::mpi_workers!();

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
    let p = multiproc::mpi::PoolBuilder::new().fallback_local(2).build()?;
    eprintln!("(pool of {} worker processes)", p.processes());

    println!("\n== 7. Pool.map over work items that sleep");
    let start = Instant::now();
    let w = [("V", 5), ("X", 2), ("Y", 1), ("Z", 3)].map(|(name, secs)| (name.to_string(), secs));
    p.map(work_log, w).chunksize(1).get()?;
    eprintln!("(took {:.1} s)", start.elapsed().as_secs_f64());

    println!("\n== 8. Pool as a context manager");
    println!("{:?}", p.map(fun, [1, 2, 3]).get()?);
    p.close();
    p.join()
}
