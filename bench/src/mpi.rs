//! The MPI rows (bench feature `mpi`): this library's MPI pool and `mpi4py.futures`'
//! `MPIPoolExecutor`, each on its own `mpirun --oversubscribe --bind-to none -n 3` job that
//! the bench starts (rank 0 runs the workloads, the other two ranks serve the pool), side by
//! side in the same run with interleaved repetitions.
//!
//! Both jobs are started at the first repetition of the first MPI row and stay up until the
//! rows are done; rank 0 of each is asked for one repetition at a time over the launcher's
//! stdin, as the CPython driver is. The CPU column is that of the whole job: the launcher's
//! process tree, read from /proc before and after the repetition.

use crate::host::Sample;
use crate::{Kind, Measure, Workload};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

multiproc::mpi_workers!();

/// Inputs of one `mpi_pool_map` repetition's map (chunk size a sixteenth of it).
pub const MAP_N: usize = 200_000;
/// Tasks of one `apply_async` block: all submitted, then every result read.
pub const APPLY_N: usize = 20_000;
/// Ranks of each job: rank 0 and two worker ranks.
const RANKS: &str = "3";
const MPI4PY: &str = "mpi4py.futures";

static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn note(s: String) {
    eprintln!("bench: {s}");
    NOTES.lock().unwrap().push(s);
}

/// What the MPI rows had to say (a job that could not start, mpi4py missing), for the tables.
pub fn notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().unwrap())
}

fn blocks(n: usize, size: usize) -> usize {
    n.div_ceil(size).max(1)
}

/// Rank 0 of this library's job (`bench --mpi-serve` under mpirun): one pool for the run,
/// one repetition per request on stdin.
pub fn serve() {
    use crate::workloads::square;
    let p = match multiproc::mpi::PoolBuilder::new().build() {
        Ok(p) => p,
        Err(e) => {
            println!("err\t{e}");
            return;
        }
    };
    assert_eq!(p.apply(square, (3,)).unwrap(), 9);
    println!("ready\tmultiprocessing's MPI pool (default PoolBuilder), {} worker ranks", p.processes());
    let want_map: u64 = (0..MAP_N as u64).map(square).fold(0, u64::wrapping_add);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let parts: Vec<&str> = line.split('\t').collect();
        if parts.first() != Some(&"run") || parts.len() < 3 {
            break;
        }
        let n: usize = parts[2].parse().unwrap_or(1);
        let t = Instant::now();
        let ops = match parts[1] {
            "mpi_pool_map" => {
                let k = blocks(n, MAP_N);
                for _ in 0..k {
                    let v = p.map(square, 0..MAP_N as u64).chunksize(MAP_N / 16).get().unwrap();
                    assert_eq!(v.into_iter().fold(0, u64::wrapping_add), want_map);
                }
                k * MAP_N
            }
            "mpi_pool_apply_async" => {
                let k = blocks(n, APPLY_N);
                for _ in 0..k {
                    let rs: Vec<_> =
                        (0..APPLY_N as u64).map(|i| p.apply_async(square, (i,)).unwrap()).collect();
                    for (i, r) in rs.into_iter().enumerate() {
                        assert_eq!(r.get().unwrap(), (i * i) as u64);
                    }
                }
                k * APPLY_N
            }
            other => {
                println!("err\tno workload {other}");
                continue;
            }
        };
        println!("ok\t{}\t{ops}", t.elapsed().as_secs_f64());
    }
    p.close();
    p.join().unwrap();
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

/// CPU seconds of `root` and its descendants, reaped ones included (as `host::tree_cpu_secs`).
fn subtree_cpu_secs(root: i32) -> f64 {
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() < 15 {
            continue;
        }
        let ticks: u64 = f[11..15].iter().map(|x| x.parse::<u64>().unwrap_or(0)).sum();
        procs.push((pid, f[1].parse::<i32>().unwrap_or(0), ticks));
    }
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &(pid, ppid, ticks) in &procs {
            if pid == p {
                total += ticks;
            }
            if ppid == p {
                stack.push(pid);
            }
        }
    }
    // SAFETY: sysconf takes a constant and no pointers.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / tck as f64
}

/// One `mpirun` job whose rank 0 serves repetitions.
struct Job {
    label: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Open MPI's shared-memory segments, in a directory of the job's own (removed at the end,
    /// even when a rank was killed).
    segments: PathBuf,
}

impl Job {
    fn start(label: &'static str, program: &[String]) -> Option<Job> {
        let Some(mpirun) = which("mpirun") else {
            note(format!(
                "{label}: mpirun is not on the PATH (Debian: apt-get install openmpi-bin); row left empty"
            ));
            return None;
        };
        let segments = std::env::temp_dir().join(format!("bench-mpi-{}-{label}", std::process::id()));
        let _ = std::fs::create_dir_all(&segments);
        let mut cmd = Command::new(mpirun);
        cmd.args(["--oversubscribe", "--bind-to", "none", "-n", RANKS])
            .args(program)
            .env("OMPI_MCA_btl_vader_backing_directory", &segments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: getuid(2) cannot fail.
        if unsafe { libc::getuid() } == 0 {
            cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                note(format!("{label}: cannot start mpirun: {e}"));
                let _ = std::fs::remove_dir_all(&segments);
                return None;
            }
        };
        crate::host::exclude_from_tree(&[child.id() as i32]);
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut job = Job { label, child, stdin, stdout, segments };
        let mut line = String::new();
        let _ = job.stdout.read_line(&mut line);
        match line.trim_end().split_once('\t') {
            Some(("ready", banner)) => {
                let what =
                    format!("{label}: {banner}, under mpirun --oversubscribe --bind-to none -n {RANKS}");
                eprintln!("  {what}");
                NOTES.lock().unwrap().push(what);
                Some(job)
            }
            _ => {
                note(format!("{label}: the job did not start ({:?}); row left empty", line.trim_end()));
                None
            }
        }
    }

    fn run(&mut self, name: &str, n: usize) -> Option<Sample> {
        let pid = self.child.id() as i32;
        let cpu0 = subtree_cpu_secs(pid);
        writeln!(self.stdin, "run\t{name}\t{n}").ok()?;
        self.stdin.flush().ok()?;
        let mut reply = String::new();
        if self.stdout.read_line(&mut reply).ok()? == 0 {
            eprintln!("{}: the job ended", self.label);
            return None;
        }
        let cpu = subtree_cpu_secs(pid) - cpu0;
        let f: Vec<&str> = reply.trim_end().split('\t').collect();
        match f.as_slice() {
            ["ok", secs, ops] => Some(Sample { secs: secs.parse().ok()?, ops: ops.parse().ok()?, cpu }),
            _ => {
                eprintln!("{} {name}: {}", self.label, reply.trim_end());
                None
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            // Polls the job's exit against the time limit.
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            eprintln!("{}: the job did not end; killing mpirun", self.label);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.segments);
    }
}

fn imports_mpi4py(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import mpi4py.futures"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pip(python: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--no-binary", "mpi4py"])
        .args(args)
        .arg("mpi4py")
        .env("MPICC", "mpicc")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
}

/// An interpreter (its full path) that imports `mpi4py.futures`: `BENCH_PYTHON` (default
/// `python3`), or a venv of the bench's own (`target/mpi4py-venv`) that has it, or the first
/// after `pip install --user mpi4py`, or else that venv, made and given it. mpi4py is built
/// from source against the installed MPI with `mpicc`.
fn python_with_mpi4py() -> Result<String, String> {
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    // The interpreter's own path: mpirun puts its own directory first on the ranks' PATH, which
    // may name another python3.
    let python = Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("{python} does not run"))?;
    if imports_mpi4py(&python) {
        return Ok(python);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/mpi4py-venv");
    let vpython = format!("{venv}/bin/python");
    if imports_mpi4py(&vpython) {
        return Ok(vpython);
    }
    if which("mpicc").is_none() {
        return Err("mpi4py is not installed and mpicc (to build it) is not on the PATH \
                    (Debian: apt-get install libopenmpi-dev)"
            .into());
    }
    note(format!(
        "mpi4py is not installed for {python}: installing it into the user site \
         (pip install --user --no-binary mpi4py mpi4py, built against this MPI with mpicc: minutes, once)"
    ));
    let why = match pip(&python, &["--user"]) {
        Ok(()) if imports_mpi4py(&python) => return Ok(python),
        Ok(()) => "installed, but it does not import".to_string(),
        Err(e) => e,
    };
    note(format!("the user site did not take it ({why}): trying a venv, {venv}"));
    let made = Command::new(&python).args(["-m", "venv", venv]).status().is_ok_and(|s| s.success());
    if !made {
        return Err(format!("mpi4py could not be installed (user site: {why}; no venv could be made)"));
    }
    match pip(&vpython, &[]) {
        Ok(()) if imports_mpi4py(&vpython) => Ok(vpython),
        Ok(()) => Err(format!("mpi4py was installed in {venv} but does not import")),
        Err(e) => Err(format!("mpi4py could not be installed (user site: {why}; venv: {e})")),
    }
}

fn start_ours() -> Option<Job> {
    let exe = std::env::current_exe().ok()?.display().to_string();
    Job::start("ours", &[exe, "--mpi-serve".into()])
}

fn start_mpi4py() -> Option<Job> {
    if std::env::args().any(|a| a == "--no-python") {
        return None;
    }
    let python = match python_with_mpi4py() {
        Ok(p) => p,
        Err(why) => {
            note(format!("{MPI4PY} column left empty: {why}"));
            return None;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mpi4py_pool.py");
    Job::start(MPI4PY, &[python, "-m".into(), MPI4PY.into(), script.into()])
}

/// A job started at its first use (once: a job that failed stays failed).
type Lazy = Rc<RefCell<Option<Option<Job>>>>;

fn on(job: &Lazy, start: fn() -> Option<Job>, name: &'static str) -> Measure {
    let job = job.clone();
    Box::new(move |n| job.borrow_mut().get_or_insert_with(start).as_mut()?.run(name, n))
}

/// The MPI rows, ours against `mpi4py.futures` as the row's peer.
pub fn workloads() -> Vec<Workload> {
    let ours: Lazy = Rc::default();
    let theirs: Lazy = Rc::default();
    let row = |name: &'static str, n0| Workload {
        name: name.to_string(),
        unit: "tasks/s",
        kind: Kind::Rate,
        n0,
        ours: on(&ours, start_ours, name),
        python: false,
        peers: vec![(MPI4PY, on(&theirs, start_mpi4py, name))],
        floor: None,
    };
    vec![row("mpi_pool_map", MAP_N), row("mpi_pool_apply_async", APPLY_N)]
}
