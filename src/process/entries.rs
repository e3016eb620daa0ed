//! The entries a child process starts at: a [`Process`](crate::Process) target (its return
//! value sets the exit code), a [`spawn`](crate::spawn) target (its value is sent back) and a
//! [`Run`] type. How the child finds them is `crate::target`'s.

use crate::error::Result;
use crate::target::{conjure, ChildStart, Target};
use crate::wire;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;

/// What a [`Process`](crate::Process) target may return: how it maps to the exit code.
///
/// `()` and `bool` exit 0 (Python ignores the target's return value); `Err(e)` prints `e` to
/// stderr and exits 1, as an exception escaping Python's `run()` does.
pub trait ProcessOutput {
    /// The exit code this value stands for.
    fn exit_code(self) -> i32;
}

impl ProcessOutput for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl ProcessOutput for bool {
    fn exit_code(self) -> i32 {
        0
    }
}

impl<T, E: std::fmt::Debug> ProcessOutput for std::result::Result<T, E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("Process {} failed: {e:?}", crate::current_process().name());
                1
            }
        }
    }
}

/// Decodes the arguments and calls the target, catching a panic.
fn call_target<F, A>(start_payload: &[u8], fds: Vec<OwnedFd>) -> Result<std::thread::Result<F::Output>>
where
    F: Target<A>,
    A: DeserializeOwned,
{
    let args: A = wire::decode(start_payload, fds)?;
    let f = conjure::<F>();
    Ok(std::panic::catch_unwind(AssertUnwindSafe(move || f.call(args))))
}

/// Entry for [`Process`](crate::Process) targets: the return value only sets the exit code.
pub(crate) fn process_entry<F, A>(start: ChildStart) -> i32
where
    F: Target<A>,
    F::Output: ProcessOutput,
    A: DeserializeOwned,
{
    match call_target::<F, A>(&start.payload, start.fds) {
        Ok(Ok(out)) => out.exit_code(),
        Ok(Err(_panic)) => 1,
        Err(e) => {
            eprintln!("multiproc: cannot start the target: {e}");
            1
        }
    }
}

/// The message a child sends back on its result socket.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The target returned; the encoded value follows in the same frame.
    Returned,
    /// The target panicked.
    Panicked { message: String, backtrace: Option<String> },
    /// The arguments or the result could not be (de)coded.
    Failed(String),
}

/// Entry for [`spawn`](crate::spawn) targets: sends the return value (or the panic) back.
pub(crate) fn spawn_entry<F, A>(start: ChildStart) -> i32
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let mut value = Vec::new();
    let (outcome, code) = match call_target::<F, A>(&start.payload, start.fds) {
        Ok(Ok(ret)) => match wire::encode(&ret, &mut value) {
            Ok(fds) if fds.is_empty() => (Outcome::Returned, 0),
            Ok(_) => (Outcome::Failed("a spawn result cannot carry handles".into()), 1),
            Err(e) => (Outcome::Failed(format!("cannot encode the result: {e}")), 1),
        },
        Ok(Err(panic)) => {
            let (message, backtrace) = super::child::last_panic_of(Some(&*panic));
            (Outcome::Panicked { message, backtrace }, 1)
        }
        Err(e) => (Outcome::Failed(format!("cannot decode the arguments: {e}")), 1),
    };
    if let Some(sock) = start.result {
        super::child::send_outcome(&sock, &outcome, &value);
    }
    code
}

/// A process defined by a type (Python's `class Worker(Process): def run(self): ...`): the value
/// carries the process's state as serde data, and [`run`](Self::run) is what the process does.
///
/// [`Process::from_run`](crate::Process::from_run) encodes the value and starts it through the
/// usual [`Process`](crate::Process) handle, under any start method: the child decodes its own
/// copy and calls `run` on it. `run` is an ordinary method too, so it can be called in the
/// current process, as Python's `p.run()` can; state changed by a child's `run` stays in the
/// child (use a queue, pipe or shared value to send results back).
///
/// The child finds the type's code the way it finds a target function, so the type needs no
/// registration; it must be `'static` and its value must encode (a handle of this crate, such as
/// a [`Queue`](crate::Queue) or [`Connection`](crate::Connection), is a valid field).
///
/// ```
/// use multiproc::{Process, Queue, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter {
///     upto: u64,
///     out: Queue<u64>,
///     runs: u32,
/// }
///
/// impl Run for Counter {
///     type Output = ();
///     fn run(&mut self) {
///         self.runs += 1;
///         self.out.put((1..=self.upto).sum()).unwrap();
///     }
/// }
///
/// let out = Queue::new()?;
/// let mut counter = Counter { upto: 10, out: out.clone(), runs: 0 };
/// let p = Process::from_run(&counter).start()?;
/// assert_eq!(out.get()?, 55);
/// assert!(p.join()?.success());
/// assert_eq!(counter.runs, 0); // the child ran its own copy
///
/// counter.run(); // in this process, as Python's `p.run()`
/// assert_eq!(out.get()?, 55);
/// assert_eq!(counter.runs, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What `run` returns: its [`ProcessOutput`] sets the child's exit code (`()` exits 0,
    /// `Err(e)` prints `e` and exits 1). A panic in the child exits 1.
    type Output: ProcessOutput;
    /// The process's work (Python's `run()`).
    fn run(&mut self) -> Self::Output;
}

/// Entry for [`Run`] types: decodes the value and calls its `run`.
pub(crate) fn run_entry<T: Run>(start: ChildStart) -> i32 {
    let decoded: Result<T> = wire::decode(&start.payload, start.fds);
    match decoded {
        Ok(mut value) => match std::panic::catch_unwind(AssertUnwindSafe(move || value.run())) {
            Ok(out) => out.exit_code(),
            Err(_panic) => 1,
        },
        Err(e) => {
            eprintln!("multiproc: cannot start the target: {e}");
            1
        }
    }
}
