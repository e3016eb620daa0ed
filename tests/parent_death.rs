//! Parent death: when the parent of a pool, of a manager or of plain children is killed with
//! SIGKILL (no exit handler runs), no process of its tree outlives it by more than a second.
//!
//! Each test starts an intermediate process that builds the tree and reports back through a
//! pipe; the test lists every descendant of the intermediate from `/proc`, kills the
//! intermediate by its pid, and polls until all of them are gone (zombies count as gone: they no
//! longer run, and whoever inherits them reaps them).

use multiproc::{get_context, Connection, Manager, Pipe, Pool, Process, SharedMemory, StartMethod};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every descendant of `root` now running.
fn descendants(root: i32) -> HashSet<i32> {
    let mut all = HashSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if let Some((state, ppid)) = stat(pid) {
                if ppid == p && state != 'Z' && all.insert(pid) {
                    frontier.push(pid);
                }
            }
        }
    }
    all
}

fn running(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Kills `parent` and waits up to a second for every process of `tree` to stop.
fn kill_and_expect_tree_gone(parent: &Process, tree: &HashSet<i32>, what: &str) {
    parent.kill().unwrap();
    let t = Instant::now();
    loop {
        let left: Vec<i32> = tree.iter().copied().filter(|&p| running(p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{what}: still running after 1 s: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    parent.join().unwrap();
}

fn worker_pid(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(5));
    std::process::id()
}

fn hold_forever(conn: Connection) {
    let _ = conn.recv::<u8>();
}

/// Builds the tree for `kind`, reports "ready" (and a shared-memory name), then waits to die.
fn build_tree(kind: u8, report: Connection) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    let (_keep, hold) = Pipe::duplex().unwrap();
    let _pool;
    let _manager;
    let mut _children = Vec::new();
    match kind {
        0 => {
            let pool = Pool::new(2).unwrap();
            let pids: HashSet<u32> = pool.map(worker_pid, 0..64u32).get().unwrap().into_iter().collect();
            assert!(!pids.is_empty());
            _pool = pool;
        }
        1 => {
            let m = Manager::start().unwrap();
            let l = m.list::<u32>([]).unwrap();
            l.append(1).unwrap();
            _manager = (m, l);
        }
        _ => {
            for m in METHODS {
                let (_, theirs) = Pipe::duplex().unwrap();
                _children.push(get_context(Some(m)).process(hold_forever, (theirs,)).start().unwrap());
            }
        }
    }
    report.send(&shm.name().to_string()).unwrap();
    hold_forever(hold);
}

fn run(kind: u8, what: &str) {
    for m in METHODS {
        let (mine, theirs) = Pipe::duplex().unwrap();
        let parent = Process::builder(build_tree, (kind, theirs)).start_method(m).start().unwrap();
        let shm_name: String = mine.recv().unwrap();
        let tree = descendants(parent.pid().unwrap());
        assert!(!tree.is_empty(), "{what} ({m}): the tree has processes");
        kill_and_expect_tree_gone(&parent, &tree, &format!("{what} ({m})"));
        // The killed creator's block is unlinked by the next create in any process.
        drop(SharedMemory::create(None, 16).unwrap());
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{}", shm_name.trim_start_matches('/'))).exists(),
            "{what} ({m}): {shm_name} left in /dev/shm"
        );
    }
}

#[test]
fn a_killed_parent_takes_its_pool_with_it() {
    run(0, "pool");
}

#[test]
fn a_killed_parent_takes_its_manager_with_it() {
    run(1, "manager");
}

#[test]
fn a_killed_parent_takes_its_children_with_it() {
    run(2, "children");
}
