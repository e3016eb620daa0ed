//! `imap` and `imap_unordered`: lazy on both sides.
//!
//! The iterator pulls its input only as results are taken (at most a window of
//! `4 × processes + 16` chunks in flight), so an endless input works, and yields each result as
//! soon as it can: in input order for `imap`, in completion order for `imap_unordered`. Input is read on the caller's
//! thread, inside `next()`; the iterator does not need to be `Send`. (Python's `imap` reads the
//! whole input eagerly on a helper thread, and hangs on an endless one.)

use super::dispatcher::{Shared, Task};
use super::result::{lock, Sink};
use crate::error::{Error, Result};
use crate::error::{TaskError, TaskErrorKind};
use crate::wire;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::Thread;

type Arrival = std::result::Result<Vec<u8>, TaskError>;

#[derive(Default)]
struct Arrivals {
    ready: VecDeque<(usize, Arrival)>,
    waiter: Option<Thread>,
}

/// The job behind an imap iterator: chunks' encoded values, as they arrive.
#[derive(Default)]
pub(crate) struct ImapJob {
    arrivals: Mutex<Arrivals>,
}

impl Sink for ImapJob {
    fn complete(&self, index: usize, outcome: std::result::Result<&[u8], TaskError>) {
        let mut a = lock(&self.arrivals);
        a.ready.push_back((index, outcome.map(<[u8]>::to_vec)));
        if let Some(t) = a.waiter.take() {
            t.unpark();
        }
    }
}

/// Produces the next chunk's task, or `None` when the input is exhausted.
pub(crate) type Feed<'a> = Box<dyn FnMut(&Arc<dyn Sink>) -> Option<Result<Task>> + 'a>;

/// The iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`imap_unordered`](crate::Pool::imap_unordered) (Python's `IMapIterator` and
/// `IMapUnorderedIterator`): one `Result` per input item, or one `Err` for a whole chunk that
/// failed (a panic in any of its items).
///
/// ```
/// use multiproc::Pool;
///
/// let pool = Pool::new(2)?;
/// // An endless input: only what is asked for is computed.
/// let firsts: Vec<u64> = pool.imap(|x: u64| x * 10, 0u64..).submit()?.take(5).collect::<Result<_, _>>()?;
/// assert_eq!(firsts, vec![0, 10, 20, 30, 40]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct IMapIterator<'a, R> {
    shared: Arc<Shared>,
    job: Arc<ImapJob>,
    sink: Arc<dyn Sink>,
    feed: Option<Feed<'a>>,
    ordered: bool,
    open_job: bool,
    next_chunk: usize,
    out_of_order: HashMap<usize, Arrival>,
    in_arrival_order: VecDeque<Arrival>,
    values: VecDeque<R>,
    error: Option<Error>,
    in_flight: usize,
    cap: usize,
    _values: PhantomData<fn() -> R>,
}

impl<'a, R: DeserializeOwned> IMapIterator<'a, R> {
    /// A lazy iterator (`cap` chunks in flight at most) registered as an open job of the pool.
    pub(crate) fn new(shared: Arc<Shared>, feed: Feed<'a>, ordered: bool, cap: usize) -> Result<Self> {
        shared.open_job()?;
        let mut it = Self::unstarted(shared, Some(feed), ordered, cap);
        it.open_job = true;
        it.fill();
        Ok(it)
    }

    /// An iterator whose whole input is submitted now (the executor's `map`).
    pub(crate) fn eager(shared: Arc<Shared>, feed: Feed<'a>) -> Result<Self> {
        let mut it = Self::unstarted(shared, Some(feed), true, usize::MAX);
        it.fill();
        match it.error.take() {
            Some(e) => Err(e),
            None => Ok(it),
        }
    }

    /// An iterator that yields `error` and ends: a lazy map that could not be submitted.
    pub(crate) fn failed(shared: Arc<Shared>, error: Error) -> Self {
        let mut it = Self::unstarted(shared, None, true, 0);
        it.error = Some(error);
        it
    }

    fn unstarted(shared: Arc<Shared>, feed: Option<Feed<'a>>, ordered: bool, cap: usize) -> Self {
        let job = Arc::new(ImapJob::default());
        let sink: Arc<dyn Sink> = job.clone();
        IMapIterator {
            shared,
            job,
            sink,
            feed,
            ordered,
            open_job: false,
            next_chunk: 0,
            out_of_order: HashMap::new(),
            in_arrival_order: VecDeque::new(),
            values: VecDeque::new(),
            error: None,
            in_flight: 0,
            cap,
            _values: PhantomData,
        }
    }

    /// Submits chunks until `cap` are in flight or the input ends.
    fn fill(&mut self) {
        let Some(feed) = self.feed.as_mut() else { return };
        let mut batch = Vec::new();
        while self.in_flight.saturating_add(batch.len()) < self.cap {
            match feed(&self.sink) {
                Some(Ok(task)) => batch.push(task),
                Some(Err(e)) => {
                    self.error = Some(e);
                    self.feed = None;
                    break;
                }
                None => {
                    self.feed = None;
                    break;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        match self.shared.submit(batch, self.open_job) {
            Ok(()) => self.in_flight += n,
            Err(e) => {
                self.error = Some(e);
                self.feed = None;
            }
        }
    }

    fn take_arrival(&mut self) -> Option<Arrival> {
        {
            let mut a = lock(&self.job.arrivals);
            for (i, r) in a.ready.drain(..) {
                if self.ordered {
                    self.out_of_order.insert(i, r);
                } else {
                    self.in_arrival_order.push_back(r);
                }
            }
        }
        if self.ordered {
            let r = self.out_of_order.remove(&self.next_chunk)?;
            self.next_chunk += 1;
            Some(r)
        } else {
            self.in_arrival_order.pop_front()
        }
    }

    fn wait_for_arrival(&self) {
        {
            let mut a = lock(&self.job.arrivals);
            if !a.ready.is_empty() {
                return;
            }
            a.waiter = Some(std::thread::current());
        }
        std::thread::park();
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.open_job) {
            self.shared.close_job();
        }
    }
}

impl<R: DeserializeOwned> Iterator for IMapIterator<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(v) = self.values.pop_front() {
                return Some(Ok(v));
            }
            if let Some(e) = self.error.take() {
                return Some(Err(e));
            }
            self.fill();
            if let Some(arrival) = self.take_arrival() {
                self.in_flight -= 1;
                let decoded = arrival.and_then(|bytes| {
                    wire::decode::<Vec<R>>(&bytes, Vec::new()).map_err(|e| {
                        TaskError::new(TaskErrorKind::Codec, format!("cannot decode a chunk's values: {e}"))
                    })
                });
                match decoded {
                    Ok(vals) => self.values.extend(vals),
                    Err(e) => return Some(Err(Error::Task(e))),
                }
                continue;
            }
            if self.in_flight == 0 {
                if self.feed.is_none() && self.error.is_none() {
                    self.finish();
                    return None;
                }
                continue;
            }
            self.wait_for_arrival();
        }
    }
}

impl<R> Drop for IMapIterator<'_, R> {
    fn drop(&mut self) {
        if std::mem::take(&mut self.open_job) {
            self.shared.close_job();
        }
    }
}

impl<R> fmt::Debug for IMapIterator<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapIterator")
            .field("ordered", &self.ordered)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// What [`Pool::try_imap`](crate::Pool::try_imap) and
/// [`try_imap_unordered`](crate::Pool::try_imap_unordered) yield in place of a value: the input's
/// own error, or the pool's error for a task (what [`IMapIterator`] yields).
#[derive(Debug, thiserror::Error)]
pub enum ImapError<E> {
    /// The input yielded this error (Python: the input iterable raised). Nothing after it is
    /// read, and it is the iterator's last item for `try_imap`.
    #[error("the input failed: {0}")]
    Input(E),
    /// A task failed (a panic in its chunk, a dead worker, a timeout) or the pool refused the work.
    #[error(transparent)]
    Pool(#[from] Error),
}

impl<E> ImapError<E> {
    /// The input's error, if this is one.
    pub fn into_input(self) -> Option<E> {
        match self {
            ImapError::Input(e) => Some(e),
            ImapError::Pool(_) => None,
        }
    }
}

/// Where a fallible input leaves its first error for the iterator to yield.
pub(crate) type ErrorSlot<E> = Rc<RefCell<Option<E>>>;

/// A fallible input seen as the plain items before its first error: the error is put in the
/// slot and the input is never read again.
pub(crate) struct UntilError<I, E> {
    input: I,
    slot: ErrorSlot<E>,
    done: bool,
}

impl<I, E> UntilError<I, E> {
    pub(crate) fn new(input: I, slot: ErrorSlot<E>) -> Self {
        UntilError { input, slot, done: false }
    }
}

impl<I: Iterator<Item = std::result::Result<T, E>>, T, E> Iterator for UntilError<I, E> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        match self.input.next() {
            Some(Ok(item)) => Some(item),
            Some(Err(e)) => {
                self.done = true;
                *self.slot.borrow_mut() = Some(e);
                None
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// The iterator of [`Pool::try_imap`](crate::Pool::try_imap) and
/// [`try_imap_unordered`](crate::Pool::try_imap_unordered): [`IMapIterator`] over a fallible
/// input, yielding the input's first error as an item.
///
/// For `try_imap` the error comes at its position, after the values of every item before it,
/// and ends the iteration (Python's `imap` raises it there). For `try_imap_unordered` it comes
/// as soon as it has been read, among the values still arriving. Either way the input is not
/// read past its error, every item before it is computed (a partial chunk included), and the
/// pool goes on serving other work.
///
/// ```
/// use multiproc::{ImapError, Pool};
///
/// let pool = Pool::new(2)?;
/// let input = vec![Ok(1u32), Ok(2), Err("line 3 is not a number"), Ok(4)];
/// let out: Vec<_> = pool.try_imap(|x: u32| x * 10, input).into_iter().collect();
/// assert_eq!(out.len(), 3);
/// assert_eq!(out[0].as_ref().ok(), Some(&10));
/// assert_eq!(out[1].as_ref().ok(), Some(&20));
/// assert!(matches!(out[2], Err(ImapError::Input("line 3 is not a number"))));
/// assert_eq!(pool.map(|x: u32| x + 1, 0..3).get()?, vec![1, 2, 3]); // still usable
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct TryIMapIterator<'a, R, E> {
    inner: IMapIterator<'a, R>,
    error: ErrorSlot<E>,
    ordered: bool,
}

impl<'a, R: DeserializeOwned, E> TryIMapIterator<'a, R, E> {
    pub(crate) fn new(inner: IMapIterator<'a, R>, error: ErrorSlot<E>) -> Self {
        let ordered = inner.ordered;
        TryIMapIterator { inner, error, ordered }
    }
}

impl<R: DeserializeOwned, E> Iterator for TryIMapIterator<'_, R, E> {
    type Item = std::result::Result<R, ImapError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.ordered {
            if let Some(e) = self.error.borrow_mut().take() {
                return Some(Err(ImapError::Input(e)));
            }
        }
        match self.inner.next() {
            Some(r) => Some(r.map_err(ImapError::Pool)),
            // Ordered: every chunk read before the error has been yielded.
            None => self.error.borrow_mut().take().map(|e| Err(ImapError::Input(e))),
        }
    }
}

impl<R, E> fmt::Debug for TryIMapIterator<'_, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIMapIterator").field("inner", &self.inner).finish_non_exhaustive()
    }
}
