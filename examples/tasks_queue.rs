//! Example 6 of the tutorial: workers take tasks from one queue and report on another.

use multiproc::{current_process, Process, Queue, TryGetError};
use std::time::Duration;

fn job_to_do(tasks_to_perform: Queue<String>, complete_tasks: Queue<String>) -> bool {
    loop {
        match tasks_to_perform.get_nowait() {
            Err(TryGetError::Empty) => break,
            Err(e) => panic!("{e}"),
            Ok(task) => {
                println!("{task}");
                complete_tasks.put(format!("{task} is done by {}", current_process().name())).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    true
}

pub fn main() -> multiproc::Result<()> {
    let (total_task, total_number_of_processes) = (8, 3);
    let tasks_to_perform: Queue<String> = Queue::new()?;
    let complete_tasks: Queue<String> = Queue::new()?;
    for i in 0..total_task {
        tasks_to_perform.put(format!("Task no {i}")).expect("an unbounded queue takes every item");
    }
    let processes: Vec<Process> = (0..total_number_of_processes)
        .map(|_| Process::new(job_to_do, (tasks_to_perform.clone(), complete_tasks.clone())))
        .collect();
    for p in &processes {
        p.start()?;
    }
    for p in &processes {
        p.join()?;
    }
    while !complete_tasks.empty() {
        println!("{}", complete_tasks.get().expect("the queue is not empty"));
    }
    Ok(())
}
