//! The MPI pool under a real launcher. Run by `cargo test --features mpi --test mpi_pool`: this
//! binary (no test harness) starts itself under `mpirun --oversubscribe` with 3 and with 5
//! ranks; there rank 0 runs the scenarios below and the other ranks serve the pool. Without
//! `mpirun` on the PATH it says so and passes. `MP_TEST_MPIRUN` names another launcher, e.g.
//! MPICH's `mpiexec.mpich` for a build against MPICH (`MPICC=mpicc.mpich`).

use multiproc::{Error, TaskErrorKind};
use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

multiproc::mpi_workers!();

const PASSED: &str = "mpi_pool: every scenario passed on";

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn boom(n: u32) -> u32 {
    panic!("boom {n}")
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn segfault() -> u32 {
    // Rust's runtime handles SIGSEGV (to report stack overflows); restore the default action
    // so the process dies of the signal, as it would of a real invalid access.
    // SAFETY: signal(2) and raise(3) with valid arguments; the process is meant to die here.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    0
}

/// The rank whose local pool runs this task, and its process id.
fn rank_of_task(slow_ms: u64) -> (u32, i32) {
    let rank = env_rank();
    if rank == 1 {
        std::thread::sleep(Duration::from_millis(slow_ms));
    }
    // SAFETY: getppid(2) cannot fail.
    (rank, unsafe { libc::getppid() })
}

fn task_error<T: std::fmt::Debug>(r: multiproc::Result<T>) -> multiproc::TaskError {
    match r {
        Err(Error::Task(e)) => e,
        other => panic!("expected a task error, got {other:?}"),
    }
}

fn world_size() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .expect("under mpirun")
}

/// The rank of the process running this (a task process inherits its rank's variables),
/// under Open MPI or MPICH's launcher.
fn env_rank() -> u32 {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok()).unwrap_or(0)
}

/// Whether the launcher is Open MPI's (else MPICH's Hydra, which oversubscribes unasked).
static OPEN_MPI: OnceLock<bool> = OnceLock::new();

fn open_mpi() -> bool {
    *OPEN_MPI.get().expect("launcher probed")
}

/// Rank 0: every scenario, asserting as it goes (a failure exits non-zero, failing the run).
fn scenarios() -> multiproc::Result<()> {
    let workers = world_size() - 1;
    let p = multiproc::mpi::PoolBuilder::new().task_timeout(Duration::from_secs(3)).build()?;
    assert_eq!(p.processes(), workers);

    // map: order and values, whole and chunked.
    let want: Vec<u64> = (0..2000u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..2000u64).get()?, want);
    assert_eq!(p.map(square, 0..2000u64).chunksize(7).get()?, want);
    assert_eq!(p.starmap(add, [(1, 2), (3, 4), (5, 6)]).get()?, vec![3, 7, 11]);
    println!("map ok");

    // A task that segfaults fails alone; the job goes on.
    let e = task_error(p.apply(segfault, ()));
    assert_eq!(e.kind(), TaskErrorKind::WorkerDied, "{e}");
    assert!(e.message().contains("SIGSEGV"), "{e}");
    assert_eq!(p.apply(square, (12,))?, 144);
    println!("segfault ok: {e}");

    // A task past the timeout is killed; the job goes on.
    let t = Instant::now();
    let e = task_error(p.apply(nap, (60_000,)));
    assert_eq!(e.kind(), TaskErrorKind::TimedOut, "{e}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(p.map(square, 0..100u64).get()?, want[..100]);
    println!("timeout ok: {e}");

    // A panicking task's message reaches rank 0; in a map, the first failure is the map's.
    let e = task_error(p.apply(boom, (7,)));
    assert_eq!(e.kind(), TaskErrorKind::Panicked);
    assert!(e.message().contains("boom 7"), "{e}");
    let e = task_error(p.map(boom, [3u32]).get());
    assert!(e.message().contains("boom 3"), "{e}");
    println!("panic ok: {e}");

    // imap over an endless iterator, in order; imap_unordered gives every value.
    let first: Vec<u64> = p.imap(square, 0u64..).submit()?.take(300).collect::<multiproc::Result<_>>()?;
    assert_eq!(first, want[..300]);
    let mut any: Vec<u64> =
        p.imap_unordered(square, 0..500u64).submit()?.collect::<multiproc::Result<_>>()?;
    any.sort_unstable();
    assert_eq!(any, want[..500]);
    let chunked: Vec<u64> =
        p.imap(square, 0u64..).chunksize(7).submit()?.take(100).collect::<multiproc::Result<_>>()?;
    assert_eq!(chunked, want[..100]);
    println!("imap ok");

    // An AsyncResult is a Future.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (a, b) = (p.apply_async(square, (6,))?, p.apply_async(add, (2, 3))?);
    let (x, y) = rt.block_on(async { (a.await, b.await) });
    assert_eq!((x?, y?), (36, 5));
    println!("future ok");

    // apply_async with callbacks.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let results: Vec<_> =
        (0..50u64).map(|i| p.apply_async(square, (i,))).collect::<multiproc::Result<_>>()?;
    for r in &results {
        let s = seen.clone();
        r.callback(move |v| s.lock().unwrap().push(*v));
    }
    let failing = p.apply_async(boom, (9,))?;
    let errs = Arc::new(Mutex::new(Vec::new()));
    let e2 = errs.clone();
    failing.error_callback(move |e| e2.lock().unwrap().push(e.message().to_string()));
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.get()?, (i * i) as u64);
    }
    assert!(task_error(failing.get()).message().contains("boom 9"));
    println!("apply_async ok");

    // Load balancing: rank 1 is slow, so it gets far fewer tasks than its share, even right
    // after a run of tiny tasks has opened every rank's window wide.
    assert_eq!(p.map(square, 0..20_000u64).chunksize(1).get()?.len(), 20_000);
    let n = 120;
    let per: Vec<(u32, i32)> = p.map(rank_of_task, std::iter::repeat_n(400, n)).chunksize(1).get()?;
    let mut count: HashMap<u32, usize> = HashMap::new();
    for (r, _) in &per {
        *count.entry(*r).or_default() += 1;
    }
    let slow = count.get(&1).copied().unwrap_or(0);
    assert!(slow * 2 < n / workers, "rank 1 (slow) got {slow} of {n} tasks: {count:?}");
    assert!((1..=workers as u32).all(|r| count.contains_key(&r)), "{count:?}");
    println!("balance ok: {count:?}");
    p.close();
    p.join()?;

    // The Executor, on a second pool after the first ended.
    let ex = multiproc::mpi::PoolBuilder::new().build_executor()?;
    let f = ex.submit(square, (9,))?;
    assert_eq!(f.result()?, 81);
    let v: Vec<u64> = ex.map(square, 0..100u64).submit()?.collect::<multiproc::Result<_>>()?;
    assert_eq!(v, want[..100]);
    let f = ex.submit(boom, (4,))?;
    assert!(task_error(f.result()).message().contains("boom 4"));
    ex.shutdown();
    println!("executor ok");
    println!("{PASSED} {} ranks", workers + 1);
    Ok(())
}

/// Rank 0: chunks large enough that MPI sends them by rendezvous, in both directions at once.
fn big_chunks() -> multiproc::Result<()> {
    let p = multiproc::mpi::PoolBuilder::new().build()?;
    let n = 200_000u64;
    for _ in 0..3 {
        let v = p.map(square, 0..n).chunksize((n / 16) as usize).get()?;
        assert!(v.iter().enumerate().all(|(i, x)| *x == (i * i) as u64));
    }
    p.close();
    p.join()?;
    println!("big chunks ok");
    Ok(())
}

/// Rank 0: learns the worker ranks' pids, writes them to `$MP_TEST_PIDS` (`rank pid` lines)
/// and starts work far longer than the test waits; the test then kills or stops one rank, and
/// rank 0 must end the job naming it (fail-stop), never hang.
fn lose_a_rank(rank_timeout: Duration) -> multiproc::Result<()> {
    let p = multiproc::mpi::PoolBuilder::new().rank_timeout(rank_timeout).build()?;
    let workers = world_size() - 1;
    let mut pids: HashMap<u32, i32> = HashMap::new();
    for _ in 0..100 {
        pids.extend(p.map(rank_of_task, std::iter::repeat_n(0, 4 * workers)).chunksize(1).get()?);
        if pids.len() == workers {
            break;
        }
    }
    assert_eq!(pids.len(), workers, "every rank ran a task: {pids:?}");
    let path = std::env::var("MP_TEST_PIDS").expect("MP_TEST_PIDS");
    let text: String = pids.iter().map(|(r, pid)| format!("{r} {pid}\n")).collect();
    std::fs::write(format!("{path}.tmp"), text).unwrap();
    std::fs::rename(format!("{path}.tmp"), &path).unwrap();
    println!("pids written");
    let r = p.map(nap, std::iter::repeat_n(100, 3000)).chunksize(1).get();
    println!("unexpected: the pool answered {:?}", r.map(|v| v.len()));
    Ok(())
}

/// The host name of the process running this (a task: that of its rank's node).
fn host_of_task(_: u32) -> (u32, String) {
    (env_rank(), hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// Rank 0 on host `mpt-a`, the worker ranks on `mpt-b` (two network namespaces): values,
/// errors and the Executor cross the hosts over TCP.
fn two_hosts() -> multiproc::Result<()> {
    assert_eq!(hostname(), "mpt-a");
    let p = multiproc::mpi::PoolBuilder::new().build()?;
    let want: Vec<u64> = (0..2000u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..2000u64).get()?, want);
    let hosts: HashMap<u32, String> = p.map(host_of_task, 0..40u32).chunksize(1).get()?.into_iter().collect();
    assert!(hosts.values().all(|h| h == "mpt-b"), "{hosts:?}");
    assert!(!hosts.contains_key(&0), "{hosts:?}");
    let e = task_error(p.apply(boom, (5,)));
    assert!(e.message().contains("boom 5"), "{e}");
    let e = task_error(p.apply(segfault, ()));
    assert_eq!(e.kind(), TaskErrorKind::WorkerDied, "{e}");
    assert_eq!(p.apply(square, (11,))?, 121);
    p.close();
    p.join()?;
    let ex = multiproc::mpi::PoolBuilder::new().build_executor()?;
    assert_eq!(ex.submit(add, (40, 2))?.result()?, 42);
    ex.shutdown();
    println!("two hosts ok: rank 0 on mpt-a, worker ranks on {hosts:?}");
    Ok(())
}

/// Rank 0: a callback holds the pool's thread past the rank timeout; the ranks kept talking
/// meanwhile, so none may be counted lost.
fn slow_callback() -> multiproc::Result<()> {
    let p = multiproc::mpi::PoolBuilder::new().rank_timeout(Duration::from_millis(500)).build()?;
    let r = p.apply_async(nap, (300,))?;
    // What is tested is a callback that takes long, not a wait for anything.
    r.callback(|_| std::thread::sleep(Duration::from_secs(2)));
    assert_eq!(r.get()?, 300);
    assert_eq!(p.map(square, 0..100u64).get()?.len(), 100);
    p.close();
    p.join()?;
    println!("slow callback ok");
    Ok(())
}

/// Rank 0: the program exits with a pool still running a long task (never closed, never
/// dropped); the ranks must stop it and the job end cleanly, at once.
fn exit_with_pool_running() -> multiproc::Result<()> {
    let p = multiproc::mpi::PoolBuilder::new().build()?;
    let long = p.apply_async(nap, (120_000,))?;
    assert_eq!(p.apply(square, (5,))?, 25);
    println!("exiting with a task running");
    std::mem::forget(long);
    std::mem::forget(p);
    Ok(())
}

/// Without a launcher: a clear error, or the local pool the builder asks for.
fn without_launcher() {
    let e = multiproc::mpi::PoolBuilder::new().build().unwrap_err();
    assert!(e.to_string().contains("MPI launcher"), "{e}");
    let p = multiproc::mpi::PoolBuilder::new().fallback_local(2).build().unwrap();
    assert_eq!(p.processes(), 2);
    assert_eq!(p.map(square, 0..10u64).get().unwrap(), (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    p.close();
    p.join().unwrap();
    println!("mpi_pool: without a launcher: {e}; the fallback is a local pool");
}

struct Run {
    code: Option<i32>,
    out: String,
    took: Duration,
}

/// Runs this binary under `mpirun -n ranks`, killed past `limit`. Open MPI's shared-memory
/// segments go to a directory of this run's own, removed afterwards: a job whose ranks are
/// killed (the lost-rank scenario, or the time limit) cannot unlink them itself.
fn mpirun(mpirun: &str, ranks: usize, mode: &str, limit: Duration) -> Run {
    mpirun_with(mpirun, ranks, mode, limit, &Launch::default(), &mut |_| {})
}

/// What else a job is started with.
#[derive(Default)]
struct Launch {
    /// Set for the job.
    env: Vec<(String, String)>,
    /// A command (and arguments) that runs mpirun (a namespace to enter).
    wrap: Vec<String>,
    /// More arguments for mpirun.
    args: Vec<String>,
}

/// [`mpirun`], as `launch` says, with `tick` called with the launcher's pid while the job
/// runs (every 50 ms, as its exit is polled).
fn mpirun_with(
    mpirun: &str,
    ranks: usize,
    mode: &str,
    limit: Duration,
    launch: &Launch,
    tick: &mut dyn FnMut(u32),
) -> Run {
    let exe = std::env::current_exe().unwrap();
    let segments = std::env::temp_dir().join(format!("mp-mpi-test-{}-{mode}-{ranks}", std::process::id()));
    std::fs::create_dir_all(&segments).unwrap();
    let t = Instant::now();
    let mut cmd = match launch.wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(mpirun);
            c
        }
        None => Command::new(mpirun),
    };
    let mut child = cmd
        .args(open_mpi().then_some("--oversubscribe"))
        .args(&launch.args)
        .args(["-n", &ranks.to_string()])
        .arg(&exe)
        .arg(mode)
        .env("OMPI_MCA_btl_vader_backing_directory", &segments)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mpirun");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if t.elapsed() > limit {
            // SIGTERM first: mpirun then takes its ranks down with it (SIGKILL would leave
            // them running); SIGKILL if it has not ended after a grace period.
            // SAFETY: kill(2) of this test's own child, the launcher.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(10) && child.try_wait().unwrap().is_none() {
                // Polls the launcher's exit against the grace period.
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tick(child.id());
        // Polls the launcher's exit against the time limit.
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&segments);
    Run { code, out, took: t.elapsed() }
}

fn which(cmd: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--scenarios") => {
            if let Err(e) = scenarios() {
                eprintln!("mpi_pool: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--lose-rank") => {
            if let Err(e) = lose_a_rank(Duration::from_secs(10)) {
                eprintln!("mpi_pool: {e}");
            }
            return;
        }
        Some("--stop-rank") => {
            if let Err(e) = lose_a_rank(Duration::from_secs(2)) {
                eprintln!("mpi_pool: {e}");
            }
            return;
        }
        Some("--big") => {
            if let Err(e) = big_chunks() {
                eprintln!("mpi_pool: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--two-hosts") => {
            if let Err(e) = two_hosts() {
                eprintln!("mpi_pool: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--slow-callback") => {
            if let Err(e) = slow_callback() {
                eprintln!("mpi_pool: {e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--no-pool") => {
            println!("no pool built");
            return;
        }
        Some("--exit-running") => {
            if let Err(e) = exit_with_pool_running() {
                eprintln!("mpi_pool: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    without_launcher();
    let name = std::env::var("MP_TEST_MPIRUN").unwrap_or_else(|_| "mpirun".into());
    let Some(launcher) = which(&name) else {
        println!("mpi_pool: skipped: {name} is not on the PATH (install openmpi-bin, or MPICH)");
        return;
    };
    let version = Command::new(&launcher).arg("--version").output().expect("the launcher's version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    OPEN_MPI.set(version.contains("Open MPI") || version.contains("OpenRTE")).unwrap();
    println!("mpi_pool: launcher {launcher}: {}", version.lines().next().unwrap_or("?"));
    for ranks in [3, 5] {
        let run = mpirun(&launcher, ranks, "--scenarios", Duration::from_secs(300));
        print!("{}", run.out);
        assert_eq!(run.code, Some(0), "mpirun -n {ranks}: {:?} after {:?}", run.code, run.took);
        assert!(run.out.contains(&format!("{PASSED} {ranks} ranks")), "mpirun -n {ranks}");
        println!("mpi_pool: {ranks} ranks passed in {:.1} s", run.took.as_secs_f64());
    }
    for ranks in [3, 5] {
        let run = mpirun(&launcher, ranks, "--big", Duration::from_secs(60));
        assert_eq!(
            run.code,
            Some(0),
            "large chunks on {ranks} ranks: {:?} after {:?}: {}",
            run.code,
            run.took,
            run.out
        );
        assert!(run.out.contains("big chunks ok"), "{}", run.out);
        println!("mpi_pool: large chunks on {ranks} ranks in {:.1} s", run.took.as_secs_f64());
    }
    let run = mpirun(&launcher, 3, "--exit-running", Duration::from_secs(100));
    print!("{}", run.out);
    assert_eq!(run.code, Some(0), "exiting with a pool running: {:?} after {:?}", run.code, run.took);
    assert!(run.out.contains("exiting with a task running"));
    assert!(run.took < Duration::from_secs(60), "the running task held the job for {:?}", run.took);
    println!("mpi_pool: exiting with a pool running ended the job in {:.1} s", run.took.as_secs_f64());
    let run = mpirun(&launcher, 3, "--no-pool", Duration::from_secs(100));
    assert_eq!(
        run.code,
        Some(0),
        "a program without a pool: {:?} after {:?}: {}",
        run.code,
        run.took,
        run.out
    );
    assert_eq!(run.out.matches("no pool built").count(), 1, "only rank 0 runs main: {}", run.out);
    println!("mpi_pool: a program that builds no pool ended the job in {:.1} s", run.took.as_secs_f64());
    let run = mpirun(&launcher, 3, "--slow-callback", Duration::from_secs(100));
    assert_eq!(run.code, Some(0), "a slow callback: {:?} after {:?}: {}", run.code, run.took, run.out);
    assert!(run.out.contains("slow callback ok"), "{}", run.out);
    println!(
        "mpi_pool: a callback slower than the rank timeout lost no rank ({:.1} s)",
        run.took.as_secs_f64()
    );
    two_hosts_in_namespaces(&launcher);
    lose_rank(&launcher, libc::SIGKILL, "--lose-rank", "its process ended");
    lose_rank(&launcher, libc::SIGSTOP, "--stop-rank", "silent for");
}

/// The parent of `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The parent's pid is the second field after the command's closing parenthesis.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a process of this test's own: a rank of the job whose launcher is
/// `launcher` (its parent, or with MPICH its grandparent through Hydra's proxy), running this
/// binary.
fn is_our_rank(pid: i32, launcher: u32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let mut p = parent(pid as u32);
    let mut under_launcher = false;
    for _ in 0..2 {
        under_launcher |= p == Some(launcher);
        p = p.and_then(parent);
    }
    under_launcher && exe == std::env::current_exe().ok()
}

/// Under 3 ranks, sends `signal` to rank 2 (by the pid rank 0 wrote) once the pool is busy:
/// rank 0 must abort the job with a message naming rank 2 and its pid, in bounded time.
fn lose_rank(launcher: &str, signal: i32, mode: &str, why: &str) {
    let pids = std::env::temp_dir().join(format!("mp-mpi-test-{}-pids{mode}", std::process::id()));
    let _ = std::fs::remove_file(&pids);
    let mut victim: Option<(i32, Instant)> = None;
    let run = mpirun_with(
        launcher,
        3,
        mode,
        Duration::from_secs(120),
        &Launch { env: vec![("MP_TEST_PIDS".into(), pids.display().to_string())], ..Launch::default() },
        &mut |mpirun_pid| {
            if victim.is_some() {
                return;
            }
            let Ok(text) = std::fs::read_to_string(&pids) else { return };
            let pid = text
                .lines()
                .find_map(|l| l.strip_prefix("2 ")?.trim().parse::<i32>().ok())
                .expect("rank 2's pid");
            assert!(is_our_rank(pid, mpirun_pid), "pid {pid} is not rank 2 of this job");
            // SAFETY: kill(2) of this test's own rank process, checked just above.
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
            victim = Some((pid, Instant::now()));
        },
    );
    let _ = std::fs::remove_file(&pids);
    print!("{}", run.out);
    let (pid, at) = victim.expect("rank 0 wrote the ranks' pids");
    let after = at.elapsed();
    if signal == libc::SIGSTOP && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        // A job that failed to end leaves the stopped rank behind: end it, by its pid.
        // SAFETY: kill(2) of this test's own rank process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(run.code.is_some(), "{mode}: the job hung for {:?}", run.took);
    assert_ne!(run.code, Some(0), "{mode}: a lost rank must end the job with an error");
    assert!(!run.out.contains("unexpected: the pool answered"), "{}", run.out);
    // MPICH's launcher (Hydra) ends the whole job itself the moment a rank is killed, saying
    // so, and may take rank 0 down before it prints: that too is fail-stop with a clear message.
    let launcher_ended_it = signal == libc::SIGKILL
        && !run.out.contains("multiproc: MPI rank 2")
        && run.out.contains("BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES");
    if !launcher_ended_it {
        let named = format!("multiproc: MPI rank 2 (pid {pid} on ");
        assert!(
            run.out.contains(&named),
            "{mode}: rank 0 did not name the lost rank (exit {:?}):\n{}",
            run.code,
            run.out
        );
        assert!(run.out.contains(why), "{mode}: {why:?} missing:\n{}", run.out);
    }
    assert!(after < Duration::from_secs(30), "{mode}: the job ended {after:?} after the signal");
    let who = if launcher_ended_it { "the launcher" } else { "rank 0" };
    println!(
        "mpi_pool: {mode}: {who} named the lost rank and the job ended (exit {:?}) {:.1} s after the signal",
        run.code,
        after.as_secs_f64()
    );
}

/// Two network namespaces joined by a veth pair, as two hosts: `mpt-a` (10.231.0.1) runs
/// mpirun and rank 0, `mpt-b` (10.231.0.2) the worker ranks, reached through Open MPI's rsh
/// agent, a script that enters the namespace (with a UTS namespace of its own for the name).
/// Removed on drop.
struct TwoHosts {
    a: String,
    b: String,
    dir: std::path::PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
}

impl TwoHosts {
    fn create() -> Result<TwoHosts, String> {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root".into());
        }
        for tool in ["ip", "unshare"] {
            if which(tool).is_none() {
                return Err(format!("{tool} is not on the PATH"));
            }
        }
        let id = std::process::id();
        let net = TwoHosts {
            a: format!("mpt-a-{id}"),
            b: format!("mpt-b-{id}"),
            dir: std::env::temp_dir().join(format!("mp-mpi-test-{id}-hosts")),
        };
        ip(&["netns", "add", &net.a])?;
        ip(&["netns", "add", &net.b])?;
        let (va, vb) = (format!("mpa{id}"), format!("mpb{id}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &net.a])?;
        ip(&["link", "set", &vb, "netns", &net.b])?;
        for (ns, dev, addr) in [(&net.a, &va, "10.231.0.1/24"), (&net.b, &vb, "10.231.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        std::fs::create_dir_all(&net.dir).map_err(|e| e.to_string())?;
        // Open MPI calls the agent as `agent HOST COMMAND...`, the command meant for a shell.
        let agent = format!(
            "#!/bin/sh\nshift\nexec ip netns exec {} unshare --uts sh -c \"hostname mpt-b; $*\"\n",
            net.b
        );
        let agent_path = net.dir.join("agent.sh");
        std::fs::write(&agent_path, agent).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent_path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        std::fs::write(net.dir.join("hosts"), "10.231.0.1 slots=1\n10.231.0.2 slots=2\n")
            .map_err(|e| e.to_string())?;
        Ok(net)
    }

    fn launch(&self) -> Launch {
        let wrap = [
            "ip",
            "netns",
            "exec",
            &self.a,
            "unshare",
            "--uts",
            "sh",
            "-c",
            "hostname mpt-a && exec \"$@\"",
            "sh",
        ];
        let args = [
            "--mca",
            "plm_rsh_agent",
            &self.dir.join("agent.sh").display().to_string(),
            "--mca",
            "oob_tcp_if_include",
            "10.231.0.0/24",
            "--mca",
            "btl_tcp_if_include",
            "10.231.0.0/24",
            "--hostfile",
            &self.dir.join("hosts").display().to_string(),
        ]
        .map(String::from);
        Launch { env: Vec::new(), wrap: wrap.map(String::from).to_vec(), args: args.to_vec() }
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pool across two hosts made of network namespaces (skipped, saying why, where they
/// cannot be made).
fn two_hosts_in_namespaces(launcher: &str) {
    if !open_mpi() {
        println!("mpi_pool: two hosts in network namespaces: skipped: written for Open MPI's rsh agent");
        return;
    }
    let net = match TwoHosts::create() {
        Ok(n) => n,
        Err(why) => {
            println!("mpi_pool: two hosts in network namespaces: skipped: {why}");
            return;
        }
    };
    let run = mpirun_with(launcher, 3, "--two-hosts", Duration::from_secs(120), &net.launch(), &mut |_| {});
    drop(net);
    print!("{}", run.out);
    assert_eq!(run.code, Some(0), "two hosts: {:?} after {:?}", run.code, run.took);
    assert!(run.out.contains("two hosts ok"), "{}", run.out);
    println!(
        "mpi_pool: two hosts (network namespaces, TCP between them) passed in {:.1} s",
        run.took.as_secs_f64()
    );
}
