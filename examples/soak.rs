//! Soak run: minutes of sustained load, checking that nothing is lost and that memory and
//! descriptors stay flat.
//!
//! ```text
//! cargo run --release --example soak              # full size: 10M queue items, 100k starts, 1M tasks
//! cargo run --release --example soak -- --scale 0.01
//! cargo run --release --example soak -- --phases queue,pool
//! ```
//!
//! Phases: (1) 10 million checksummed items through one bounded `Queue`, 4 producer processes to 4
//! consumer processes; (2) 100 000 process starts and joins; (3) 1 million `Pool` tasks (map
//! and imap with chunks, then one `apply_async` per task). Every ~2 s a line shows the phase,
//! progress, rate and memory (this process and its children); each phase ends with this
//! process's peak memory and descriptor count. Exits non-zero if an item is
//! lost or duplicated, a checksum is wrong, or descriptors or memory grow.

use multiproc::{Pool, Process, Queue, Value};
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 4;
/// Items the soak's queue holds at most.
const QUEUE_SLOTS: usize = 65_536;

fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ 0x5851_F42D_4C95_7F2D
}

fn produce(q: Queue<(u64, u64)>, id: u64, n: u64) {
    for i in 0..n {
        let v = id * n + i;
        q.put((v, mix(v))).unwrap();
    }
    q.close();
    q.join_thread().unwrap();
}

/// Takes items until the end marker; returns (count, sum of values, xor of checksums), and
/// adds to `taken` every 10 000 items for the progress lines.
fn consume(q: Queue<(u64, u64)>, taken: Value<u64>) -> (u64, u64, u64) {
    let (mut n, mut sum, mut x) = (0u64, 0u64, 0u64);
    loop {
        let (v, c) = q.get().unwrap();
        if v == u64::MAX {
            taken.with_lock(|t| *t += n % 10_000);
            return (n, sum, x);
        }
        if n % 10_000 == 9_999 {
            taken.with_lock(|t| *t += 10_000);
        }
        assert_eq!(c, mix(v), "checksum of item {v}");
        n += 1;
        sum = sum.wrapping_add(v);
        x ^= c;
    }
}

fn nothing() {}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process's running children, in KiB.
fn children_rss() -> u64 {
    multiproc::active_children()
        .iter()
        .filter_map(|p| p.pid())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

struct Phase {
    name: &'static str,
    start: Instant,
    last: Instant,
    last_done: u64,
    fds: usize,
    children_peak: u64,
}

impl Phase {
    fn begin(name: &'static str) -> Phase {
        println!("== {name}");
        Phase {
            name,
            start: Instant::now(),
            last: Instant::now(),
            last_done: 0,
            fds: fds(),
            children_peak: 0,
        }
    }

    fn tick(&mut self, done: u64, total: u64) {
        if self.last.elapsed() >= Duration::from_secs(2) {
            let now = (done - self.last_done) as f64 / self.last.elapsed().as_secs_f64();
            (self.last, self.last_done) = (Instant::now(), done);
            let rate = done as f64 / self.start.elapsed().as_secs_f64();
            let children = children_rss();
            self.children_peak = self.children_peak.max(children);
            println!(
                "   {:<8} {done:>10}/{total}  now {now:>10.0}/s, overall {rate:>10.0}/s  rss {} KiB, children {children} KiB",
                self.name,
                status_field("VmRSS:")
            );
        }
    }

    fn end(self, done: u64, failures: &mut Vec<String>) {
        let secs = self.start.elapsed().as_secs_f64();
        let now_fds = fds();
        println!(
            "   {}: {done} in {secs:.1} s = {:.0}/s; peak memory (VmHWM) {} KiB, rss {} KiB, children at most {} KiB; fds {} -> {now_fds}",
            self.name,
            done as f64 / secs,
            status_field("VmHWM:"),
            status_field("VmRSS:"),
            self.children_peak,
            self.fds
        );
        if now_fds > self.fds {
            failures.push(format!("{}: descriptors grew from {} to {now_fds}", self.name, self.fds));
        }
    }
}

fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let scale: f64 =
        args.iter().position(|a| a == "--scale").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1.0);
    // `--phases queue,starts,pool` (default: all three).
    let phases = args.iter().position(|a| a == "--phases").and_then(|i| args.get(i + 1)).cloned();
    let run = |name: &str| phases.as_ref().is_none_or(|p| p.split(',').any(|x| x == name));
    let items = ((10_000_000.0 * scale) as u64 / PRODUCERS).max(1) * PRODUCERS;
    let starts = ((100_000.0 * scale) as u64).max(10);
    let tasks = ((1_000_000.0 * scale) as u64).max(100);
    let mut failures = Vec::new();
    // Warm up what lives for the whole run (the fork server) before counting descriptors.
    Process::new(nothing, ()).start()?.join()?;

    // 1. Queue: 4 x 4 processes.
    if run("queue") {
        let mut phase = Phase::begin("queue");
        // Bounded, so that producers faster than the consumers wait instead of piling items up in
        // their feeder backlogs (an unbounded queue's `put` never blocks, so that backlog grows as
        // in Python): every process's memory then stays flat.
        let q: Queue<(u64, u64)> = Queue::with_maxsize(QUEUE_SLOTS)?;
        let per = items / PRODUCERS;
        let taken = Value::new(0u64)?;
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| multiproc::spawn(consume, (q.clone(), taken.clone())))
            .collect::<Result<_, _>>()?;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| Process::new(produce, (q.clone(), id, per)).start())
            .collect::<Result<_, _>>()?;
        while producers.iter().any(|p| p.is_alive()) {
            phase.tick(taken.get(), items);
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in &producers {
            p.join()?;
        }
        for _ in 0..CONSUMERS {
            q.put((u64::MAX, 0)).unwrap();
        }
        let (mut n, mut sum, mut x) = (0u64, 0u64, 0u64);
        for c in consumers {
            let (cn, cs, cx) = c.join()?;
            n += cn;
            sum = sum.wrapping_add(cs);
            x ^= cx;
        }
        let want_sum = (0..items).fold(0u64, |a, v| a.wrapping_add(v));
        let want_x = (0..items).fold(0u64, |a, v| a ^ mix(v));
        if (n, sum, x) != (items, want_sum, want_x) {
            failures.push(format!(
                "queue: got {n} items (sum {sum}, xor {x}), want {items} ({want_sum}, {want_x})"
            ));
        }
        drop((q, producers, taken));
        phase.end(n, &mut failures);
    }

    // 2. Process starts.
    if run("starts") {
        let mut phase = Phase::begin("starts");
        let rss_before = status_field("VmRSS:");
        for i in 0..starts {
            let p = Process::new(nothing, ()).start()?;
            let status = p.join()?;
            if status.exitcode() != 0 {
                failures.push(format!("start {i}: exit code {}", status.exitcode()));
            }
            phase.tick(i + 1, starts);
        }
        if !multiproc::active_children().is_empty() {
            failures.push("starts: children left".into());
        }
        let rss_after = status_field("VmRSS:");
        if rss_after > rss_before + 64 * 1024 {
            failures.push(format!("starts: memory grew from {rss_before} KiB to {rss_after} KiB"));
        }
        phase.end(starts, &mut failures);
    }

    // 3. Pool tasks.
    if run("pool") {
        let mut phase = Phase::begin("pool");
        let pool = Pool::new(multiproc::cpu_count())?;
        // 40% through map with chunks, 40% through imap with chunks, 20% one apply_async each.
        let (a, b) = (tasks * 2 / 5, tasks * 4 / 5);
        let mut done = 0u64;
        let mut total = 0u64;
        for chunk_start in (0..a).step_by(100_000) {
            let end = (chunk_start + 100_000).min(a);
            let out = pool.map(square, chunk_start..end).chunksize(1000).get()?;
            total = out.iter().fold(total, |acc, &v| acc.wrapping_add(v));
            done += end - chunk_start;
            phase.tick(done, tasks);
        }
        for v in pool.imap(square, a..b).chunksize(1000).submit()? {
            total = total.wrapping_add(v?);
            done += 1;
            if done % 10_000 == 0 {
                phase.tick(done, tasks);
            }
        }
        for batch in (b..tasks).step_by(10_000) {
            let results: Vec<_> = (batch..(batch + 10_000).min(tasks))
                .map(|x| pool.apply_async(square, (x,)))
                .collect::<Result<_, _>>()?;
            for r in results {
                total = total.wrapping_add(r.get()?);
                done += 1;
            }
            phase.tick(done, tasks);
        }
        let want = (0..tasks).fold(0u64, |a, v| a.wrapping_add(square(v)));
        if total != want {
            failures.push(format!("pool: sum {total}, want {want}"));
        }
        pool.close();
        pool.join()?;
        drop(pool);
        phase.end(done, &mut failures);
    }

    if failures.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("soak: {f}");
        }
        std::process::exit(1);
    }
}
