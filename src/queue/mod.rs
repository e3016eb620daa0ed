//! `Queue`, `SimpleQueue` and `JoinableQueue`: FIFO queues shared by any number of producer and
//! consumer processes, in shared memory (Python's `multiprocessing.Queue` and friends).
//!
//! Items are encoded with serde into a byte ring in a memfd region (see `ring.rs`). A `put` on
//! a queue with no `maxsize` never blocks: when the ring is full (or an item is larger than the
//! ring) the encoded item goes to this process's backlog, which a feeder thread writes out in
//! order, as CPython's feeder thread does. As in Python, a process does not end before its
//! feeder has written out the backlog: dropping the last handle waits for it, and so does the
//! exit of the process (`std::process::exit`, a return from `main` or from a child's target),
//! unless [`Queue::cancel_join_thread`] was called; [`Queue::flush`] waits for it at any point.
//! A process killed by a signal, or that leaves through `_exit`, loses its backlog.
//! (An item of 64 KiB or more first waits up to 2 ms
//! for room, which a live consumer frees far sooner, so that it need not be copied into a fresh
//! backlog buffer.) An item larger than the ring is written in chunks
//! while the producer holds the producer lock; the consumer assembles it.
//!
//! A thread whose last item encoded to 64 KiB or more encodes its next one straight into the
//! ring's free part, with the producer lock held, so a large item's bytes are copied once on
//! each side; an item that turns out not to fit is moved to the thread's buffer and takes the
//! paths above. Its `Serialize` then runs with the lock held: one that fails or panics leaves
//! the queue as it was, and a put from inside it goes to the backlog rather than wait for the
//! lock its own thread holds. [`Queue::put_ref`], [`Queue::put_ref_timeout`] and
//! [`Queue::put_ref_nowait`] put from a reference, for an item sent many times.
//!
//! Handles inside items (connections, queues, locks, shared memory) travel too: their
//! descriptors go through a datagram socket that every handle of the queue shares, one datagram
//! per item, tagged with a sequence number that the item's record carries; the consumer takes
//! the datagram with the matching tag. Datagrams left by a producer killed before it published
//! its item are recognised by their older tag and closed; an item whose datagram was taken by a
//! consumer killed mid-get is reported by the next `get` as a decode error, never as another
//! item's handles.

#[cfg(feature = "tokio")]
mod aio;
mod bytes;
mod error;
pub(crate) mod ring;

pub use bytes::Bytes;
pub(crate) use error::queue_errors;
pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};

use crate::error::{Error, Result};
use crate::mem::Region;
use crate::wire;
use crate::wire::{FdOwned, FdRef};
use ring::{Corrupted, InPlaceError, Placed, Ring};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ring size of [`Queue::new`]: 4 MiB (memfd pages are only allocated when first written).
pub const DEFAULT_RING_BYTES: usize = 4 << 20;

struct Backlog {
    /// Encoded items and (duplicates of) the descriptors of their handles.
    items: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    /// Buffers the feeder has written out, for the next puts to encode into.
    spare: Vec<Vec<u8>>,
    stop: bool,
}

struct Shared {
    ring: Ring,
    /// The handle socket pair: producers send on `.0`, consumers receive on `.1`.
    sockets: Arc<(OwnedFd, OwnedFd)>,
    joinable: bool,
    closed: AtomicBool,
    cancel_join: AtomicBool,
    backlog: Mutex<Backlog>,
    /// Items in the backlog plus the one the feeder is writing. Raised with the backlog locked,
    /// lowered by the feeder once the item is in the ring: a put that reads 0 writes straight
    /// to the ring without the lock, after every item this thread put before.
    pending: AtomicUsize,
    cv: Condvar,
    /// The process whose exit waits for this queue's backlog (0: none yet).
    flush_at_exit_in: AtomicI32,
}

impl Shared {
    /// Waits until every item in this process's backlog is in the ring, or `deadline` passes
    /// (false).
    fn wait_flushed(&self, deadline: Option<Instant>) -> bool {
        let mut b = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending.load(SeqCst) > 0 {
            b = match deadline {
                None => self.cv.wait(b).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.cv.wait_timeout(b, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        true
    }
}

/// The queues whose backlog this process must write out before it exits, as Python joins each
/// queue's feeder thread at exit: through a C `atexit` handler (so `std::process::exit` and a
/// return from `main` wait too) and in a child's own exit path.
struct ExitFlush {
    /// Each queue with the process whose backlog it is: a raw `fork` copies this list into a
    /// child that has no feeder threads, and must not wait for them.
    queues: Vec<(i32, Weak<Shared>)>,
    /// The process the `atexit` handler was registered in.
    hook_for: i32,
}

static EXIT_FLUSH: Mutex<ExitFlush> = Mutex::new(ExitFlush { queues: Vec::new(), hook_for: 0 });

fn exit_flush() -> MutexGuard<'static, ExitFlush> {
    EXIT_FLUSH.lock().unwrap_or_else(|e| e.into_inner())
}

/// The list of queues to flush at exit, held across a `Fork` so the child finds it free.
struct ExitFlushLock(MutexGuard<'static, ExitFlush>);

/// The queues' part in a process's life: the list of queues to flush is locked across a fork
/// and emptied in the child (the parent's backlogs are the parent's to write), and a child
/// writes out its own backlogs before it exits.
#[linkme::distributed_slice(crate::sys::life::LIFE_HOOKS)]
static QUEUE_LIFE: crate::sys::life::LifeHook = crate::sys::life::LifeHook {
    lock_for_fork: || Box::new(ExitFlushLock(exit_flush())),
    at_child_exit: flush_all_at_exit,
};

impl crate::sys::life::HeldAcrossFork for ExitFlushLock {
    fn reset_in_child(mut self: Box<Self>) {
        self.0.queues.clear();
        self.0.hook_for = 0;
    }
}

/// Makes this process's exit wait for the backlog of `shared` (once per queue and process).
fn flush_at_exit(shared: &Arc<Shared>) {
    let me = crate::sys::getpid();
    if shared.flush_at_exit_in.swap(me, SeqCst) == me {
        return;
    }
    let mut list = exit_flush();
    list.queues.retain(|(pid, q)| *pid == me && q.strong_count() > 0);
    list.queues.push((me, Arc::downgrade(shared)));
    if list.hook_for != me {
        list.hook_for = me;
        crate::sys::at_exit(flush_hook);
    }
}

extern "C" fn flush_hook() {
    flush_all_at_exit();
}

/// Waits until every queue of this process has written out its backlog, except those whose
/// `cancel_join_thread` was called (Python's join of the feeder threads at exit). As in Python,
/// this waits for as long as a consumer needs to make room in the ring.
fn flush_all_at_exit() {
    let me = crate::sys::getpid();
    let queues: Vec<Arc<Shared>> = {
        let list = exit_flush();
        list.queues.iter().filter(|(pid, _)| *pid == me).filter_map(|(_, q)| q.upgrade()).collect()
    };
    for q in queues {
        if !q.cancel_join.load(SeqCst) {
            q.wait_flushed(None);
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
    feeder: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.backlog.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.cv.notify_all();
        let feeder = self.feeder.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = feeder {
            if !self.shared.cancel_join.load(SeqCst) {
                let _ = t.join();
            }
        }
    }
}

/// Sends the descriptors of an item's handles as one datagram tagged `seq`.
fn send_handles(sock: BorrowedFd<'_>, seq: u32, fds: &[RawFd], flags: libc::c_int) -> std::io::Result<()> {
    crate::sys::send_with_fds_flags(sock, &seq.to_le_bytes(), fds, flags).map(|_| ())
}

/// Takes the descriptors of the item tagged `seq`: closes those of older tags (left by a
/// producer killed before publishing its item); empty if the item's own datagram is gone.
fn recv_handles(sock: BorrowedFd<'_>, seq: u32) -> Vec<OwnedFd> {
    loop {
        let mut tag = [0u8; 4];
        match crate::sys::peek_now(sock, &mut tag) {
            Ok(4) => {}
            _ => return Vec::new(),
        }
        let age = seq.wrapping_sub(u32::from_le_bytes(tag)) as i32;
        if age < 0 {
            // A later item's: this item's datagram went with a consumer killed mid-get.
            return Vec::new();
        }
        let mut fds = Vec::new();
        if crate::sys::recv_with_fds_flags(sock, &mut tag, &mut fds, libc::MSG_DONTWAIT).is_err() {
            return Vec::new();
        }
        if age == 0 {
            return fds;
        }
        log::debug!("queue: closing {} descriptors of an item that was never published", fds.len());
    }
}

/// A thread's buffer for encoding items, reused from put to put so that large items do not
/// cost a fresh allocation (and its page faults) each time.
struct Scratch(Vec<u8>);

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest buffer a thread keeps between puts.
const SCRATCH_KEEP: usize = 16 << 20;

impl Scratch {
    fn take() -> Scratch {
        let mut v = SCRATCH.with(|c| c.take());
        v.clear();
        Scratch(v)
    }

    /// The encoded item as a buffer of its own, for the feeder's backlog; the thread keeps
    /// a buffer to encode into, one the feeder gave back if there is one.
    fn detach(mut self, spare: &mut Vec<Vec<u8>>) -> Vec<u8> {
        if self.0.capacity() > 2 * self.0.len() + 64 {
            self.0.as_slice().to_vec()
        } else {
            std::mem::replace(&mut self.0, spare.pop().unwrap_or_default())
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.capacity() != 0 && self.0.capacity() <= SCRATCH_KEEP {
            let v = std::mem::take(&mut self.0);
            SCRATCH.with(|c| c.set(v));
        }
    }
}

/// Encodes an item for the ring: its bytes into `out`, the descriptors of its handles
/// returned; the error message when it cannot be encoded or carries too many handles.
fn encode_item<T: Serialize + ?Sized>(
    item: &T,
    out: &mut impl wire::Sink,
) -> std::result::Result<Vec<RawFd>, String> {
    match wire::encode_to(item, out) {
        Err(e) => Err(e.to_string()),
        Ok(fds) if fds.len() > crate::sys::MAX_FDS_PER_MESSAGE => {
            Err(format!("an item can carry at most {} handles", crate::sys::MAX_FDS_PER_MESSAGE))
        }
        Ok(fds) => Ok(fds),
    }
}

/// Items whose encoding is expected to reach this size (the size of the thread's last item)
/// are encoded straight into the ring ([`Ring::try_write_in_place`]) rather than into the
/// thread's buffer and copied from there: two passes over a large item's bytes become one.
/// Smaller items take the buffer, whose encoding runs no user code with the put lock held.
const IN_PLACE_FROM: usize = 64 << 10;

thread_local! {
    /// The encoded size of the last item this thread put.
    static LAST_PUT_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether this thread is encoding an item into a ring, with its put lock held: a put made
    /// from inside that item's `Serialize` goes to the backlog, so it never waits for the lock
    /// its own thread holds.
    static IN_PLACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as encoding into a ring ([`IN_PLACE`]) until dropped.
struct InPlaceScope;

impl InPlaceScope {
    fn enter() -> InPlaceScope {
        IN_PLACE.set(true);
        InPlaceScope
    }

    fn active() -> bool {
        IN_PLACE.get()
    }
}

impl Drop for InPlaceScope {
    fn drop(&mut self) {
        IN_PLACE.set(false);
    }
}

/// This process's pid (cached process-wide, forgotten in every forked child).
fn me() -> u32 {
    crate::sys::getpid() as u32
}

fn feed(shared: Arc<Shared>) {
    let me = me();
    loop {
        let (item, fds) = {
            let mut b = shared.backlog.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(item) = b.items.pop_front() {
                    break item;
                }
                if b.stop {
                    return;
                }
                b = shared.cv.wait(b).unwrap_or_else(|e| e.into_inner());
            }
        };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut send = |seq| send_handles(shared.sockets.0.as_fd(), seq, &raw, 0);
        if let Err(Corrupted(msg)) =
            shared.ring.write(&item, me, None, (!raw.is_empty()).then_some(&mut send as _))
        {
            log::error!("queue: an item of {} bytes could not be written ({msg})", item.len());
        }
        drop(fds);
        shared.pending.fetch_sub(1, SeqCst);
        let mut b = shared.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if b.spare.len() < 2 && item.capacity() <= SCRATCH_KEEP {
            b.spare.push(item);
        }
        drop(b);
        shared.cv.notify_all();
    }
}

/// An item slot of a bounded queue (and a task of a joinable one) held by a put: given back
/// when dropped still held, so that a put that fails, or whose `Serialize` panics, leaves the
/// counts as they were.
struct Slot<'a> {
    s: &'a Shared,
    held: bool,
}

impl Slot<'_> {
    /// The slot was reserved: count the task too.
    fn taken(&mut self) {
        if self.s.joinable {
            self.s.ring.task_added();
        }
        self.held = true;
    }

    /// The item is in the ring (or the backlog): the slot stays taken.
    fn keep(&mut self) {
        self.held = false;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.s.ring.unreserve();
            if self.s.joinable {
                self.s.ring.task_done();
            }
        }
    }
}

/// A FIFO queue between processes (Python's `multiprocessing.Queue`).
///
/// Clones are further handles to the same queue; a queue passes to a child as a process
/// argument.
///
/// Each form of `put` and `get` has its own error type, which names only what can happen to
/// it: [`put`](Self::put) waits for room, so its [`PutError`] is never full;
/// [`put_nowait`](Self::put_nowait)'s [`TryPutError`] adds `Full` (Python's `queue.Full`),
/// [`put_timeout`](Self::put_timeout)'s [`PutTimeoutError`] adds `Timeout`; likewise
/// [`GetError`], [`TryGetError`] (`Empty`, Python's `queue.Empty`) and [`GetTimeoutError`].
/// A refused put hands the value back and leaves the queue as it was.
///
/// A queue lends no descriptor (no `AsFd`, unlike Python's private `Queue._reader`): items and
/// waits live in shared memory, where a `get` sleeps on a futex, so no descriptor turns
/// readable when an item comes. To wait on a queue beside connections or processes, await
/// `get_async` (feature `tokio`) or get on a thread.
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<u64>) {
///     for i in 0..3 {
///         q.put(i).unwrap();
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let q = Queue::new()?;
/// let p = Process::new(produce, (q.clone(),)).start()?;
/// let got: Vec<u64> = (0..3).map(|_| q.get().unwrap()).collect();
/// assert_eq!(got, [0, 1, 2]);
/// p.join()?;
/// # Ok(())
/// # }
/// ```
pub struct Queue<T> {
    h: Arc<Handle>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { h: self.h.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.h.shared.ring.maxsize())
            .field("qsize", &self.h.shared.ring.count())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (Python's `Queue()`).
    pub fn new() -> Result<Queue<T>> {
        Self::with_ring(0, DEFAULT_RING_BYTES)
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`); 0 is unbounded.
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Self::with_ring(maxsize, DEFAULT_RING_BYTES)
    }

    /// A queue whose shared ring holds `ring_bytes` bytes of encoded items (at least 4 KiB).
    /// Larger items still pass, in pieces.
    pub fn with_ring(maxsize: usize, ring_bytes: usize) -> Result<Queue<T>> {
        Ok(Self::from_ring(Ring::new(maxsize, ring_bytes)?, new_sockets()?, false))
    }

    fn from_ring(ring: Ring, sockets: (OwnedFd, OwnedFd), joinable: bool) -> Queue<T> {
        let shared = Arc::new(Shared {
            ring,
            sockets: Arc::new(sockets),
            joinable,
            closed: AtomicBool::new(false),
            cancel_join: AtomicBool::new(false),
            backlog: Mutex::new(Backlog { items: VecDeque::new(), spare: Vec::new(), stop: false }),
            pending: AtomicUsize::new(0),
            cv: Condvar::new(),
            flush_at_exit_in: AtomicI32::new(0),
        });
        Queue { h: Arc::new(Handle { shared, feeder: Mutex::new(None) }), _t: PhantomData }
    }

    fn s(&self) -> &Shared {
        &self.h.shared
    }

    /// Puts `value`, waiting while a bounded queue is full (Python's `put(obj)`). An unbounded
    /// queue does not wait for its consumers: at most 2 ms for another producer's write, or
    /// for room for an item of 64 KiB or more, before the item goes to the feeder thread.
    /// An item in the feeder's backlog reaches the ring before this process exits (see the
    /// module doc); call [`flush`](Self::flush) to wait for it now.
    ///
    /// It waits for room as long as it takes, so its error is never "full" ([`PutError`]).
    pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_blocking(value)
    }

    /// Puts a copy of `*value`, as [`put`](Self::put) does, encoded from the reference: for
    /// an item that is sent many times or kept after it is sent, with no clone made first
    /// (Python's `put(obj)` does not copy `obj` either). The error hands the reference back.
    ///
    /// ```
    /// use multiproc::{Bytes, Queue};
    /// let q = Queue::new()?;
    /// let block = Bytes(vec![7; 1 << 16]);
    /// for _ in 0..3 {
    ///     q.put_ref(&block).unwrap();
    /// }
    /// assert_eq!(q.get().unwrap(), block);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_ref<'a>(&self, value: &'a T) -> std::result::Result<(), PutError<&'a T>> {
        self.put_blocking(value)
    }

    fn put_blocking<V: Borrow<T>>(&self, value: V) -> std::result::Result<(), PutError<V>> {
        let mut value = value;
        loop {
            match self.put_inner(value, None, true).map_err(TryPutError::full_or) {
                Ok(()) => return Ok(()),
                // Without a deadline the wait for room does not end unfulfilled; wait again.
                Err(Ok(v)) => value = v,
                Err(Err(e)) => return Err(e),
            }
        }
    }

    /// Puts `value`, waiting at most `timeout` for room (Python's `put(obj, timeout=t)`);
    /// [`PutTimeoutError::Timeout`] with the value back when there was none (where Python
    /// raises `queue.Full`).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_until(value, timeout)
    }

    /// Puts a copy of `*value`, waiting at most `timeout` for room, as
    /// [`put_timeout`](Self::put_timeout) does; the error hands the reference back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{PutTimeoutError, Queue};
    /// let q = Queue::with_maxsize(1)?;
    /// let word = String::from("kept");
    /// q.put_ref_timeout(&word, Duration::from_millis(10)).unwrap();
    /// match q.put_ref_timeout(&word, Duration::from_millis(10)) {
    ///     Err(PutTimeoutError::Timeout(back)) => assert!(std::ptr::eq(back, &word)),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_ref_timeout<'a>(
        &self,
        value: &'a T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<&'a T>> {
        self.put_until(value, timeout)
    }

    fn put_until<V: Borrow<T>>(
        &self,
        value: V,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<V>> {
        self.put_inner(value, Some(Instant::now() + timeout), true).map_err(|e| match e.full_or() {
            Ok(v) => PutTimeoutError::Timeout(v),
            Err(e) => e.into(),
        })
    }

    /// Puts `value` only if there is room now (Python's `put_nowait`); [`TryPutError::Full`]
    /// with the value back otherwise (Python's `queue.Full`), the queue left as it was.
    pub fn put_nowait(&self, value: T) -> std::result::Result<(), TryPutError<T>> {
        self.put_inner(value, None, false)
    }

    /// Puts a copy of `*value` only if there is room now, as [`put_nowait`](Self::put_nowait)
    /// does; [`TryPutError::Full`] hands the reference back, the queue left as it was.
    pub fn put_ref_nowait<'a>(&self, value: &'a T) -> std::result::Result<(), TryPutError<&'a T>> {
        self.put_inner(value, None, false)
    }

    fn put_inner<V: Borrow<T>>(
        &self,
        value: V,
        deadline: Option<Instant>,
        block: bool,
    ) -> std::result::Result<(), TryPutError<V>> {
        // `Full` here means no room came before the deadline (or at once, without `block`);
        // each public form says it in its own terms.
        let s = self.s();
        if s.closed.load(SeqCst) {
            return Err(TryPutError::Closed(value));
        }
        let item = value.borrow();
        let me = me();
        let sock = s.sockets.0.as_fd();
        let mut scratch = Scratch::take();
        // The item slot (and task) this put holds, given back on every path out that does not
        // put the item, a panicking `Serialize` included.
        let mut slot = Slot { s, held: false };
        let mut encoded = None;
        // Whether the ring was found without room, or its lock busy, for the patience already.
        let mut waited = false;
        let expect = LAST_PUT_LEN.get();
        let direct = s.pending.load(SeqCst) == 0 && !InPlaceScope::active();
        if direct && expect >= IN_PLACE_FROM && s.ring.reserve(None, false) {
            slot.taken();
            let _scope = InPlaceScope::enter();
            let mut send = |seq, fds: &[RawFd]| send_handles(sock, seq, fds, libc::MSG_DONTWAIT);
            match s.ring.try_write_in_place(
                me,
                expect,
                &mut scratch.0,
                |sink| encode_item(item, sink),
                &mut send,
            ) {
                Ok(Placed::Written(len)) => {
                    LAST_PUT_LEN.set(len);
                    slot.keep();
                    return Ok(());
                }
                Ok(Placed::Spilled(fds)) => encoded = Some(fds),
                Ok(Placed::NotNow) => waited = true,
                Err(e) => {
                    return Err(match e {
                        InPlaceError::Encode(msg) => TryPutError::Encode(value, msg),
                        InPlaceError::Corrupted(Corrupted(msg)) => TryPutError::Corrupted(value, msg),
                    });
                }
            }
        }
        let fds = match encoded {
            Some(fds) => fds,
            None => match encode_item(item, &mut scratch.0) {
                Ok(fds) => fds,
                Err(msg) => return Err(TryPutError::Encode(value, msg)),
            },
        };
        LAST_PUT_LEN.set(scratch.0.len());
        if !slot.held {
            if !s.ring.reserve(deadline, block) {
                return Err(TryPutError::Full(value));
            }
            slot.taken();
        }
        if direct {
            let mut send_now = |seq| send_handles(sock, seq, &fds, libc::MSG_DONTWAIT);
            let handles = (!fds.is_empty()).then_some(&mut send_now as _);
            match if waited { Ok(false) } else { s.ring.try_write(&scratch.0, me, handles) } {
                Ok(true) => {
                    slot.keep();
                    return Ok(());
                }
                Ok(false) => {}
                Err(Corrupted(msg)) => return Err(TryPutError::Corrupted(value, msg)),
            }
            if block && s.ring.maxsize() != 0 {
                let mut send = |seq| send_handles(sock, seq, &fds, 0);
                let written =
                    s.ring.write(&scratch.0, me, deadline, (!fds.is_empty()).then_some(&mut send as _));
                if let Ok(true) = written {
                    slot.keep();
                    return Ok(());
                }
                return Err(match written {
                    Err(Corrupted(msg)) => TryPutError::Corrupted(value, msg),
                    _ => TryPutError::Full(value),
                });
            }
        }
        // The value is dropped when put returns: the feeder sends duplicates of its descriptors.
        let owned =
            match fds.iter().map(|&fd| crate::sys::dup_cloexec(fd)).collect::<std::io::Result<Vec<_>>>() {
                Ok(owned) => owned,
                Err(e) => {
                    return Err(TryPutError::Encode(value, format!("duplicating the item's handles: {e}")));
                }
            };
        slot.keep();
        let mut b = s.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let buf = scratch.detach(&mut b.spare);
        b.items.push_back((buf, owned));
        s.pending.fetch_add(1, SeqCst);
        b.stop = false;
        drop(b);
        self.s().cv.notify_all();
        flush_at_exit(&self.h.shared);
        let mut feeder = self.h.feeder.lock().unwrap_or_else(|e| e.into_inner());
        if feeder.as_ref().is_none_or(|t| t.is_finished()) {
            let shared = self.h.shared.clone();
            *feeder = Some(
                std::thread::Builder::new()
                    .name("queue-feeder".into())
                    .spawn(move || feed(shared))
                    .expect("starting the queue feeder thread"),
            );
        }
        Ok(())
    }

    /// Takes the next item, waiting as long as it takes (Python's `get()`); its error is never
    /// "empty" ([`GetError`]).
    pub fn get(&self) -> std::result::Result<T, GetError> {
        loop {
            if let Some(item) = self.get_inner(None, true)? {
                return Ok(item);
            }
        }
    }

    /// Takes the next item, waiting at most `timeout` (Python's `get(timeout=t)`);
    /// [`GetTimeoutError::Timeout`] when none came (where Python raises `queue.Empty`).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.get_inner(Some(Instant::now() + timeout), true)?.ok_or(GetTimeoutError::Timeout)
    }

    /// Takes the next item if one is there now (Python's `get_nowait`); [`TryGetError::Empty`]
    /// otherwise (Python's `queue.Empty`).
    pub fn get_nowait(&self) -> std::result::Result<T, TryGetError> {
        self.get_inner(None, false)?.ok_or(TryGetError::Empty)
    }

    /// The next item, `None` when none came before the deadline (or at once, without `block`).
    fn get_inner(&self, deadline: Option<Instant>, block: bool) -> std::result::Result<Option<T>, GetError> {
        let s = self.s();
        if s.closed.load(SeqCst) {
            return Err(GetError::Closed);
        }
        s.ring
            .read_with(
                me(),
                deadline,
                block,
                &mut |seq| recv_handles(s.sockets.1.as_fd(), seq),
                |bytes, fds| wire::decode(bytes, fds),
            )
            .map_err(|Corrupted(msg)| GetError::Corrupted(msg))?
            .map(|item| item.map_err(|e: Error| GetError::Decode(e.to_string())))
            .transpose()
    }

    /// Items put and not yet taken (Python's `qsize`): those in the shared ring, and this
    /// process's own not yet written out by its feeder thread (a bounded queue also counts
    /// other processes' backlogs). A snapshot: other processes may change it at once.
    pub fn qsize(&self) -> usize {
        let s = self.s();
        let local = if s.ring.maxsize() == 0 { s.pending.load(SeqCst) } else { 0 };
        s.ring.count() + local
    }

    /// Whether no item is waiting (Python's `empty`).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue holds `maxsize` items (Python's `full`).
    pub fn full(&self) -> bool {
        let m = self.s().ring.maxsize();
        m != 0 && self.qsize() >= m
    }

    /// The item limit, 0 when unbounded.
    pub fn maxsize(&self) -> usize {
        self.s().ring.maxsize()
    }

    /// This process will put and get no more through this handle and its clones (Python's
    /// `close`). Items already put are still written out by the feeder thread.
    pub fn close(&self) {
        let s = self.s();
        s.closed.store(true, SeqCst);
        s.backlog.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        s.cv.notify_all();
    }

    /// Waits until the feeder thread has written every item this process put (Python's
    /// `join_thread`). Only after [`close`](Self::close), as in Python.
    pub fn join_thread(&self) -> Result<()> {
        if !self.s().closed.load(SeqCst) {
            return Err(Error::InvalidState("join_thread() needs close() first".into()));
        }
        let t = self.h.feeder.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        Ok(())
    }

    /// Waits until every item this process put through this queue is in the shared ring, where
    /// any consumer can take it and it outlives this process (even a SIGKILL of it). `put`
    /// followed by `flush` is a put that returns only once the item is safe.
    ///
    /// Only items that went to the feeder's backlog need it; with nobody reading a full ring it
    /// waits for as long as that lasts.
    pub fn flush(&self) {
        self.s().wait_flushed(None);
    }

    /// As [`flush`](Self::flush), waiting at most `timeout`; false if items are still waiting.
    pub fn flush_timeout(&self, timeout: Duration) -> bool {
        self.s().wait_flushed(Some(Instant::now() + timeout))
    }

    /// Dropping the last handle, or the exit of this process, will not wait for the feeder to
    /// write out the backlog (Python's `cancel_join_thread`); items still there may be lost.
    pub fn cancel_join_thread(&self) {
        self.s().cancel_join.store(true, SeqCst);
    }

    #[doc(hidden)]
    /// Bytes of records now in the shared ring (for tests).
    pub fn ring_bytes_used(&self) -> usize {
        self.s().ring.used()
    }

    #[doc(hidden)]
    /// Size of the shared ring in bytes.
    pub fn ring_capacity(&self) -> usize {
        self.s().ring.capacity()
    }

    /// For the fuzz targets: writes `bytes` as one record straight into the ring (no feeder
    /// thread, no wait beyond the put lock's patience). Ok(false) when it did not fit now.
    pub(crate) fn fuzz_try_write(&self, bytes: &[u8]) -> std::result::Result<bool, String> {
        self.s().ring.try_write(bytes, me(), None).map_err(|Corrupted(msg)| msg)
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let sockets = &self.h.shared.sockets;
        (self.h.shared.ring.region(), FdRef(sockets.0.as_fd()), FdRef(sockets.1.as_fd())).serialize(s)
    }
}

/// The queue's memory and handle sockets, as a handle arrives in another process.
fn arriving<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<(Ring, (OwnedFd, OwnedFd)), D::Error> {
    let (region, tx, rx) = <(Region, FdOwned, FdOwned)>::deserialize(d)?;
    let ring = Ring::from_region(region).map_err(serde::de::Error::custom)?;
    Ok((ring, (tx.0, rx.0)))
}

fn new_sockets() -> Result<(OwnedFd, OwnedFd)> {
    crate::sys::socketpair_datagram().map_err(Error::io("creating a queue"))
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (ring, sockets) = arriving(d)?;
        Ok(Queue::from_ring(ring, sockets, false))
    }
}

/// A simpler unbounded queue (Python's `multiprocessing.SimpleQueue`): `put`, `get`, `empty`,
/// `close`.
///
/// ```
/// let q = multiproc::SimpleQueue::new()?;
/// q.put("a".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "a");
/// assert!(q.empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new empty queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue(Queue::new()?))
    }

    /// Puts `value` (never waits).
    pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.0.put(value)
    }

    /// Takes the next item, waiting for one.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.0.get()
    }

    /// Whether no item is waiting.
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// This handle will be used no more.
    pub fn close(&self) {
        self.0.close()
    }

    /// Waits until every item this process put is in the shared ring (see [`Queue::flush`]).
    pub fn flush(&self) {
        self.0.flush()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue(Queue::deserialize(d)?))
    }
}

/// A [`Queue`] that counts unfinished tasks (Python's `multiprocessing.JoinableQueue`): every
/// `put` adds one, [`task_done`](Self::task_done) removes one, [`join`](Self::join) waits for
/// none. Derefs to [`Queue`] for the rest.
///
/// ```
/// let q = multiproc::JoinableQueue::new()?;
/// q.put(1u8).unwrap();
/// q.get().unwrap();
/// q.task_done().unwrap();
/// q.join();
/// assert!(q.task_done().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.0).finish()
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Result<JoinableQueue<T>> {
        Self::with_maxsize(0)
    }

    /// A joinable queue of at most `maxsize` items (0: unbounded).
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue(Queue::from_ring(Ring::new(maxsize, DEFAULT_RING_BYTES)?, new_sockets()?, true)))
    }

    /// One item taken with `get` is fully processed (Python's `task_done`).
    pub fn task_done(&self) -> std::result::Result<(), TaskDoneError> {
        if self.0.s().ring.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError::TooManyCalls)
        }
    }

    /// Waits until every item put has been marked done (Python's `join`).
    pub fn join(&self) {
        self.0.s().ring.join_tasks(None);
    }

    /// As [`join`](Self::join), giving up after `timeout` (false).
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.0.s().ring.join_tasks(Some(Instant::now() + timeout))
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (ring, sockets) = arriving(d)?;
        Ok(JoinableQueue(Queue::from_ring(ring, sockets, true)))
    }
}
