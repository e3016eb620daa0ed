//! The CPython side: `python/anchor.py --serve`, one process for a placement's whole run, asked
//! for one repetition at a time so that its repetitions interleave with ours.

use crate::host::Sample;
use multiproc::StartMethod;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What the driver says of itself: version, start method, affinity.
    pub banner: String,
}

impl Driver {
    /// Starts the driver with the start method pinned and the affinity `cpus` set (it also
    /// inherits ours). `BENCH_PYTHON` names the interpreter (default `python3`). None, with a
    /// message, when it cannot start.
    pub fn start(method: StartMethod, cpus: &[usize]) -> Option<Driver> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/anchor.py");
        let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let cpu_list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let spawned = Command::new(&python)
            .arg(script)
            .args(["--serve", "--method", method.name(), "--cpus", &cpu_list])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{python} not available ({e}); CPython columns left empty");
                return None;
            }
        };
        crate::host::exclude_from_tree(&[child.id() as i32]);
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut d = Driver { child, stdin, stdout, banner: String::new() };
        match d.ask("hello") {
            Some(b) => d.banner = b.replace('\t', " | "),
            None => {
                eprintln!("the CPython driver did not start; CPython columns left empty");
                return None;
            }
        }
        Some(d)
    }

    /// Sends one command line; the reply's payload after `ok\t`, or None (printed) on `err`.
    fn ask(&mut self, line: &str) -> Option<String> {
        writeln!(self.stdin, "{line}").ok()?;
        self.stdin.flush().ok()?;
        let mut reply = String::new();
        if self.stdout.read_line(&mut reply).ok()? == 0 {
            eprintln!("CPython driver exited");
            return None;
        }
        let reply = reply.trim_end();
        match reply.split_once('\t') {
            Some(("ok", rest)) => Some(rest.to_string()),
            _ => {
                eprintln!("CPython {line:?}: {reply}");
                None
            }
        }
    }

    /// One repetition of `name` with `n` operations.
    pub fn run(&mut self, name: &str, n: usize, method: StartMethod) -> Option<Sample> {
        let r = self.ask(&format!("run\t{name}\t{n}\t{}", method.name()))?;
        let f: Vec<f64> = r.split('\t').filter_map(|x| x.parse().ok()).collect();
        (f.len() == 3).then(|| Sample { secs: f[0], ops: f[1], cpu: f[2] })
    }

    /// Latency samples (ns) of `name`, paced at `interval_ns` (0 = closed loop).
    pub fn latency(
        &mut self,
        name: &str,
        interval_ns: u64,
        n: usize,
        method: StartMethod,
    ) -> Option<Vec<u64>> {
        let r = self.ask(&format!("lat\t{name}\t{interval_ns}\t{n}\t{}", method.name()))?;
        Some(r.split(' ').filter_map(|x| x.parse().ok()).collect())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under fork the echo child inherits the parent's end of the pipe, so it must be stopped by
    /// a message, not by the parent closing its end; and the driver must report the start method
    /// it was pinned to.
    #[test]
    fn cpython_driver_runs_round_trips_under_fork() {
        let Some(mut d) = Driver::start(StartMethod::Fork, &crate::host::allowed_cpus()) else {
            eprintln!("skipped: no python3 to run the CPython driver");
            return;
        };
        assert!(d.banner.contains("start method fork"), "{}", d.banner);
        for _ in 0..2 {
            let s = d.run("pipe_roundtrip", 200, StartMethod::Fork).expect("a repetition");
            assert_eq!(s.ops, 200.0);
        }
        let lat = d.latency("pipe_roundtrip", 0, 50, StartMethod::Fork).expect("latency samples");
        assert_eq!(lat.len(), 50);
        assert!(d.run("no_such_workload", 1, StartMethod::Fork).is_none());
    }
}
