//! Targets: the functions another process runs, and how that process finds them.
//!
//! A target is a fn item or a non-capturing closure: a zero-sized, `Copy` type, so the child can
//! make a value of it from nothing. The child finds the code through a monomorphized *entry*
//! (`process_entry::<F, A>` or `spawn_entry::<F, A>`) that decodes the arguments, calls the
//! target and reports. The parent sends the entry's offset from [`anchor`], a fixed function of
//! this crate; the child adds its own address of `anchor`. Offsets hold across `exec` of the
//! same binary whatever ASLR does, and across `fork` trivially. See `docs/design.md`.
//!
//! This room sits below every primitive: a barrier's action, a pool's task and a process's
//! target are all named this way. What a process does with its target's return value (its exit
//! code, or the result sent back) is the process room's (`process/entries.rs`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

/// A function a child process can run with arguments `Args` (a tuple, like Python's `args=`).
///
/// Implemented for every `Fn(A1, ..., An) -> R` with `n` from 0 to 12 that is `Copy`: fn items and
/// closures that capture nothing. A capturing closure is refused at compile time:
///
/// ```compile_fail
/// use multiproc::Process;
/// let offset = 5u64;
/// let p = Process::new(move |x: u64| println!("{}", x + offset), (1u64,));
/// ```
///
/// State the function needs travels as serde data instead: the function takes it as a first
/// `&Ctx` parameter (a [`ContextTarget`]) and the value goes with
/// [`partial`](crate::partial), [`Process::with_context`](crate::Process::with_context) or
/// [`Pool::map_with`](crate::Pool::map_with) (Python's `functools.partial`):
///
/// ```
/// use multiproc::Process;
/// let offset = 5u64;
/// let p = Process::with_context(|offset: &u64, x: u64| println!("{}", x + offset), offset, (1u64,));
/// assert!(p.start()?.join()?.success());
/// # Ok::<(), multiproc::Error>(())
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

/// Invokes `$impl!` once for each arity from 0 to 12, with as many `A1 a1, ...` type and
/// argument names: the arities [`Target`] and [`ContextTarget`] are implemented for.
macro_rules! for_each_arity {
    ($impl:ident) => {
        $impl!();
        $impl!(A1 a1);
        $impl!(A1 a1, A2 a2);
        $impl!(A1 a1, A2 a2, A3 a3);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11);
        $impl!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8, A9 a9, A10 a10, A11 a11, A12 a12);
    };
}

for_each_arity!(impl_target);

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
        Self::at(entry as usize)
    }

    /// The offset of the function at `addr` (an [`Entry`], [`CallEntry`] or [`ActionEntry`]).
    fn at(addr: usize) -> Self {
        let base = anchor as Entry as usize as isize;
        EntryOffset {
            offset: addr as isize - base,
            witness: layout_witness as Entry as usize as isize - base,
        }
    }

    /// The entry in this process's address space.
    pub(crate) fn resolve(self) -> Result<Entry> {
        // SAFETY: only offsets made by `of`, from an `Entry`, are resolved as one.
        unsafe { self.resolve_as::<Entry>() }
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
        Self::at(entry as usize)
    }

    /// The call entry in this process's address space. Only for offsets made by
    /// [`of_call`](Self::of_call).
    pub(crate) fn resolve_call(self) -> Result<CallEntry> {
        // SAFETY: only offsets made by `of_call`, from a `CallEntry`, are resolved as one.
        unsafe { self.resolve_as::<CallEntry>() }
    }

    /// The function pointer of type `E` at this offset in this process.
    ///
    /// # Safety
    /// The offset was made from a function of type `E` (by `of` for [`Entry`], `of_call` for
    /// [`CallEntry`], `of_action` for [`ActionEntry`]).
    unsafe fn resolve_as<E: Copy>(self) -> Result<E> {
        const { assert!(std::mem::size_of::<E>() == std::mem::size_of::<usize>()) };
        let addr = self.address()?;
        // SAFETY: the sender computed `offset` from a function of type `E` in the same binary
        // (checked through the witness), and code sits at the same offsets from `anchor` in
        // every process that runs this binary; so `addr` is that function's address here. `E`
        // is a function pointer type, as wide as `usize`.
        Ok(unsafe { std::mem::transmute_copy::<usize, E>(&addr) })
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
pub(crate) fn conjure<F: Copy>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: F is zero-sized, so there are no bytes to initialize, and it is inhabited: the
    // parent held a value of it when it sent this entry.
    unsafe { std::mem::zeroed() }
}

/// Compile-time check, run where a target is accepted.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "a process target must be a fn item or a closure that captures nothing; to send state \
         with it, take it as a first `&Ctx` parameter and pass it with `multiproc::partial`, \
         `Process::with_context` or `Pool::map_with`"
    );
}

/// A monomorphized *action entry*: calls a zero-sized target that takes no arguments (a
/// barrier's action).
pub(crate) type ActionEntry = fn();

impl EntryOffset {
    /// The offset of an action entry (see [`ActionEntry`]).
    pub(crate) fn of_action(entry: ActionEntry) -> Self {
        Self::at(entry as usize)
    }

    /// The action entry in this process's address space. Only for offsets made by
    /// [`of_action`](Self::of_action).
    pub(crate) fn resolve_action(self) -> Result<ActionEntry> {
        // SAFETY: only offsets made by `of_action`, from an `ActionEntry`, are resolved as one.
        unsafe { self.resolve_as::<ActionEntry>() }
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

/// A function a child process can run with a context `C` and arguments `Args`: a
/// [`Target`] whose first parameter is `&C`.
///
/// Implemented for every `Fn(&C, A1, ..., An) -> R` with `n` from 0 to 12 that is `Copy`: fn
/// items and closures that capture nothing. The context is a serde value sent with the call (see
/// [`partial`](crate::partial), [`Process::with_context`](crate::Process::with_context) and
/// [`Pool::map_with`](crate::Pool::map_with)); it is how a target carries what a Rust closure
/// would capture.
pub trait ContextTarget<C, Args>: Copy + Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the context and the unpacked arguments.
    fn call_with(self, ctx: &C, args: Args) -> Self::Output;
}

macro_rules! impl_context_target {
    ($($A:ident $a:ident),*) => {
        impl<F, C, R, $($A,)*> ContextTarget<C, ($($A,)*)> for F
        where
            F: Fn(&C, $($A),*) -> R + Copy + Send + Sync + 'static,
        {
            type Output = R;
            #[allow(clippy::unused_unit)]
            fn call_with(self, ctx: &C, ($($a,)*): ($($A,)*)) -> R {
                self(ctx, $($a),*)
            }
        }
    };
}

for_each_arity!(impl_context_target);

/// The zero-sized target that runs the context target `F` on a decoded `(ctx, args)` pair: a fn
/// item, so the usual entries find it by offset.
pub(crate) fn context_call<F: ContextTarget<C, A>, C, A>(ctx: C, args: A) -> F::Output {
    conjure::<F>().call_with(&ctx, args)
}

/// The zero-sized target that runs the context target `F` on every item of a chunk with one
/// decoded context (one task of [`Pool::map_with`](crate::Pool::map_with)).
pub(crate) fn context_chunk<F: ContextTarget<C, (T,)>, C, T>(ctx: C, items: Vec<T>) -> Vec<F::Output> {
    let f = conjure::<F>();
    items.into_iter().map(|x| f.call_with(&ctx, (x,))).collect()
}
