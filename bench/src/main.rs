//! Side-by-side benchmarks: this library, CPython's `multiprocessing` and the Rust peers, in one
//! run. `cargo run --release -p bench [-- --quick] [-- --only name,name] [-- --no-python]`

mod peers;
mod table;
mod workloads;

use multiprocessing::StartMethod;
use std::collections::HashMap;
use std::process::Command;
use table::{Better, Row};

/// Runs the project's CPython script; `name -> value` of every line it printed.
fn run_cpython(quick: bool, only: &Option<Vec<String>>) -> HashMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/anchor.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(names) = only {
        cmd.arg("--only").arg(names.join(","));
    }
    eprintln!("running CPython: {script}");
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("CPython script failed:\n{}", String::from_utf8_lossy(&o.stderr));
            return HashMap::new();
        }
        Err(e) => {
            eprintln!("python3 not available ({e}); showing this library's figures only");
            return HashMap::new();
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// A figure-producing run: iterations in, the workload's figure out.
type Measure = fn(usize) -> f64;

struct Workload {
    name: &'static str,
    unit: &'static str,
    better: Better,
    ours: Measure,
    /// Iterations in a full run (`--quick` uses a tenth).
    n: usize,
    peer: Option<(&'static str, Measure)>,
}

fn workloads() -> Vec<Workload> {
    use Better::*;
    vec![
        Workload {
            name: "spawn_join_fork",
            unit: "us/process",
            better: Lower,
            ours: |n| workloads::spawn_join(StartMethod::Fork, n),
            n: 400,
            peer: Some(("procspawn", peers::procspawn_spawn_join)),
        },
        Workload {
            name: "spawn_join_forkserver",
            unit: "us/process",
            better: Lower,
            ours: |n| workloads::spawn_join(StartMethod::Forkserver, n),
            n: 400,
            peer: Some(("procspawn", peers::procspawn_spawn_join)),
        },
        Workload {
            name: "spawn_join_spawn",
            unit: "us/process",
            better: Lower,
            ours: |n| workloads::spawn_join(StartMethod::Spawn, n),
            n: 200,
            peer: Some(("procspawn", peers::procspawn_spawn_join)),
        },
        Workload {
            name: "queue_small",
            unit: "items/s",
            better: Higher,
            ours: workloads::queue_small,
            n: 200_000,
            peer: Some(("ipc-channel", peers::ipc_channel_small)),
        },
        Workload {
            name: "queue_1mb",
            unit: "MiB/s",
            better: Higher,
            ours: workloads::queue_1mb,
            n: 1000,
            peer: Some(("ipc-channel", peers::ipc_channel_1mb)),
        },
        Workload {
            name: "pipe_roundtrip",
            unit: "roundtrips/s",
            better: Higher,
            ours: workloads::pipe_roundtrip,
            n: 50_000,
            peer: Some(("ipc-channel", peers::ipc_channel_roundtrip)),
        },
        Workload {
            name: "pool_map_tiny",
            unit: "tasks/s",
            better: Higher,
            ours: workloads::pool_map_tiny,
            n: 200_000,
            peer: None,
        },
        Workload {
            name: "pool_apply_async",
            unit: "tasks/s",
            better: Higher,
            ours: workloads::pool_apply_async,
            n: 20_000,
            peer: None,
        },
        Workload {
            name: "manager_list_append",
            unit: "ops/s",
            better: Higher,
            ours: workloads::manager_list_append,
            n: 20_000,
            peer: None,
        },
        Workload {
            name: "lock_uncontended",
            unit: "ops/s",
            better: Higher,
            ours: workloads::lock_uncontended,
            n: 1_000_000,
            peer: None,
        },
        Workload {
            name: "value_increment",
            unit: "increments/s",
            better: Higher,
            ours: workloads::value_increment,
            n: 50_000,
            peer: None,
        },
    ]
}

fn main() {
    procspawn::init();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect());
    let selected: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| only.as_ref().is_none_or(|o| o.iter().any(|n| n == w.name)))
        .collect();

    let cpython =
        if args.iter().any(|a| a == "--no-python") { HashMap::new() } else { run_cpython(quick, &only) };
    let mut rows = Vec::new();
    let mut peer_cache: HashMap<(&'static str, &'static str), f64> = HashMap::new();
    for w in &selected {
        let n = if quick { (w.n / 10).max(5) } else { w.n };
        eprintln!("running {} (n = {n})", w.name);
        let ours = (w.ours)(n);
        let peer = w.peer.map(|(name, f)| {
            // procspawn's spawn+join is one figure shared by the three start-method rows.
            let v = *peer_cache.entry((name, w.unit)).or_insert_with(|| f(n));
            (name, v)
        });
        rows.push(Row {
            name: w.name,
            unit: w.unit,
            better: w.better,
            ours,
            cpython: cpython.get(w.name).copied(),
            peer,
        });
    }
    println!("{}", table::render(&rows));
    println!("ratios: how many times faster this library is (> 1 = faster), from this one run");
}
