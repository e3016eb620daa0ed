//! The tutorial tour: runs every example of the tutorial in order, each under a heading.
//!
//! `cargo run --release --example tour`

#[path = "process_start_join.rs"]
mod process_start_join;

#[path = "process_arguments.rs"]
mod process_arguments;

#[path = "cpu_count.rs"]
mod cpu_count;

#[path = "lock.rs"]
mod lock;

#[path = "pool_map.rs"]
mod pool_map;

#[path = "pool_context.rs"]
mod pool_context;

fn heading(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn main() -> multiprocessing::Result<()> {
    heading(1, "Process, start, join");
    process_start_join::main()?;
    heading(2, "Arguments");
    process_arguments::main()?;
    heading(3, "CPU count");
    cpu_count::main();
    heading(5, "Lock");
    lock::main()?;
    heading(7, "Pool.map over work items that sleep");
    pool_map::main()?;
    heading(8, "Pool as a context manager");
    pool_context::main()?;
    Ok(())
}
