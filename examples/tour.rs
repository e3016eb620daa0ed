//! The tutorial tour: runs every example of the tutorial in order, each under a heading.
//!
//! `cargo run --release --example tour`

#[path = "process_start_join.rs"]
mod process_start_join;

#[path = "process_arguments.rs"]
mod process_arguments;

#[path = "cpu_count.rs"]
mod cpu_count;

#[path = "queue_fifo.rs"]
mod queue_fifo;

#[path = "tasks_queue.rs"]
mod tasks_queue;

#[path = "lock.rs"]
mod lock;

#[path = "pool_map.rs"]
mod pool_map;

#[path = "pool_context.rs"]
mod pool_context;

#[path = "manager_proxy.rs"]
mod manager_proxy;

fn heading(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn main() -> multiproc::Result<()> {
    heading(1, "Process, start, join");
    process_start_join::main()?;
    heading(2, "Arguments");
    process_arguments::main()?;
    heading(3, "CPU count");
    cpu_count::main();
    heading(4, "Queue, FIFO");
    queue_fifo::main()?;
    heading(5, "Lock");
    lock::main()?;
    heading(6, "Tasks and completed-tasks queues with several workers");
    tasks_queue::main()?;
    heading(7, "Pool.map over work items that sleep");
    pool_map::main()?;
    heading(8, "Pool as a context manager");
    pool_context::main()?;
    heading(9, "Manager proxy objects");
    manager_proxy::main()?;
    Ok(())
}
