//! `imap` and `imap_unordered`: lazy on both sides.
//!
//! The iterator pulls its input only as results are taken (at most a small window of chunks in
//! flight), so an endless input works, and yields each result as soon as it can: in input
//! order for `imap`, in completion order for `imap_unordered`. Input is read on the caller's
//! thread, inside `next()`; the iterator does not need to be `Send`. (Python's `imap` reads the
//! whole input eagerly on a helper thread, and hangs on an endless one.)

use super::dispatcher::{Shared, Task};
use super::error::{TaskError, TaskErrorKind};
use super::result::{lock, Sink};
use crate::error::{Error, Result};
use crate::wire;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
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
/// use multiprocessing::Pool;
///
/// let pool = Pool::new(2)?;
/// // An endless input: only what is asked for is computed.
/// let firsts: Vec<u64> = pool.imap(|x: u64| x * 10, 0u64..)?.take(5).collect::<Result<_, _>>()?;
/// assert_eq!(firsts, vec![0, 10, 20, 30, 40]);
/// # Ok::<(), multiprocessing::Error>(())
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
        let mut it = Self::unstarted(shared, feed, ordered, cap);
        it.open_job = true;
        it.fill();
        Ok(it)
    }

    /// An iterator whose whole input is submitted now (the executor's `map`).
    pub(crate) fn eager(shared: Arc<Shared>, feed: Feed<'a>) -> Result<Self> {
        let mut it = Self::unstarted(shared, feed, true, usize::MAX);
        it.fill();
        match it.error.take() {
            Some(e) => Err(e),
            None => Ok(it),
        }
    }

    fn unstarted(shared: Arc<Shared>, feed: Feed<'a>, ordered: bool, cap: usize) -> Self {
        let job = Arc::new(ImapJob::default());
        let sink: Arc<dyn Sink> = job.clone();
        IMapIterator {
            shared,
            job,
            sink,
            feed: Some(feed),
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
