//! The host: CPU placement (affinity, busy loops), CPU time of a process tree, the environment
//! header, and resident memory of a process.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Instant;

/// Where the benchmark runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every CPU the process was given, nothing else started by the bench.
    Idle,
    /// Affinity set to CPU 0 before any child starts; every child inherits it.
    OneCore,
    /// Every CPU the process was given, plus one busy-looping process per CPU.
    Loaded,
}

impl Placement {
    pub const ALL: [Placement; 3] = [Placement::Idle, Placement::OneCore, Placement::Loaded];

    pub fn name(self) -> &'static str {
        match self {
            Placement::Idle => "idle",
            Placement::OneCore => "one-core",
            Placement::Loaded => "loaded",
        }
    }

    pub fn parse(s: &str) -> Option<Placement> {
        Placement::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set the kernel fills; its size is passed with it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Restricts this process (and every child started after) to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: `set` is a plain bit set built here; its size is passed with it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The busy loops of the `loaded` placement: own child processes, killed by pid when dropped.
pub struct Load {
    children: Vec<Child>,
}

impl Load {
    /// One busy-looping child per CPU in `cpus` (re-executions of this binary with `--busy-loop`).
    pub fn start(cpus: usize) -> std::io::Result<Load> {
        let exe = std::env::current_exe()?;
        let me = std::process::id().to_string();
        let mut children = Vec::new();
        for _ in 0..cpus {
            children.push(Command::new(&exe).arg("--busy-loop").arg(&me).spawn()?);
        }
        let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
        exclude_from_tree(&pids);
        Ok(Load { children })
    }

    pub fn pids(&self) -> Vec<i32> {
        self.children.iter().map(|c| c.id() as i32).collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill(); // SIGKILL to this child's pid
            let _ = c.wait();
        }
    }
}

/// The body of a `--busy-loop` child: spins until its parent dies or kills it.
pub fn busy_loop(parent: i32) -> ! {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Pids whose subtrees do not count in this process's CPU time (busy loops, the CPython driver).
static EXCLUDED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

pub fn exclude_from_tree(pids: &[i32]) {
    EXCLUDED.lock().unwrap().extend_from_slice(pids);
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf takes a constant and no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `(pid, ppid, utime + stime + cutime + cstime in ticks)` of every process in /proc.
fn all_processes() -> Vec<(i32, i32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name is in parentheses and may hold anything; fields follow the last ')'.
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // f[0] = state (field 3), f[1] = ppid (4), f[11..15] = utime stime cutime cstime (14..17)
        if f.len() < 15 {
            continue;
        }
        let ppid = f[1].parse().unwrap_or(0);
        let ticks: u64 = f[11..15].iter().map(|x| x.parse::<u64>().unwrap_or(0)).sum();
        out.push((pid, ppid, ticks));
    }
    out
}

/// CPU seconds (user + system) of this process and all its descendants, including the
/// descendants already reaped (their time is in their parent's `cutime`/`cstime`). The
/// difference of two readings is the CPU the tree spent in between, helpers (forkserver, pool
/// workers, manager server) included; excluded subtrees are left out.
pub fn tree_cpu_secs() -> f64 {
    let root = std::process::id() as i32;
    let excluded = EXCLUDED.lock().unwrap().clone();
    let procs = all_processes();
    let mut children: HashMap<i32, Vec<(i32, u64)>> = HashMap::new();
    let mut own = 0;
    for &(pid, ppid, ticks) in &procs {
        if pid == root {
            own = ticks;
        }
        children.entry(ppid).or_default().push((pid, ticks));
    }
    let mut total = own;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &(c, ticks) in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if !excluded.contains(&c) {
                total += ticks;
                stack.push(c);
            }
        }
    }
    total as f64 / clk_tck()
}

/// One timed region: wall time and the CPU time of this process tree.
pub struct Meter {
    cpu0: f64,
    t0: Instant,
}

/// What one repetition measured: `ops` operations (or MiB, for byte workloads) in `secs`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sample {
    pub secs: f64,
    pub ops: f64,
    pub cpu: f64,
}

impl Meter {
    pub fn start() -> Meter {
        let cpu0 = tree_cpu_secs();
        Meter { cpu0, t0: Instant::now() }
    }

    pub fn stop(self, ops: f64) -> Sample {
        let secs = self.t0.elapsed().as_secs_f64();
        Sample { secs, ops, cpu: tree_cpu_secs() - self.cpu0 }
    }
}

/// Resident set size of a process, KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The environment a run's figures belong to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Environment {
    pub cpu_model: String,
    pub online_cpus: usize,
    pub threads_per_core: usize,
    pub smt_active: String,
    pub affinity: Vec<usize>,
    pub cgroup_cpu_max: String,
    pub kernel: String,
    pub loadavg: String,
    pub python: String,
    pub commit: String,
}

pub fn environment(python: &str) -> Environment {
    let cpu_model = read("/proc/cpuinfo")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    // SAFETY: sysconf takes a constant and no pointers.
    let online_cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let threads_per_core = read("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
        .map(|s| cpu_list_len(&s))
        .unwrap_or(1);
    let kernel = {
        // SAFETY: uname fills the struct it is given.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } == 0 {
            let f = |b: &[libc::c_char]| {
                b.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect::<String>()
            };
            format!("{} {} {}", f(&u.sysname), f(&u.release), f(&u.machine))
        } else {
            "unknown".into()
        }
    };
    let commit = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    Environment {
        cpu_model,
        online_cpus,
        threads_per_core,
        smt_active: read("/sys/devices/system/cpu/smt/active").unwrap_or_else(|| "unknown".into()),
        affinity: allowed_cpus(),
        cgroup_cpu_max: read("/sys/fs/cgroup/cpu.max").unwrap_or_else(|| "none".into()),
        kernel,
        loadavg: read("/proc/loadavg").unwrap_or_default(),
        python: python.to_string(),
        commit,
    }
}

/// Number of CPUs in a list such as `0-3,8,10-11`.
fn cpu_list_len(s: &str) -> usize {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0),
            None => 1,
        })
        .sum()
}

impl Environment {
    pub fn header(&self) -> String {
        format!(
            "cpu: {} | online CPUs {} ({} thread(s)/core, SMT {}) | affinity {:?} | cgroup cpu.max {}\n\
             kernel: {} | load average at start: {} | commit {}\npython: {}",
            self.cpu_model,
            self.online_cpus,
            self.threads_per_core,
            self.smt_active,
            self.affinity,
            self.cgroup_cpu_max,
            self.kernel,
            self.loadavg,
            self.commit,
            self.python
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len("0-3,8,10-11"), 7);
        assert_eq!(cpu_list_len("0,64"), 2);
    }

    #[test]
    fn tree_cpu_counts_a_reaped_child() {
        let before = tree_cpu_secs();
        // SAFETY: the child only burns CPU (clock_gettime in a loop) and calls `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            crate::workloads::burn(100_000);
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: `st` is a valid out-pointer; `pid` is our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        let spent = tree_cpu_secs() - before;
        assert!(spent >= 0.08, "a reaped child's 100 ms of CPU count in the tree: {spent}");
    }
}
