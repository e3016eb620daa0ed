//! The one call shape of the pool's map family: [`PoolTarget`], the bound every pool method
//! takes, and [`MapCall`], what `map`, `starmap`, `map_with`, `imap`, `imap_unordered`,
//! `try_imap`, `try_imap_unordered` and the executor's `map` return.
//!
//! A `MapCall` holds the input and the options (chunk size, progress bar) until it is
//! submitted; how it is submitted was fixed by the method that made it, as a monomorphized
//! function of the target's type, so its terminals ([`get`](MapCall::get),
//! [`submit`](MapCall::submit), iteration) carry no bounds of their own.

use super::{IMapIterator, MapResult, Pool, TryIMapIterator};
use crate::error::{Error, Result};
use crate::target::{self, EntryOffset, Target};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::os::fd::OwnedFd;

/// A value a pool task returns: serde both ways, and `Send + 'static`, since it arrives on the
/// pool's dispatcher thread. Implemented for every such type.
pub trait TaskValue: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> TaskValue for T {}

/// A function a pool runs with arguments `A` (a tuple): a [`Target`] whose arguments are serde
/// values and whose value is a [`TaskValue`]. It is the one bound of every pool method
/// ([`Pool::apply`], [`Pool::map`], [`Executor::submit`](crate::Executor::submit), ...), and
/// enough for generic code over a pool:
///
/// ```
/// use multiproc::{Pool, PoolTarget};
///
/// fn squares_of<F: PoolTarget<(u64,)>>(pool: &Pool, f: F) -> multiproc::Result<Vec<F::Output>> {
///     pool.map(f, 0..4u64).get()
/// }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(squares_of(&pool, |x: u64| x * x)?, vec![0, 1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Implemented for every such target; it cannot be implemented by hand. As for any target, a
/// closure that captures is refused: state goes as a serde context with
/// [`Pool::map_with`] or [`partial`](crate::partial).
pub trait PoolTarget<A>: Target<A, Output: TaskValue> + sealed::Calls<A> {}

impl<F, A> PoolTarget<A> for F
where
    F: Target<A, Output: TaskValue>,
    A: Serialize + DeserializeOwned,
{
}

/// A task's encoded `RUN` frame and the descriptors of the handles in its arguments.
pub(crate) type Frame = (Vec<u8>, Vec<OwnedFd>);

pub(crate) mod sealed {
    use super::*;

    /// What the pool needs to run a target with arguments `A`, made where the arguments' serde
    /// bounds are known, so that no caller restates them.
    pub struct Entries<A> {
        /// One call: the value is the target's.
        pub(crate) apply: EntryOffset,
        /// A chunk of calls: the value is the `Vec` of theirs.
        pub(crate) chunk: EntryOffset,
        pub(crate) frame: fn(u64, EntryOffset, &A) -> Result<Frame>,
        pub(crate) chunk_frame: fn(u64, EntryOffset, &[A]) -> Result<Frame>,
    }

    /// The sealed half of [`PoolTarget`](super::PoolTarget).
    pub trait Calls<A> {
        /// The entries and encoders for this target.
        fn entries() -> Entries<A>;
    }

    impl<F, A> Calls<A> for F
    where
        F: Target<A, Output: TaskValue>,
        A: Serialize + DeserializeOwned,
    {
        fn entries() -> Entries<A> {
            Entries {
                apply: EntryOffset::of_call(super::super::entry::apply_entry::<F, A>),
                chunk: EntryOffset::of_call(super::super::entry::chunk_entry::<F, A>),
                frame: super::super::protocol::task_frame::<A>,
                chunk_frame: super::super::protocol::task_frame::<[A]>,
            }
        }
    }
}

/// The options of a [`MapCall`], as set before it is submitted.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// Items per task; the method's default (Python's) when `None`.
    pub(crate) chunksize: Option<usize>,
    #[cfg(feature = "progress")]
    pub(crate) progress: bool,
}

impl Options {
    /// The chunk size asked for, or `default` (and at least 1) when none was.
    pub(crate) fn chunksize_or(&self, default: usize) -> Result<usize> {
        match self.chunksize {
            Some(0) => Err(Error::invalid("chunksize must be 1 or more, not 0")),
            Some(c) => Ok(c),
            None => Ok(default.max(1)),
        }
    }
}

/// How a [`MapCall`] is submitted: made by the method that returned it, for its target.
pub(crate) type Start<'p, I, H> = fn(&'p Pool, I, Options) -> Result<H>;

/// A map of the pool's family, not yet submitted: the chunk size (and, with the `progress`
/// feature, a progress bar) is set on it, then it is submitted, and `H` is what submitting
/// gives: a [`MapResult`] for [`Pool::map`], [`starmap`](Pool::starmap) and
/// [`map_with`](Pool::map_with), an [`IMapIterator`] for [`imap`](Pool::imap),
/// [`imap_unordered`](Pool::imap_unordered) and [`Executor::map`](crate::Executor::map), a
/// [`TryIMapIterator`] for [`try_imap`](Pool::try_imap) and
/// [`try_imap_unordered`](Pool::try_imap_unordered).
///
/// Python's `pool.map(f, items, chunksize)` is `pool.map(f, items).chunksize(n).get()?`, its
/// `map_async` is [`submit`](Self::submit) (or [`Pool::map_async`]), and its `imap` is iterated
/// as it is:
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5).get()?, vec![0, 1, 4, 9, 16]);
/// assert_eq!(pool.map(square, 0..5).chunksize(2).get()?, vec![0, 1, 4, 9, 16]);
///
/// let pending = pool.starmap(|a: u64, b: u64| a * b, vec![(2, 3), (4, 5)]).chunksize(1).submit()?;
/// assert_eq!(pending.get()?, vec![6, 20]);
///
/// let mut total = 0;
/// for v in pool.imap(square, 0..100).chunksize(10) {
///     total += v?;
/// }
/// assert_eq!(total, 328_350);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Nothing is read from the input and nothing is sent before it is submitted. A chunk size of 0
/// is an [`Error::InvalidState`] at submission, as Python raises `ValueError`.
#[must_use = "a map runs nothing until it is submitted (`get`, `submit`, or iterating it)"]
pub struct MapCall<'p, I, H> {
    pool: &'p Pool,
    input: I,
    options: Options,
    start: Start<'p, I, H>,
}

impl<'p, I, H> MapCall<'p, I, H> {
    /// A call of the target `F` on `input`, submitted by `start`.
    pub(crate) fn new<F>(pool: &'p Pool, f: F, input: I, start: Start<'p, I, H>) -> Self {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        MapCall { pool, input, options: Options::default(), start }
    }

    /// Items per task (Python's `chunksize=`): a chunk is sent, run and answered as one task, so
    /// larger chunks cost fewer round trips and balance the load less finely. By default
    /// Python's: for `map`, `starmap` and `map_with` about four chunks per worker, for the
    /// lazy maps 1.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.options.chunksize = Some(n);
        self
    }

    /// Submits the map: sends its tasks (for a lazy map, the first window of them) and gives
    /// the handle to its values.
    pub fn submit(self) -> Result<H> {
        (self.start)(self.pool, self.input, self.options)
    }
}

impl<I, R> MapCall<'_, I, MapResult<R>> {
    /// Submits the map and waits for its values, in input order (Python's `map`); the first
    /// failing chunk's error otherwise.
    pub fn get(self) -> Result<Vec<R>> {
        self.submit()?.get()
    }

    /// Shows a progress bar on stderr that advances as chunks finish, as mpire's
    /// `progress_bar=True` does (cargo feature `progress`).
    #[cfg(feature = "progress")]
    pub fn progress(mut self) -> Self {
        self.options.progress = true;
        self
    }
}

impl<'p, I, R> IntoIterator for MapCall<'p, I, IMapIterator<'p, R>>
where
    R: DeserializeOwned,
{
    type Item = Result<R>;
    type IntoIter = IMapIterator<'p, R>;

    /// Submits the lazy map; if that fails, the error is the iterator's only item.
    fn into_iter(self) -> IMapIterator<'p, R> {
        let shared = self.pool.shared.clone();
        self.submit().unwrap_or_else(|e| IMapIterator::failed(shared, e))
    }
}

impl<'p, I, R, E> IntoIterator for MapCall<'p, I, TryIMapIterator<'p, R, E>>
where
    R: DeserializeOwned,
{
    type Item = std::result::Result<R, super::ImapError<E>>;
    type IntoIter = TryIMapIterator<'p, R, E>;

    /// Submits the lazy map; if that fails, the error is the iterator's only item.
    fn into_iter(self) -> TryIMapIterator<'p, R, E> {
        let shared = self.pool.shared.clone();
        self.submit()
            .unwrap_or_else(|e| TryIMapIterator::new(IMapIterator::failed(shared, e), Default::default()))
    }
}

impl<I, H> fmt::Debug for MapCall<'_, I, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapCall").field("options", &self.options).finish_non_exhaustive()
    }
}

/// The entries of the target `f` (whose type cannot be named, as a fn item's).
pub(crate) fn entries_of<F: PoolTarget<A>, A>(f: F) -> sealed::Entries<A> {
    let _ = f;
    F::entries()
}
