//! Python's `class Worker(Process): def run(self)`: a type carries its state and says what the
//! process does; it starts through the usual `Process` handle, or runs here.
//!
//! `cargo run --example process_run`

use multiproc::{ProcessBuilder, Queue, Run, StartMethod};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Worker {
    name: String,
    jobs: Vec<u64>,
    results: Queue<(String, u64)>,
}

impl Run for Worker {
    type Output = multiproc::Result<()>;
    fn run(&mut self) -> multiproc::Result<()> {
        let total = self.jobs.iter().map(|n| n * n).sum();
        Ok(self.results.put((self.name.clone(), total))?)
    }
}

fn main() -> multiproc::Result<()> {
    let results = Queue::new()?;
    let mut workers = Vec::new();
    for (i, method) in
        [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn].into_iter().enumerate()
    {
        let w = Worker {
            name: format!("worker {i} ({method})"),
            jobs: (1..=10 * (i as u64 + 1)).collect(),
            results: results.clone(),
        };
        workers.push(ProcessBuilder::from_run(&w).start_method(method).start()?);
    }
    for _ in 0..workers.len() {
        let (name, total) = results.get()?;
        println!("{name}: sum of squares {total}");
    }
    for p in workers {
        assert!(p.join()?.success());
    }
    // `run` is an ordinary method: call it in this process, as Python's `p.run()`.
    let mut here = Worker { name: "in the parent".into(), jobs: vec![1, 2, 3], results: results.clone() };
    here.run()?;
    let (name, total) = results.get()?;
    println!("{name}: sum of squares {total}");
    Ok(())
}
