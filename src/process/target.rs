//! Targets: the functions a child runs, and how the child finds them.
//!
//! A target is a fn item or a non-capturing closure: a zero-sized, `Copy` type, so the child can
//! make a value of it from nothing. The child finds the code through a monomorphized *entry*
//! (`process_entry::<F, A>` or `spawn_entry::<F, A>`) that decodes the arguments, calls the
//! target and reports. The parent sends the entry's offset from [`anchor`], a fixed function of
//! this crate; the child adds its own address of `anchor`. Offsets hold across `exec` of the
//! same binary whatever ASLR does, and across `fork` trivially. See `docs/design.md`.

use crate::error::{Error, Result};
use crate::wire;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;

/// A function a child process can run with arguments `Args` (a tuple, like Python's `args=`).
///
/// Implemented for every `Fn(A1, ..., An) -> R` with `n` from 0 to 12 that is `Copy`: fn items and
/// closures that capture nothing. A capturing closure is refused at compile time:
///
/// ```compile_fail
/// use multiprocessing::Process;
/// let offset = 5u64;
/// let p = Process::new(move |x: u64| println!("{}", x + offset), (1u64,));
/// ```
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the unpacked arguments.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($A:ident $a:ident),*) => {
        impl<F, R, $($A,)*> Target<($($A,)*)> for F
        where
            F: Fn($($A),*) -> R + Copy + Send + Sync + 'static,
        {
            type Output = R;
            #[allow(clippy::unused_unit)]
            fn call(self, ($($a,)*): ($($A,)*)) -> R {
                self($($a),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1 a1);
impl_target!(A1 a1, A2 a2);
impl_target!(A1 a1, A2 a2, A3 a3);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11);
impl_target!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11, A12 a12);

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

/// What an entry gets in the child: the encoded arguments, their descriptors, and the socket to
/// send the result on (for [`spawn`](crate::spawn)).
pub(crate) struct ChildStart {
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) result: Option<OwnedFd>,
}

/// A monomorphized entry: runs the target in the child and returns the exit code.
pub(crate) type Entry = fn(ChildStart) -> i32;

/// The fixed point that entry offsets are measured from.
#[inline(never)]
pub(crate) fn anchor(_: ChildStart) -> i32 {
    std::hint::black_box(0x6d70)
}

/// A second fixed point: its distance from [`anchor`] must match in parent and child, which
/// shows the child runs the same binary as the parent.
#[inline(never)]
fn layout_witness(_: ChildStart) -> i32 {
    std::hint::black_box(0x7077)
}

/// Where an entry sits relative to [`anchor`], as sent to the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct EntryOffset {
    offset: isize,
    witness: isize,
}

impl EntryOffset {
    pub(crate) fn of(entry: Entry) -> Self {
        let base = anchor as Entry as usize as isize;
        EntryOffset {
            offset: entry as usize as isize - base,
            witness: layout_witness as Entry as usize as isize - base,
        }
    }

    /// The entry in this process's address space.
    pub(crate) fn resolve(self) -> Result<Entry> {
        let addr = self.address()?;
        // SAFETY: the parent computed `offset` from a function of type `Entry` in the same
        // binary (checked through the witness), and code sits at the same offsets from `anchor`
        // in every process that runs this binary; so `addr` is that function's address here.
        Ok(unsafe { std::mem::transmute::<usize, Entry>(addr) })
    }
}

/// A monomorphized *call entry*: decodes the arguments in `args` (with their descriptors), calls
/// a target in the current process and appends the encoded value to `out`. A pool worker runs one
/// per task; the parent names it with [`EntryOffset::of_call`].
pub(crate) type CallEntry = fn(args: &[u8], fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> CallOutcome;

/// How a call through a [`CallEntry`] went.
pub(crate) enum CallOutcome {
    /// The target returned; its encoded value is in the output buffer.
    Returned,
    /// The target panicked, with this message (and location).
    Panicked(String),
    /// The arguments or the value could not be (de)coded.
    Failed(String),
}

impl EntryOffset {
    /// The offset of a call entry (see [`CallEntry`]).
    pub(crate) fn of_call(entry: CallEntry) -> Self {
        let base = anchor as Entry as usize as isize;
        EntryOffset {
            offset: entry as usize as isize - base,
            witness: layout_witness as Entry as usize as isize - base,
        }
    }

    /// The call entry in this process's address space. Only for offsets made by
    /// [`of_call`](Self::of_call).
    pub(crate) fn resolve_call(self) -> Result<CallEntry> {
        let addr = self.address()?;
        // SAFETY: the sender computed `offset` with `of_call` from a function of type
        // `CallEntry` in the same binary (checked through the witness), so `addr` is that
        // function's address in this process.
        Ok(unsafe { std::mem::transmute::<usize, CallEntry>(addr) })
    }

    fn address(self) -> Result<usize> {
        let base = anchor as Entry as usize as isize;
        if layout_witness as Entry as usize as isize - base != self.witness {
            return Err(Error::invalid(
                "the child runs a different binary than its parent (was the executable rebuilt?)",
            ));
        }
        Ok((base + self.offset) as usize)
    }
}

/// The value of the target type `F`, for a call entry that runs it.
pub(crate) fn target_value<F: Target<A>, A>() -> F {
    conjure::<F>()
}

/// A value of the zero-sized target type `F`.
fn conjure<F: Copy>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must be a fn item or a closure that captures nothing"
        )
    };
    // SAFETY: F is zero-sized, so there are no bytes to initialize, and it is inhabited: the
    // parent held a value of it when it sent this entry.
    unsafe { std::mem::zeroed() }
}

/// Compile-time check, run where a target is accepted.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "a process target must be a fn item or a closure that captures nothing"
    );
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
            eprintln!("multiprocessing: cannot start the target: {e}");
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
        Ok(Err(_panic)) => {
            let (message, backtrace) = super::child::last_panic();
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
/// use multiprocessing::{Process, Queue, Run};
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
/// # Ok::<(), multiprocessing::Error>(())
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
            eprintln!("multiprocessing: cannot start the target: {e}");
            1
        }
    }
}

/// A monomorphized *action entry*: calls a zero-sized target that takes no arguments (a
/// barrier's action).
pub(crate) type ActionEntry = fn();

impl EntryOffset {
    /// The offset of an action entry (see [`ActionEntry`]).
    pub(crate) fn of_action(entry: ActionEntry) -> Self {
        let base = anchor as Entry as usize as isize;
        EntryOffset {
            offset: entry as usize as isize - base,
            witness: layout_witness as Entry as usize as isize - base,
        }
    }

    /// The action entry in this process's address space. Only for offsets made by
    /// [`of_action`](Self::of_action).
    pub(crate) fn resolve_action(self) -> Result<ActionEntry> {
        let addr = self.address()?;
        // SAFETY: the sender computed `offset` with `of_action` from a function of type
        // `ActionEntry` in the same binary (checked through the witness), so `addr` is that
        // function's address in this process.
        Ok(unsafe { std::mem::transmute::<usize, ActionEntry>(addr) })
    }
}

/// Entry for actions: calls the zero-sized target `F`.
pub(crate) fn action_entry<F: Target<(), Output = ()>>() {
    conjure::<F>().call(())
}

#[cfg(test)]
impl EntryOffset {
    /// The same offset as if measured in a binary laid out differently.
    pub(crate) fn as_if_in_another_binary(self) -> Self {
        EntryOffset { witness: self.witness.wrapping_add(16), ..self }
    }
}
