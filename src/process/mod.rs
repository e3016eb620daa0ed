//! Processes that run Rust functions: [`Process`], [`spawn`], start methods and the module
//! functions of Python's `multiprocessing` (`current_process`, `active_children`, ...).
//!
//! How a child starts: the parent encodes the target's *entry* (see `target.rs`) and the
//! arguments, creates the child with one of the three [`StartMethod`]s (`launch.rs`), and the
//! child runs the entry and exits through `child::exit`. The parent holds a pidfd for each child:
//! `join` polls it, `terminate`/`kill` signal through it (never a reused pid), and `sentinel`
//! exposes it for `poll`/`connection::wait`.

#[cfg(feature = "tokio")]
mod aio;
mod child;
mod entries;
mod forkserver;
mod launch;
mod launcher;
mod partial;
mod state;

pub use crate::target::{ContextTarget, Target};
pub(crate) use child::{last_panic, print_panics};
pub use entries::{ProcessOutput, Run as RunProcess};
pub use partial::{partial, Partial};

use crate::error::{ChildError, ChildFailure, Error, Result};
use crate::sync::lock;
use crate::sys;
use crate::target::{self, EntryOffset};
use crate::wire::{self, frame};
use entries::Outcome;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a child process is created (Python's start methods).
///
/// Exhaustive: these are the three POSIX start methods Python has had since 3.4, so a `match`
/// needs no wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartMethod {
    /// `fork()` the calling process: fastest; the child is a copy of the parent. Forking a
    /// multithreaded parent is allowed and logged as a warning, as Python 3.12 does.
    Fork,
    /// Re-execute this program; the child runs only the target, never `main`.
    Spawn,
    /// Fork from a small single-threaded server process started by re-exec. The default, as in
    /// Python 3.14.
    Forkserver,
}

impl StartMethod {
    /// Python's name for it: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::Forkserver),
            other => Err(Error::invalid(format!("cannot find context for {other:?}"))),
        }
    }
}

/// How a process ended: Python's `exitcode` (the exit code, or minus the signal number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitStatus(i32);

impl ExitStatus {
    fn from_wait(w: sys::WaitStatus) -> Self {
        match w {
            sys::WaitStatus::Exited(code) => ExitStatus(code),
            sys::WaitStatus::Signaled(sig) => ExitStatus(-sig),
        }
    }
    /// Python's `exitcode`: 0 on success, the exit code, or `-N` when killed by signal `N`.
    pub fn exitcode(self) -> i32 {
        self.0
    }
    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self.0 == 0
    }
    /// The exit code, unless a signal ended the process.
    pub fn code(self) -> Option<i32> {
        (self.0 >= 0).then_some(self.0)
    }
    /// The signal that ended the process, if one did.
    pub fn signal(self) -> Option<i32> {
        (self.0 < 0).then_some(-self.0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal() {
            Some(sig) => write!(f, "killed by {}", sys::signal_name(sig)),
            None => write!(f, "exit code {}", self.0),
        }
    }
}

/// Arguments encoded when the process object was made, waiting for `start`.
struct Pending {
    entry: EntryOffset,
    args: Result<(Vec<u8>, Vec<OwnedFd>)>,
}

enum Run {
    Created(Box<Pending>),
    Started,
    Exited(ExitStatus),
    Closed,
}

struct Inner {
    created_in: i32,
    ident: Vec<u32>,
    name: Mutex<String>,
    daemon: Mutex<bool>,
    method: Option<StartMethod>,
    run: Mutex<Run>,
    pid: OnceLock<i32>,
    pidfd: OnceLock<OwnedFd>,
}

/// A process object, as Python's `multiprocessing.Process`: a target function with its
/// arguments, run in a child process once started.
///
/// The target is a fn item or a closure that captures nothing; the arguments are a tuple of
/// serde values (or handles of this crate: connections, queues, locks) that are encoded when the
/// process object is made. A `Process` is a cheap handle: clones refer to the same child.
///
/// [`Process::new`] makes one with the defaults; [`Process::builder`] sets its name, daemon
/// flag or start method first (Python's `Process(target=, args=, name=, daemon=)`).
///
/// ```
/// use multiproc::Process;
///
/// fn square(n: u64) {
///     println!("The Square is {}", n * n);
/// }
///
/// let p = Process::new(square, (5,)); // Python's `p = Process(target=square, args=(5,))`
/// p.set_name("sq"); // `p.name = "sq"`
/// p.start()?;
/// assert_eq!(p.join()?.exitcode(), 0);
///
/// let p = Process::builder(square, (6,)).name("sq6").start()?;
/// assert_eq!(p.name(), "sq6");
/// assert!(p.join()?.success());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

fn encode_args<A: Serialize>(args: &A) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut bytes = Vec::new();
    let raw = wire::encode(args, &mut bytes)?;
    let fds = raw
        .into_iter()
        .map(|fd| sys::dup_cloexec(fd).map_err(Error::io("duplicating a handle for a child")))
        .collect::<Result<_>>()?;
    Ok((bytes, fds))
}

/// A [`Process`] being set up: its name, daemon flag and start method, before the process
/// object exists (Python's `name=` and `daemon=` keywords of `Process(...)`). Made by
/// [`Process::builder`], [`ProcessBuilder::from_run`], [`ProcessBuilder::with_context`] or
/// [`Context::process_builder`].
///
/// The target and its arguments are fixed when the builder is made: the arguments are encoded
/// then (an argument that cannot be encoded is reported by `start`), and the process takes its
/// default name, `Process-N`, then too. [`build`](Self::build) gives the process object, not
/// started (Python's `p = Process(...)`); [`start`](Self::start) also starts it.
///
/// ```
/// use multiproc::{Process, StartMethod};
///
/// fn greet(who: String) {
///     println!("hello, {who}");
/// }
///
/// let p = Process::builder(greet, ("world".to_string(),))
///     .name("greeter")
///     .start_method(StartMethod::Spawn)
///     .start()?;
/// assert_eq!(p.name(), "greeter");
/// assert!(!p.daemon());
/// assert!(p.join()?.success());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a process builder does nothing until `build` or `start`"]
pub struct ProcessBuilder {
    created_in: i32,
    ident: Vec<u32>,
    name: String,
    daemon: bool,
    method: Option<StartMethod>,
    pending: Box<Pending>,
}

impl ProcessBuilder {
    /// A builder for a process that will run `target(args...)`; the same as
    /// [`Process::builder`].
    pub fn new<F, A>(target: F, args: A) -> ProcessBuilder
    where
        F: Target<A>,
        F::Output: ProcessOutput,
        A: Serialize + DeserializeOwned + 'static,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = target;
        Self::from_entry(EntryOffset::of(entries::process_entry::<F, A>), encode_args(&args))
    }

    /// A builder for a process that will run `value`'s [`run`](RunProcess::run) method in the
    /// child; see [`Process::from_run`].
    ///
    /// ```
    /// use multiproc::{ProcessBuilder, Run, StartMethod};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Exit(i32);
    ///
    /// impl Run for Exit {
    ///     type Output = Result<(), String>;
    ///     fn run(&mut self) -> Result<(), String> {
    ///         if self.0 == 0 { Ok(()) } else { Err(format!("asked to fail with {}", self.0)) }
    ///     }
    /// }
    ///
    /// let p = ProcessBuilder::from_run(&Exit(3)).start_method(StartMethod::Spawn).start()?;
    /// assert_eq!(p.join()?.exitcode(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_run<T: RunProcess>(value: &T) -> ProcessBuilder {
        Self::from_entry(EntryOffset::of(entries::run_entry::<T>), encode_args(value))
    }

    /// What Python's `Process.__init__` does: counts the process, names it and fixes its place
    /// in the process tree, and keeps the encoded arguments for `start`.
    fn from_entry(entry: EntryOffset, args: Result<(Vec<u8>, Vec<OwnedFd>)>) -> ProcessBuilder {
        // Early, while no other thread is likely to be panicking (see the function's doc).
        child::install_panic_capture();
        let (name, ident, daemon) = {
            let mut st = state::lock();
            st.counter += 1;
            let mut ident = st.identity.ident.clone();
            ident.push(st.counter);
            let digits: Vec<String> = ident.iter().map(u32::to_string).collect();
            (format!("Process-{}", digits.join(":")), ident, st.identity.daemon)
        };
        ProcessBuilder {
            created_in: sys::getpid(),
            ident,
            name,
            daemon,
            method: None,
            pending: Box::new(Pending { entry, args }),
        }
    }

    /// Names the process (Python's `name=`), in place of `Process-N`.
    pub fn name(self, name: impl Into<String>) -> Self {
        ProcessBuilder { name: name.into(), ..self }
    }

    /// Sets the daemon flag (Python's `daemon=`): daemonic children are terminated when their
    /// parent exits, and may not start children of their own. By default a process is daemonic
    /// when the process making it is.
    pub fn daemon(self, daemon: bool) -> Self {
        ProcessBuilder { daemon, ..self }
    }

    /// Starts the process with `method` instead of the process-wide default.
    pub fn start_method(self, method: StartMethod) -> Self {
        ProcessBuilder { method: Some(method), ..self }
    }

    /// The process object, not yet started (Python's `p = Process(...)`); nothing runs until
    /// [`Process::start`].
    pub fn build(self) -> Process {
        Process {
            inner: Arc::new(Inner {
                created_in: self.created_in,
                ident: self.ident,
                name: Mutex::new(self.name),
                daemon: Mutex::new(self.daemon),
                method: self.method,
                run: Mutex::new(Run::Created(self.pending)),
                pid: OnceLock::new(),
                pidfd: OnceLock::new(),
            }),
        }
    }

    /// Builds the process object and starts it: [`build`](Self::build), then
    /// [`Process::start`], whose errors it returns.
    pub fn start(self) -> Result<Process> {
        let p = self.build();
        p.start_inner(false)?;
        Ok(p)
    }
}

impl fmt::Debug for ProcessBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("start_method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// A process object that will run `target(args...)` (Python's `Process(target=, args=)`).
    ///
    /// Named `Process-N` (`Process-3:1` for the first child of `Process-3`), not daemonic unless
    /// the current process is, with the process-wide start method; [`Process::builder`] sets
    /// these first. Nothing runs until [`start`](Self::start).
    pub fn new<F, A>(target: F, args: A) -> Process
    where
        F: Target<A>,
        F::Output: ProcessOutput,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::new(target, args).build()
    }

    /// A [`ProcessBuilder`] for `target(args...)`: set the name, the daemon flag or the start
    /// method, then [`build`](ProcessBuilder::build) the process object or
    /// [`start`](ProcessBuilder::start) it.
    ///
    /// ```
    /// use multiproc::{Process, StartMethod};
    ///
    /// fn nothing() {}
    ///
    /// let p = Process::builder(nothing, ()).name("idle").daemon(true).build();
    /// assert_eq!((p.name(), p.daemon()), ("idle".to_string(), true));
    /// p.start()?;
    /// p.join()?;
    ///
    /// let q = Process::builder(nothing, ()).start_method(StartMethod::Fork).start()?;
    /// assert!(q.join()?.success());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder<F, A>(target: F, args: A) -> ProcessBuilder
    where
        F: Target<A>,
        F::Output: ProcessOutput,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::new(target, args)
    }

    /// A process object that will run `value`'s [`run`](RunProcess::run) method in the child
    /// (Python's `class Worker(Process)` with a `run` method): the value is encoded now and the
    /// child calls `run` on its decoded copy, under whichever start method the process uses.
    /// [`ProcessBuilder::from_run`] sets the name, daemon flag or start method first.
    ///
    /// ```
    /// use multiproc::{Process, Run};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Exit(i32);
    ///
    /// impl Run for Exit {
    ///     type Output = Result<(), String>;
    ///     fn run(&mut self) -> Result<(), String> {
    ///         if self.0 == 0 { Ok(()) } else { Err(format!("asked to fail with {}", self.0)) }
    ///     }
    /// }
    ///
    /// let p = Process::from_run(&Exit(3));
    /// p.start()?;
    /// assert_eq!(p.join()?.exitcode(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_run<T: RunProcess>(value: &T) -> Process {
        ProcessBuilder::from_run(value).build()
    }

    /// The process's name (Python's `p.name`).
    pub fn name(&self) -> String {
        lock(&self.inner.name).clone()
    }

    /// Renames the process (Python's `p.name = ...`), before or after start; a started child
    /// keeps the name it started with.
    pub fn set_name(&self, name: impl Into<String>) {
        *lock(&self.inner.name) = name.into();
    }

    /// Whether the process is daemonic (Python's `p.daemon`).
    pub fn daemon(&self) -> bool {
        *lock(&self.inner.daemon)
    }

    /// Sets the daemon flag (Python's `p.daemon = ...`); an error once the process has started.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        if !matches!(*lock(&self.inner.run), Run::Created(_)) {
            return Err(Error::invalid("process has already started"));
        }
        *lock(&self.inner.daemon) = daemon;
        Ok(())
    }

    /// The process id once started (Python's `pid` and `ident`).
    #[doc(alias = "ident")]
    pub fn pid(&self) -> Option<i32> {
        self.inner.pid.get().copied()
    }

    /// Python's `_identity`: the position in the process tree (`[3, 1]` for `Process-3:1`).
    pub fn ident_path(&self) -> &[u32] {
        &self.inner.ident
    }

    /// Starts the child (Python's `start()`); returns a handle to the same process, so both
    /// `p.start()?;` and `let p = Process::new(..).start()?;` read naturally (as does
    /// [`ProcessBuilder::start`]).
    ///
    /// Errors: starting twice, starting from a daemonic process, starting a closed process, or
    /// arguments that could not be encoded.
    pub fn start(&self) -> Result<Process> {
        self.start_inner(false)?;
        Ok(self.clone())
    }

    fn start_inner(&self, with_result: bool) -> Result<Option<OwnedFd>> {
        if sys::getpid() != self.inner.created_in {
            return Err(Error::invalid("can only start a process object created by the current process"));
        }
        let me = state::identity();
        if me.daemon {
            return Err(Error::invalid("daemonic processes are not allowed to have children"));
        }
        let mut run = lock(&self.inner.run);
        let pending = match std::mem::replace(&mut *run, Run::Started) {
            Run::Created(p) => p,
            other => {
                let msg = match other {
                    Run::Closed => Error::Closed("process"),
                    _ => Error::invalid("cannot start a process twice"),
                };
                *run = other;
                return Err(msg);
            }
        };
        let (payload, arg_fds) = match pending.args {
            Ok(a) => a,
            Err(e) => {
                *run = Run::Exited(ExitStatus(1));
                return Err(e);
            }
        };
        let (ours, theirs) = if with_result {
            let (a, b) = sys::socketpair().map_err(Error::io("creating the result socket"))?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let method = self.inner.method.unwrap_or_else(get_start_method);
        let req = child::RunRequest {
            entry: pending.entry,
            name: self.name(),
            ident: self.inner.ident.clone(),
            daemon: self.daemon(),
            parent_pid: sys::getpid(),
            parent_name: me.name,
            start_method: method,
            n_arg_fds: arg_fds.len() as u32,
            has_result: with_result,
            authkeys: crate::connection::keyring::for_child(),
            has_gate: false,
        };
        let started = match launch::launch(method, req, payload, arg_fds, theirs) {
            Ok(s) => s,
            Err(e) => {
                *run = Run::Exited(ExitStatus(1));
                return Err(e);
            }
        };
        let _ = self.inner.pid.set(started.pid);
        let _ = self.inner.pidfd.set(started.pidfd);
        drop(run);
        state::register_child(self.clone());
        Ok(ours)
    }

    fn check_child(&self, what: &str) -> Result<()> {
        if sys::getpid() != self.inner.created_in {
            return Err(Error::invalid(format!("can only {what} a child process")));
        }
        Ok(())
    }

    /// Reaps the child if it has exited; `Ok(None)` while it runs.
    fn poll_exit(&self) -> Result<Option<ExitStatus>> {
        let mut run = lock(&self.inner.run);
        match &*run {
            Run::Created(_) => Err(Error::invalid("process has not been started")),
            Run::Closed => Err(Error::Closed("process")),
            Run::Exited(status) => Ok(Some(*status)),
            Run::Started => {
                let pidfd = self.inner.pidfd.get().expect("started process has a pidfd");
                match sys::waitid_pidfd(pidfd.as_fd(), false).map_err(Error::io("waiting for a child"))? {
                    None => Ok(None),
                    Some(w) => {
                        let status = ExitStatus::from_wait(w);
                        *run = Run::Exited(status);
                        Ok(Some(status))
                    }
                }
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        self.check_child("join")?;
        let mut status = self.poll_exit()?;
        if status.is_none() {
            let pidfd = self.inner.pidfd.get().expect("started process has a pidfd");
            if sys::poll_readable(&[pidfd.as_fd()], deadline)
                .map_err(Error::io("waiting for a child"))?
                .is_some()
            {
                status = self.poll_exit()?;
            }
        }
        if status.is_some() {
            // As Python's `join` discards the child from `_children`: a joined child's pidfd
            // is not kept alive by the list of children.
            state::forget_child(&self.inner);
        }
        Ok(status)
    }

    /// Waits for the process to end (Python's `join()`), and returns how it ended.
    pub fn join(&self) -> Result<ExitStatus> {
        Ok(self.wait_until(None)?.expect("an unbounded wait ends with the process"))
    }

    /// Waits at most `timeout` (Python's `join(timeout)`): `Ok(None)` if the process still runs.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.wait_until(sys::deadline_after(Some(timeout)))
    }

    /// Whether the process has started and not yet ended (Python's `is_alive()`); `false`
    /// before start and after close.
    pub fn is_alive(&self) -> bool {
        matches!(self.poll_exit(), Ok(None))
    }

    /// Python's `exitcode`: `None` before start and while running, else the exit code or minus
    /// the signal number.
    pub fn exitcode(&self) -> Option<i32> {
        self.poll_exit().ok().flatten().map(ExitStatus::exitcode)
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        self.check_child("signal")?;
        if self.poll_exit()?.is_some() {
            return Ok(());
        }
        let pidfd = self.inner.pidfd.get().expect("started process has a pidfd");
        match sys::pidfd_send_signal(pidfd.as_fd(), sig) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r.map_err(Error::io("signalling a child")),
        }
    }

    /// Sends SIGTERM (Python's `terminate()`); the exit code becomes `-15` unless the child
    /// handles the signal. A no-op once the process has ended.
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`); the exit code becomes `-9`.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Releases the process object (Python's `close()`). An error while the process runs;
    /// afterwards every other method reports [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        let status = match self.poll_exit() {
            Err(Error::Closed(_)) => return Ok(()),
            Err(_) => None,
            Ok(s) => s,
        };
        let mut run = lock(&self.inner.run);
        match (&*run, status) {
            (Run::Started, None) => Err(Error::invalid(
                "cannot close a process while it is still running; join() or terminate() it first",
            )),
            _ => {
                *run = Run::Closed;
                Ok(())
            }
        }
    }

    /// A descriptor that becomes readable when the process ends (Python's `sentinel`): its
    /// pidfd, usable with `poll(2)` or [`connection::wait`](crate::connection::wait).
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        match &*lock(&self.inner.run) {
            Run::Created(_) => return Err(Error::invalid("process has not been started")),
            Run::Closed => return Err(Error::Closed("process")),
            _ => {}
        }
        match self.inner.pidfd.get() {
            Some(pidfd) => Ok(pidfd.as_fd()),
            None => Err(Error::invalid("process failed to start")),
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*lock(&self.inner.run) {
            Run::Created(_) => "initial".to_string(),
            Run::Started => "started".to_string(),
            Run::Exited(s) => format!("stopped exitcode={}", s.exitcode()),
            Run::Closed => "closed".to_string(),
        };
        write!(f, "<Process name='{}' ", self.name())?;
        if let Some(pid) = self.pid() {
            write!(f, "pid={pid} ")?;
        }
        write!(f, "{state}")?;
        if self.daemon() {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}

/// A child started by [`spawn`], whose [`join`](Self::join) returns the target's value.
///
/// ```
/// fn cube(n: u64) -> u64 {
///     n * n * n
/// }
/// let handle = multiproc::spawn(cube, (5,))?;
/// assert_eq!(handle.join()?, 125);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinHandle<R> {
    process: Process,
    result: OwnedFd,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// The process object.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.process.pid().expect("a spawned process has a pid")
    }

    /// Whether the child has finished (its result, if any, is ready).
    pub fn is_finished(&self) -> bool {
        !self.process.is_alive()
    }

    /// Waits for the child and returns the target's value, or how the child failed: its panic
    /// message (and backtrace when `RUST_BACKTRACE` was set), the signal that killed it, or the
    /// code it exited with.
    pub fn join(self) -> Result<R> {
        self.wait_for_result_or_exit(None)?;
        self.finish()
    }

    /// As [`join`](Self::join), waiting at most `timeout` for the result (or the child's end);
    /// gives the handle back if neither came.
    pub fn join_timeout(self, timeout: Duration) -> std::result::Result<Result<R>, JoinHandle<R>> {
        match self.wait_for_result_or_exit(sys::deadline_after(Some(timeout))) {
            Ok(false) => Err(self),
            Ok(true) => Ok(self.finish()),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Waits until the result socket is readable or the child has ended; `false` on timeout.
    ///
    /// Not the socket alone: its end-of-file comes only when *every* copy of the child's end is
    /// closed, and a process that inherited one (a raw `fork` in the target, or a `Fork` child
    /// of another thread started while the socket was being set up) may keep it open long after
    /// the child died.
    fn wait_for_result_or_exit(&self, deadline: Option<Instant>) -> Result<bool> {
        let pidfd = self.process.sentinel()?;
        let ready = sys::poll_readable(&[self.result.as_fd(), pidfd], deadline)
            .map_err(Error::io("waiting for a child"))?;
        Ok(ready.is_some())
    }

    /// Reads the result, waits for the child to end, and turns both into the value or the error.
    fn finish(self) -> Result<R> {
        let received = self.read_result()?;
        let status = self.process.join()?;
        self.conclude(received, status)
    }

    /// Reads the result frame (without waiting for more once the child has ended).
    fn read_result(&self) -> Result<Result<(Vec<u8>, Vec<OwnedFd>)>> {
        if self.process.poll_exit()?.is_some() {
            // Everything the child sent is buffered by now; never wait for more (see above).
            sys::set_nonblocking(self.result.as_fd()).map_err(Error::io("reading a child's result"))?;
        }
        Ok(frame::recv(self.result.as_fd(), usize::MAX))
    }

    /// Turns the result read and the child's exit status into the value or the error.
    fn conclude(self, received: Result<(Vec<u8>, Vec<OwnedFd>)>, status: ExitStatus) -> Result<R> {
        let child_error =
            |failure| Error::Child(ChildError { pid: self.pid(), name: self.process.name(), failure });
        let no_result = || match status.signal() {
            Some(sig) => child_error(ChildFailure::Signaled(sig)),
            None => child_error(ChildFailure::Exited(status.exitcode())),
        };
        let (bytes, _) = match received {
            Ok(msg) => msg,
            Err(Error::Eof) => return Err(no_result()),
            // Nothing (or only part of a frame) was buffered when the child died.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(no_result())
            }
            Err(Error::Decode(_)) if !status.success() => return Err(no_result()),
            Err(e) => return Err(e),
        };
        let (outcome, value) = wire::take::<Outcome>(&bytes)?;
        match outcome {
            Outcome::Returned => wire::decode(value, Vec::new()),
            Outcome::Panicked { message, backtrace } => {
                Err(child_error(ChildFailure::Panicked { message, backtrace }))
            }
            Outcome::Failed(msg) => Err(Error::Decode(msg)),
        }
    }
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("process", &self.process).finish()
    }
}

fn spawn_with<F, A>(method: Option<StartMethod>, target: F, args: A) -> Result<JoinHandle<F::Output>>
where
    F: Target<A>,
    F::Output: Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned + 'static,
{
    const { target::assert_zero_sized::<F>() };
    let _ = target;
    let mut builder =
        ProcessBuilder::from_entry(EntryOffset::of(entries::spawn_entry::<F, A>), encode_args(&args));
    builder.method = method;
    let p = builder.build();
    let result = p.start_inner(true)?.expect("a result socket was asked for");
    Ok(JoinHandle { process: p, result, _result: PhantomData })
}

/// Runs `target(args...)` in a new child process and returns a handle whose `join` gives back
/// the function's value (like `std::thread::spawn`, across a process boundary).
pub fn spawn<F, A>(target: F, args: A) -> Result<JoinHandle<F::Output>>
where
    F: Target<A>,
    F::Output: Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned + 'static,
{
    spawn_with(None, target, args)
}

/// A start method bound to process creation (Python's `get_context(method)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The start method of this context.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A [`Process`] that starts with this context's method (Python's `ctx.Process`).
    pub fn process<F, A>(&self, target: F, args: A) -> Process
    where
        F: Target<A>,
        F::Output: ProcessOutput,
        A: Serialize + DeserializeOwned + 'static,
    {
        self.process_builder(target, args).build()
    }

    /// A [`ProcessBuilder`] with this context's start method (Python's
    /// `ctx.Process(target=, args=, name=, daemon=)`).
    ///
    /// ```
    /// use multiproc::{get_context, StartMethod};
    ///
    /// fn nothing() {}
    ///
    /// let ctx = get_context(Some(StartMethod::Spawn));
    /// let p = ctx.process_builder(nothing, ()).name("spawned").start()?;
    /// assert!(p.join()?.success());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn process_builder<F, A>(&self, target: F, args: A) -> ProcessBuilder
    where
        F: Target<A>,
        F::Output: ProcessOutput,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::new(target, args).start_method(self.method)
    }

    /// [`spawn`] with this context's method.
    pub fn spawn<F, A>(&self, target: F, args: A) -> Result<JoinHandle<F::Output>>
    where
        F: Target<A>,
        F::Output: Serialize + DeserializeOwned,
        A: Serialize + DeserializeOwned + 'static,
    {
        spawn_with(Some(self.method), target, args)
    }
}

/// The context for `method`, or for the process-wide method when `None` (Python's
/// `get_context`).
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context { method: method.unwrap_or_else(get_start_method) }
}

/// Sets the process-wide start method (Python's `set_start_method(method)`). Setting it a
/// second time, or after the default was fixed by a first use, is an error (Python's
/// `RuntimeError: context has already been set`); [`force_start_method`] replaces it.
///
/// ```
/// use multiproc::{force_start_method, get_start_method, set_start_method, StartMethod};
///
/// force_start_method(StartMethod::Spawn); // Python's set_start_method("spawn", force=True)
/// assert!(set_start_method(StartMethod::Fork).is_err(), "already set");
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut m = lock(&state::START_METHOD);
    if m.is_some() {
        return Err(Error::invalid("context has already been set"));
    }
    *m = Some(method);
    Ok(())
}

/// Sets the process-wide start method even if it was set before (Python's
/// `set_start_method(method, force=True)`).
pub fn force_start_method(method: StartMethod) {
    *lock(&state::START_METHOD) = Some(method);
}

fn set_child_start_method(method: StartMethod) {
    *lock(&state::START_METHOD) = Some(method);
}

/// The process-wide start method, fixing the default ([`StartMethod::Forkserver`]) on first use
/// (Python's `get_start_method()`).
pub fn get_start_method() -> StartMethod {
    *lock(&state::START_METHOD).get_or_insert(StartMethod::Forkserver)
}

/// Every start method this platform supports, the default first.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![StartMethod::Forkserver, StartMethod::Spawn, StartMethod::Fork]
}

/// The number of CPUs online (Python's `cpu_count()`).
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

/// The current process, as Python's `current_process()` describes it.
#[derive(Clone, Debug)]
pub struct CurrentProcess {
    name: String,
    pid: i32,
    daemon: bool,
    ident: Vec<u32>,
}

impl CurrentProcess {
    /// `MainProcess` in the main process, `Process-N` (or the name given) in a child.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// This process's id.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// Whether this process is a daemonic child.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
    /// Position in the process tree (`[]` in the main process).
    pub fn ident_path(&self) -> &[u32] {
        &self.ident
    }
}

/// Describes the calling process (Python's `current_process()`).
pub fn current_process() -> CurrentProcess {
    let id = state::identity();
    CurrentProcess { name: id.name, pid: sys::getpid(), daemon: id.daemon, ident: id.ident }
}

/// The parent of a child process, as Python's `parent_process()` describes it.
#[derive(Clone, Debug)]
pub struct ParentProcess {
    name: String,
    pid: i32,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The parent's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// Whether the parent still runs. (A child whose parent dies is killed with it, so a live
    /// child mostly sees `true`.)
    pub fn is_alive(&self) -> bool {
        sys::getppid() == self.pid
    }
}

/// The parent of this process, or `None` in the main process (Python's `parent_process()`).
pub fn parent_process() -> Option<ParentProcess> {
    state::identity().parent.map(|(pid, name)| ParentProcess { name, pid })
}

/// The children of this process that are still running, reaping those that have ended
/// (Python's `active_children()`).
pub fn active_children() -> Vec<Process> {
    state::active_children()
}

impl AsRawFd for Process {
    /// The sentinel's raw descriptor, or -1 before start.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.pidfd.get().map_or(-1, |fd| fd.as_raw_fd())
    }
}

// `Process` has no `AsFd`: before `start` it has no descriptor to lend (`sentinel` says so with an
// error). A `JoinHandle` is made started, so it always has one.
impl<R> AsFd for JoinHandle<R> {
    /// The child's pidfd, as [`Process::sentinel`] gives it: readable once the child has ended,
    /// for `poll(2)` and the like. It stays open as long as the handle.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.process.inner.pidfd.get().expect("a spawned process has a pidfd").as_fd()
    }
}

impl<R> AsRawFd for JoinHandle<R> {
    /// The child's pidfd (see the [`AsFd`] impl).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Decodes bytes as a boot message and a typical argument tuple (for the fuzz targets).
#[doc(hidden)]
pub(crate) fn fuzz_decode_boot(input: &[u8]) -> bool {
    let Ok((boot, rest)) = wire::take::<child::Boot>(input) else { return false };
    drop(boot);
    wire::decode::<(String, Vec<u64>, Option<(i32, f64)>)>(rest, Vec::new()).is_ok()
}

/// Decodes bytes as a child's result message carrying a `Vec<String>` (for the fuzz targets).
#[doc(hidden)]
pub(crate) fn fuzz_decode_outcome(input: &[u8]) -> bool {
    match wire::take::<Outcome>(input) {
        Ok((Outcome::Returned, rest)) => wire::decode::<Vec<String>>(rest, Vec::new()).is_ok(),
        Ok(_) => true,
        Err(_) => false,
    }
}
