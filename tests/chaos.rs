//! Chaos: a pool, queue producers and consumers, lock users and manager clients run a
//! checksummed workload while a driver sends SIGKILL to random processes of this test's own.
//!
//! At the end: every result that arrived is right, every lost pool task came back as an error,
//! no call hung (each blocking call has a deadline; a call that hits it fails the test), the lock
//! still works, and the counts of zombie children, open descriptors and `/dev/shm` entries are
//! back to where they started.
//!
//! Bounded for CI (a few seconds of chaos); `MP_CHAOS_SECS` sets the length, `MP_CHAOS_SEED`
//! replays a run (the seed is printed), `MP_CHAOS_TRACE` prints the driver's timing.

use multiproc::manager::ListProxy;
use multiproc::{Connection, Event, GetError, JoinHandle, Manager, Pipe, Pool, Process, Queue, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A small xorshift generator: runs replay from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn checksum(producer: u64, i: u64) -> u64 {
    ((producer << 40) | i).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

type Item = (u64, u64, u64);

/// Puts checksummed items until `stop`, in paced batches; returns how many.
fn produce(q: Queue<Item>, id: u64, stop: Event) -> u64 {
    let mut i = 0;
    while !stop.is_set() {
        for _ in 0..20 {
            q.put((id, i, checksum(id, i))).unwrap();
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    q.close();
    q.join_thread().unwrap();
    i
}

/// Takes items and forwards them on a pipe shared by every consumer: a send that returned is
/// in shared memory, so a consumer killed at any moment loses at most the one item in its hands.
fn consume(q: Queue<Item>, out: Connection, stop: Event) {
    loop {
        match q.get_timeout(Duration::from_millis(50)) {
            Ok(item) => out.send(&item).unwrap(),
            Err(GetError::Empty) if stop.is_set() => break,
            Err(GetError::Empty) => {}
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

fn increment(v: Value<u64>, stop: Event) -> u64 {
    let mut n = 0;
    while !stop.is_set() {
        v.with_lock(|x| *x += 1);
        n += 1;
    }
    n
}

/// Appends numbered items until `stop`; returns how many.
fn append(l: ListProxy<u64>, id: u64, stop: Event) -> u64 {
    let mut i = 0;
    while !stop.is_set() {
        l.append((id << 32) | i).unwrap();
        i += 1;
    }
    i
}

/// A task long enough that some kills land mid-task.
fn square_plus(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_micros(500));
    (x.wrapping_mul(x).wrapping_add(7), std::process::id())
}

/// A second handle on the same end (its descriptors duplicated through a pipe).
fn copy_of(conn: &Connection) -> Connection {
    let (a, b) = Pipe::new(true).unwrap();
    a.send(conn).unwrap();
    b.recv().unwrap()
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn shm_entries() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("mp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Children of this process that are zombies (exited, not reaped).
fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if ppid == Some(me) && state == Some("Z") {
            out.push(pid);
        }
    }
    out
}

fn sigkill(pid: u32) {
    // SAFETY: plain syscall; the pid is one of this test's own children, still unreaped (a
    // zombie at worst), so it cannot name another process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[derive(Default, Debug)]
struct Kills {
    pool_workers: u64,
    consumers: u64,
    producers: u64,
    lockers: u64,
    appenders: u64,
}

impl Kills {
    fn total(&self) -> u64 {
        self.pool_workers + self.consumers + self.producers + self.lockers + self.appenders
    }
}

#[test]
fn a_killed_process_loses_only_its_own_work_and_nothing_hangs() {
    let secs = env_u64("MP_CHAOS_SECS").unwrap_or(4);
    let seed = env_u64("MP_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("chaos: seed {seed} (MP_CHAOS_SEED to replay), {secs} s");
    let mut rng = Rng(seed);

    // Warm up what lives for the whole process (the fork server), then take the baseline.
    Process::new(|| {}, ()).start().unwrap().join().unwrap();
    let fds_before = fd_count();
    let shm_before = shm_entries();
    assert!(zombie_children().is_empty());

    let mut kills = Kills::default();
    let hard_deadline = Instant::now() + Duration::from_secs(secs + 60);
    let within = |what: &str| {
        assert!(Instant::now() < hard_deadline, "chaos: {what} did not finish before its deadline");
    };
    {
        let pool = Pool::new(2).unwrap();
        let manager = Manager::start().unwrap();
        let list: ListProxy<u64> = manager.list::<u64>([]).unwrap();
        let q: Queue<Item> = Queue::new().unwrap();
        let (out, out_writer) = Pipe::new(false).unwrap();
        let stop = Event::new().unwrap();
        let value = Value::new(0u64).unwrap();

        let stop_producing = Event::new().unwrap();
        let mut producers: Vec<Option<JoinHandle<u64>>> = (0..2)
            .map(|id| Some(multiproc::spawn(produce, (q.clone(), id, stop_producing.clone())).unwrap()))
            .collect();
        let mut consumers: Vec<Process> = (0..3)
            .map(|_| Process::new(consume, (q.clone(), copy_of(&out_writer), stop.clone())).start().unwrap())
            .collect();
        let mut lockers: Vec<Option<JoinHandle<u64>>> = (0..2)
            .map(|_| Some(multiproc::spawn(increment, (value.clone(), stop.clone())).unwrap()))
            .collect();
        let mut appenders: Vec<Option<JoinHandle<u64>>> = (0..2)
            .map(|id| Some(multiproc::spawn(append, (list.clone(), id, stop.clone())).unwrap()))
            .collect();

        let mut pool_results = Vec::new();
        let mut pool_outcomes = Vec::new();
        let mut worker_pids: HashSet<u32> = HashSet::new();
        let mut received: HashMap<(u64, u64), u64> = HashMap::new();
        let mut killed_producers = HashSet::new();
        let mut killed_appenders = HashSet::new();
        let mut next_task = 0u64;

        let chaos_until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < chaos_until {
            // Keep the pool busy and learn its workers' pids from finished tasks.
            let t_iter = Instant::now();
            for _ in 0..100 {
                pool_results.push((next_task, pool.apply_async(square_plus, (next_task,)).unwrap()));
                next_task += 1;
            }
            let (ready, waiting): (Vec<_>, Vec<_>) = pool_results.drain(..).partition(|(_, r)| r.ready());
            pool_results = waiting;
            for (x, r) in ready {
                let outcome = r.get_timeout(Duration::ZERO);
                if let Ok((_, pid)) = outcome {
                    worker_pids.insert(pid);
                }
                pool_outcomes.push((x, outcome));
            }
            for _ in 0..5_000 {
                if !out.poll(Some(Duration::ZERO)).unwrap() {
                    break;
                }
                let item: Item = out.recv().unwrap();
                *received.entry((item.0, item.1)).or_default() += 1;
                assert_eq!(item.2, checksum(item.0, item.1), "a torn or corrupted queue item");
            }
            let t_drained = Instant::now();
            std::thread::sleep(Duration::from_millis(10 + rng.below(40)));
            match rng.below(5) {
                0 => {
                    if let Some(&pid) =
                        worker_pids.iter().nth(rng.below(worker_pids.len().max(1) as u64) as usize)
                    {
                        sigkill(pid);
                        worker_pids.remove(&pid);
                        kills.pool_workers += 1;
                    }
                }
                1 => {
                    let i = rng.below(consumers.len() as u64) as usize;
                    consumers[i].kill().unwrap();
                    consumers[i].join().unwrap();
                    consumers[i] = Process::new(consume, (q.clone(), copy_of(&out_writer), stop.clone()))
                        .start()
                        .unwrap();
                    kills.consumers += 1;
                }
                2 if killed_producers.is_empty() => {
                    // One producer dies; the other's items must all arrive.
                    let i = rng.below(producers.len() as u64) as usize;
                    let h = producers[i].take().unwrap();
                    h.process().kill().unwrap();
                    assert!(h.join().is_err(), "a killed producer reports its death");
                    killed_producers.insert(i as u64);
                    kills.producers += 1;
                }
                3 => {
                    let i = rng.below(lockers.len() as u64) as usize;
                    if let Some(h) = lockers[i].take() {
                        h.process().kill().unwrap();
                        assert!(h.join().is_err(), "a killed locker reports its death");
                        kills.lockers += 1;
                    }
                    lockers[i] = Some(multiproc::spawn(increment, (value.clone(), stop.clone())).unwrap());
                }
                4 if killed_appenders.is_empty() => {
                    let i = rng.below(appenders.len() as u64) as usize;
                    let h = appenders[i].take().unwrap();
                    h.process().kill().unwrap();
                    assert!(h.join().is_err(), "a killed manager client reports its death");
                    killed_appenders.insert(i as u64);
                    kills.appenders += 1;
                }
                _ => {}
            }
            if std::env::var("MP_CHAOS_TRACE").is_ok() {
                eprintln!("iter: work {:?}, total {:?}", t_drained - t_iter, t_iter.elapsed());
            }
        }

        // Wind down: every wait below has a deadline.
        stop_producing.set();
        let mut produced = HashMap::new();
        for (id, h) in producers.into_iter().enumerate() {
            if let Some(h) = h {
                match h.join_timeout(Duration::from_secs(30)) {
                    Ok(n) => produced.insert(id as u64, n.unwrap()),
                    Err(_) => panic!("producer {id} hung"),
                };
            }
        }
        let expected: u64 = produced.values().sum();

        let drain_until = Instant::now() + Duration::from_secs(30);
        let mut from_survivors = received.keys().filter(|(p, _)| produced.contains_key(p)).count() as u64;
        loop {
            if from_survivors >= expected || Instant::now() >= drain_until {
                break;
            }
            if out.poll(Some(Duration::from_millis(300))).unwrap() {
                let item: Item = out.recv().unwrap();
                assert_eq!(item.2, checksum(item.0, item.1), "a torn or corrupted queue item");
                *received.entry((item.0, item.1)).or_default() += 1;
                from_survivors += produced.contains_key(&item.0) as u64;
            } else if q.empty() {
                // Nothing left anywhere: the rest went with killed consumers.
                break;
            }
        }
        stop.set();
        for c in &consumers {
            assert!(c.join_timeout(Duration::from_secs(30)).unwrap().is_some(), "a consumer hung");
        }
        while out.poll(Some(Duration::ZERO)).unwrap() {
            let item: Item = out.recv().unwrap();
            *received.entry((item.0, item.1)).or_default() += 1;
        }
        let mut survivors_counted = 0;
        for h in lockers.into_iter().flatten() {
            survivors_counted += h.join().unwrap();
        }
        within("the lock users");
        let mut appended = HashMap::new();
        for (id, h) in appenders.into_iter().enumerate() {
            if let Some(h) = h {
                match h.join_timeout(Duration::from_secs(30)) {
                    Ok(n) => appended.insert(id as u64, n.unwrap()),
                    Err(_) => panic!("manager client {id} hung"),
                };
            }
        }

        // Queue: nothing twice; from producers never killed, only what killed consumers held.
        assert!(received.values().all(|&n| n == 1), "an item was delivered twice");
        for (&id, &n) in &produced {
            let got = received.keys().filter(|(p, _)| *p == id).count() as u64;
            assert!(
                n - got <= kills.consumers,
                "producer {id}: {} of {n} items missing with only {} consumer kills",
                n - got,
                kills.consumers
            );
        }

        // Lock: still works after its holders were killed, and counts at least the survivors.
        let g = value.get_lock().acquire_timeout(Duration::from_secs(2));
        let g = match g {
            Ok(g) => g,
            Err(died) => died.into_inner(),
        };
        assert!(g.is_some(), "the lock was not recovered from its killed holders");
        drop(g);
        assert!(value.get() >= survivors_counted);

        // Manager: still answers; each client's items are a prefix 0..k in order.
        let items = list.to_vec().unwrap();
        for id in 0..2u64 {
            let mine: Vec<u64> = items.iter().filter(|&&x| x >> 32 == id).map(|&x| x & 0xffff_ffff).collect();
            assert!(
                mine.iter().enumerate().all(|(i, &x)| x == i as u64),
                "appender {id}: items out of order"
            );
            if let Some(&n) = appended.get(&id) {
                assert_eq!(mine.len() as u64, n, "appender {id} lost appends");
            }
        }

        // Pool: every task is right or an error (a killed worker's), none hangs.
        let mut errors = 0;
        for (x, r) in pool_results {
            pool_outcomes.push((x, r.get_timeout(Duration::from_secs(30))));
        }
        let tasks = pool_outcomes.len();
        for (x, outcome) in pool_outcomes {
            match outcome {
                Ok((v, _)) => assert_eq!(v, x.wrapping_mul(x).wrapping_add(7)),
                Err(multiproc::Error::Timeout) => panic!("pool task {x} hung"),
                Err(e) => {
                    if errors == 0 {
                        eprintln!("chaos: first lost pool task {x}: {e}");
                    }
                    errors += 1
                }
            }
        }
        assert!(errors == 0 || kills.pool_workers > 0, "pool tasks failed with no worker killed");
        eprintln!(
            "chaos: {} kills survived ({kills:?}); {} queue items, {} pool tasks ({errors} lost to kills), lock count {}",
            kills.total(),
            received.len(),
            tasks,
            value.get()
        );
        pool.terminate();
        pool.join().unwrap();
        manager.shutdown().unwrap();
    }

    // Everything is back where it started.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (fds, shm, zombies) = (fd_count(), shm_entries(), zombie_children());
        if fds <= fds_before && shm.is_subset(&shm_before) && zombies.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "left behind: fds {fds_before} -> {fds}, /dev/shm new {:?}, zombies {zombies:?}",
            shm.difference(&shm_before).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
