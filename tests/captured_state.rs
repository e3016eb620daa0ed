//! Targets with state: `partial`, `Process::with_context` and `Pool::map_with` under every start
//! method. The context is a serde value the child decodes and lends to the target, where Python
//! pickles the bound arguments of a `functools.partial`.

use multiproc::{get_context, partial, Connection, Pipe, Pool, ProcessBuilder, Queue, StartMethod};
use serde::{Deserialize, Serialize};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    label: String,
    weights: Vec<u64>,
}

fn config() -> Config {
    Config { label: "w".into(), weights: vec![1, 10, 100] }
}

fn weigh(c: &Config, x: u64, out: Queue<String>) {
    let total: u64 = c.weights.iter().map(|w| w * x).sum();
    out.put(format!("{}={total}", c.label)).unwrap();
}

#[test]
fn with_context_sends_the_context_to_the_child() {
    for m in METHODS {
        let out = Queue::new().unwrap();
        let p = ProcessBuilder::with_context(weigh, config(), (2u64, out.clone()))
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(out.get().unwrap(), "w=222", "{m}");
        assert!(p.join().unwrap().success(), "{m}");
    }
}

fn fail_over(limit: &u64, x: u64) -> Result<(), String> {
    if x > *limit {
        Err(format!("{x} is over {limit}"))
    } else {
        Ok(())
    }
}

#[test]
fn with_context_exit_code_follows_the_targets_result() {
    for m in METHODS {
        let ok = ProcessBuilder::with_context(fail_over, 10u64, (3u64,)).start_method(m).start().unwrap();
        let bad = ProcessBuilder::with_context(fail_over, 10u64, (30u64,)).start_method(m).start().unwrap();
        assert_eq!(ok.join().unwrap().exitcode(), 0, "{m}");
        assert_eq!(bad.join().unwrap().exitcode(), 1, "{m}");
    }
}

fn scaled(factor: &u64, x: u64, y: u64) -> u64 {
    (x + y) * factor
}

#[test]
fn partial_spawns_and_returns_the_value_under_each_method() {
    for m in METHODS {
        let times3 = partial(scaled, 3u64);
        assert_eq!(times3.clone().spawn((0, 1)).unwrap().join().unwrap(), 3, "{m}");
        assert_eq!(times3.call((1, 2)), 9);
        assert_eq!(
            times3.clone().spawn_in(&get_context(Some(m)), (4, 5)).unwrap().join().unwrap(),
            27,
            "{m}"
        );
        let p = partial(|c: &Config, x: u64| assert_eq!(c.weights[x as usize], 10), config())
            .process_builder((1u64,));
        assert!(p.start_method(m).start().unwrap().join().unwrap().success(), "{m}");
        // a child's assertion on its context fails its exit code: the context really arrives
        let p = partial(|c: &Config, x: u64| assert_eq!(c.weights[x as usize], 10), config())
            .process_builder((2u64,));
        assert_eq!(p.start_method(m).start().unwrap().join().unwrap().exitcode(), 1, "{m}");
    }
}

#[derive(Serialize, Deserialize)]
struct Wired {
    conn: Connection,
    greeting: String,
}

fn answer(w: &Wired) {
    let name: String = w.conn.recv().unwrap();
    w.conn.send(&format!("{} {name}", w.greeting)).unwrap();
}

#[test]
fn a_context_can_carry_handles() {
    for m in METHODS {
        let (here, there) = Pipe::duplex().unwrap();
        let p = ProcessBuilder::with_context(answer, Wired { conn: there, greeting: "hi".into() }, ())
            .start_method(m)
            .start()
            .unwrap_or_else(|e| panic!("{m}: start: {e}"));
        here.send(&"ann".to_string()).unwrap_or_else(|e| panic!("{m}: send: {e}"));
        let reply = here.recv::<String>().unwrap_or_else(|e| panic!("{m}: recv: {e}"));
        assert_eq!(reply, "hi ann", "{m}");
        let status = p.join().unwrap_or_else(|e| panic!("{m}: join: {e}"));
        assert!(status.success(), "{m}: {status:?}");
    }
}

fn pool(m: StartMethod, n: usize) -> Pool {
    Pool::builder().processes(n).start_method(m).build().unwrap()
}

fn dot(c: &Config, x: u64) -> u64 {
    c.weights.iter().map(|w| w * x).sum()
}

#[test]
fn map_with_keeps_order_and_uses_the_context() {
    for m in METHODS {
        let p = pool(m, 2);
        let out = p.map_with(config(), dot, 0..50u64).get().unwrap();
        assert_eq!(out, (0..50u64).map(|x| 111 * x).collect::<Vec<_>>(), "{m}");
        assert!(p.map_with(config(), dot, Vec::<u64>::new()).get().unwrap().is_empty(), "{m}");
        p.close();
        p.join().unwrap();
    }
}

/// Where the item's context lives: the worker's pid and the context's address there.
fn whose_context(c: &Config, x: u64) -> (u32, usize, u64) {
    (std::process::id(), c as *const Config as usize, x)
}

#[test]
fn map_with_decodes_one_context_per_chunk() {
    for m in METHODS {
        let p = pool(m, 2);
        let out = p.map_with(config(), whose_context, 0..20u64).chunksize(5).get().unwrap();
        assert_eq!(out.iter().map(|v| v.2).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>(), "{m}");
        for chunk in out.chunks(5) {
            // every item of a chunk saw the same decoded context in the same worker
            assert!(chunk.iter().all(|v| (v.0, v.1) == (chunk[0].0, chunk[0].1)), "{m}: {chunk:?}");
        }
        assert!(out.iter().all(|v| v.0 != std::process::id()), "{m}");
        p.close();
        p.join().unwrap();
    }
}

fn picky(limit: &u64, x: u64) -> u64 {
    assert!(x < *limit, "item {x} reached the limit {limit}");
    x
}

#[test]
fn map_with_reports_a_panicking_item_and_the_pool_lives_on() {
    for m in METHODS {
        let p = pool(m, 2);
        let err = p.map_with(7u64, picky, 0..20u64).get().unwrap_err();
        assert!(err.to_string().contains("reached the limit 7"), "{m}: {err}");
        assert_eq!(p.map_with(100u64, picky, 0..20u64).get().unwrap(), (0..20).collect::<Vec<_>>(), "{m}");
        p.close();
        p.join().unwrap();
    }
}
