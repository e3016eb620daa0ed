//! The shared part of a queue: a `#[repr(C)]` header and a byte ring of records in one memfd
//! [`Region`].
//!
//! Producers serialize on `put_lock` and consumers on `get_lock` (as CPython's `wlock` and
//! `rlock`), so the ring itself has one writer and one reader at a time. A record is a 24-byte
//! header (chunk length, flags, writer pid, item length) and the chunk's bytes; `tail` moves past
//! a record only after it is fully copied, so a producer killed mid-put leaves no torn item. An
//! item larger than the ring is written as several chunks while the producer keeps `put_lock`;
//! a consumer that finds the chunk writer dead drops the partial item.
//!
//! The locks are the wait core's pid locks ([`crate::sync::wait`]): a waiter whose bounded futex
//! wait expires checks that the holder lives (a zombie counts as dead) and takes the lock over
//! if not. Waits for items and room follow the same core's spin-then-sleep policy.

use crate::error::{Error, Result};
use crate::mem::Region;
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::sync::wait::{self, Waited, WAITERS};
use crate::sys;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

const MAGIC: u64 = 0x4d50_5155_4555_4531; // "MPQUEUE1"
const VERSION: u32 = 4;
/// The ring starts here, after the header (a page under the model checker, whose atomics are
/// larger).
const RING_OFFSET: usize = if cfg!(loom) { 4096 } else { 512 };
/// Record header: chunk length, flags, writer pid, padding, whole item length.
pub(crate) const REC: usize = 24;
const FIRST: u32 = 1;
const LAST: u32 = 2;
/// The item's handles travel on the queue's socket, in a datagram tagged with the record's
/// handle sequence number (header bytes 12..16).
const HANDLES: u32 = 4;
/// Filler up to the ring's end, written before an item encoded in place so that the item lies
/// in one piece at the ring's start (where a get decodes it without assembling it first);
/// consumers skip it.
const PAD: u32 = 8;
/// How long a non-blocking write waits for the put lock (and a large item for room) before
/// leaving the item to the feeder.
const PUT_LOCK_PATIENCE: Duration = Duration::from_millis(2);
/// Items from this size wait for room in a full ring rather than go to the feeder: their
/// backlog buffers would cost more in page faults than the wait. Small items go to the
/// feeder at once, which writes them in bursts.
const WAIT_FOR_ROOM_FROM: usize = 64 << 10;

/// The header at the start of the region, in four 128-byte groups so that what producers
/// write, what consumers write and what both write sit on different cache lines (and line
/// pairs, which x86 prefetches together): a put then moves the consumer's line only to read
/// `head`, and a get the producer's only to read `tail`.
#[repr(C)]
struct Header {
    // Set at creation; the waiter counts change only around sleeps.
    magic: u64,
    version: u32,
    /// Tag of the last item whose handles were sent (see [`HANDLES`]).
    handle_seq: AtomicU32,
    /// Most items at once; 0 for no limit.
    maxsize: u64,
    /// Bytes in the ring.
    capacity: u64,
    empty_waiters: AtomicU32,
    full_waiters: AtomicU32,
    /// Bumped when `unfinished` reaches zero.
    tasks_done: AtomicU32,
    tasks_waiters: AtomicU32,
    _fixed: [u8; 80],
    // Producers.
    put_lock: AtomicU32,
    /// Bumped when a record is committed while a consumer may sleep.
    not_empty: AtomicU32,
    tail: AtomicU64,
    /// Items of an unbounded queue whose first record was committed.
    committed: AtomicU64,
    /// The `head` a producer last read: free space is figured from it, and `head` (on the
    /// consumers' line) read again only when that is not enough. `head` only grows, so the
    /// figure is never more than the truth.
    head_seen: AtomicU64,
    _producers: [u8; 96],
    // Consumers.
    get_lock: AtomicU32,
    /// Bumped when ring space or an item slot is freed while a producer may sleep.
    not_full: AtomicU32,
    head: AtomicU64,
    /// Items of an unbounded queue taken (or dropped, as pieces of a dead writer's item).
    taken: AtomicU64,
    /// The `tail` a consumer last read: records up to it are committed, and `tail` (on the
    /// producers' line) is read again only when `head` reaches it.
    tail_seen: AtomicU64,
    _consumers: [u8; 96],
    // Both.
    /// Slots of a bounded queue taken by `put` and not yet freed by `get`. (An unbounded
    /// queue's length is `committed - taken` instead, so that each side writes only its own
    /// line.)
    count: AtomicU64,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU64,
    _both: [u8; 112],
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Header>() == 512);
    assert!(std::mem::offset_of!(Header, put_lock) == 128);
    assert!(std::mem::offset_of!(Header, get_lock) == 256);
    assert!(std::mem::offset_of!(Header, count) == 384);
};
pub(crate) const PUT_LOCK_OFFSET: usize = std::mem::offset_of!(Header, put_lock);
const _: () = assert!(std::mem::size_of::<Header>() <= RING_OFFSET);
const _: () = assert!(std::mem::align_of::<Header>() == 8);

impl Header {
    /// A new queue's header: its size and item limit, every position, count and word at zero
    /// (as in the zero-filled memory it is written into).
    fn new(maxsize: u64, capacity: u64) -> Header {
        let zero32 = || AtomicU32::new(0);
        let zero64 = || AtomicU64::new(0);
        Header {
            magic: MAGIC,
            version: VERSION,
            handle_seq: zero32(),
            maxsize,
            capacity,
            empty_waiters: zero32(),
            full_waiters: zero32(),
            tasks_done: zero32(),
            tasks_waiters: zero32(),
            _fixed: [0; 80],
            put_lock: zero32(),
            not_empty: zero32(),
            tail: zero64(),
            committed: zero64(),
            head_seen: zero64(),
            _producers: [0; 96],
            get_lock: zero32(),
            not_full: zero32(),
            head: zero64(),
            taken: zero64(),
            tail_seen: zero64(),
            _consumers: [0; 96],
            count: zero64(),
            unfinished: zero64(),
            _both: [0; 112],
        }
    }
}

/// The ring's positions or records make no sense: another process wrote over the queue's
/// memory. Reported, never acted on: nothing is read or written outside the ring.
#[derive(Debug)]
pub(crate) struct Corrupted(pub(crate) String);

/// Sends an item's handles in a datagram tagged with the given sequence number, before the
/// item's first record is published. `WouldBlock` means "not now" (the put goes to the feeder);
/// any other error sends the item without them (its `get` then reports a decode error).
pub(crate) type SendHandles<'a> = &'a mut dyn FnMut(u32) -> std::io::Result<()>;

/// Takes the handles of the item tagged with the given sequence number off the queue's socket
/// (empty if they were lost with a consumer killed mid-get).
pub(crate) type RecvHandles<'a> = &'a mut dyn FnMut(u32) -> Vec<std::os::fd::OwnedFd>;

fn record_header(len: usize, flags: u32, me: u32, total: usize, seq: u32) -> [u8; REC] {
    let mut rec = [0u8; REC];
    rec[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    rec[4..8].copy_from_slice(&flags.to_le_bytes());
    rec[8..12].copy_from_slice(&me.to_le_bytes());
    rec[12..16].copy_from_slice(&seq.to_le_bytes());
    rec[16..24].copy_from_slice(&(total as u64).to_le_bytes());
    rec
}

thread_local! {
    /// The buffer in which a thread assembles items that lie in pieces in the ring (wrapped
    /// around its end, or larger than it), kept between gets: a fresh allocation per item
    /// costs more in page faults than the copy.
    static ASSEMBLY: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest assembly buffer a thread keeps between gets.
const ASSEMBLY_KEEP: usize = 16 << 20;

/// Releases a pid lock word when dropped.
struct Unlock<'a>(&'a AtomicU32);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        Ring::unlock(self.0);
    }
}

/// How [`Ring::try_write_in_place`] ended.
#[derive(Debug)]
pub(crate) enum Placed {
    /// Published, with this many encoded bytes.
    Written(usize),
    /// Encoded into the spill buffer instead (it did not fit, or its handles could not be
    /// sent now); the descriptors of its handles.
    Spilled(Vec<RawFd>),
    /// Nothing encoded: the put lock or the room did not come within the patience.
    NotNow,
}

/// Why [`Ring::try_write_in_place`] failed; nothing was published.
#[derive(Debug)]
pub(crate) enum InPlaceError<E> {
    /// The item's own encoding failed.
    Encode(E),
    Corrupted(Corrupted),
}

/// The free part of the ring after the header of a record being written, as an encoder's
/// output ([`wire::Sink`]): bytes go straight into the shared memory while they fit, and
/// into the spill buffer (after a copy of those already written) once they do not.
pub(crate) struct InPlace<'a> {
    ring: &'a Ring,
    /// Ring offset of the next byte.
    off: usize,
    /// Bytes that fit.
    room: usize,
    /// Bytes written.
    len: usize,
    start: u64,
    spill: &'a mut Vec<u8>,
    spilled: bool,
}

impl<'a> InPlace<'a> {
    fn new(ring: &'a Ring, start: u64, room: usize, spill: &'a mut Vec<u8>) -> InPlace<'a> {
        let off = (start % ring.capacity as u64) as usize;
        InPlace { ring, off, room, len: 0, start, spill, spilled: false }
    }

    /// Moves what was written into the spill buffer; later bytes go there too.
    fn spill_now(&mut self) {
        if self.spilled {
            return;
        }
        self.spilled = true;
        self.spill.reserve(self.len);
        let at = self.spill.len();
        self.ring.read_at(self.start, &mut self.spill.spare_capacity_mut()[..self.len]);
        // SAFETY: `read_at` just initialised the `len` bytes after `at`.
        unsafe { self.spill.set_len(at + self.len) };
    }
}

impl crate::wire::Sink for InPlace<'_> {
    #[inline]
    fn push(&mut self, byte: u8) {
        self.extend(&[byte]);
    }

    #[inline]
    fn extend(&mut self, data: &[u8]) {
        if !self.spilled {
            if data.len() <= self.room - self.len {
                let cap = self.ring.capacity;
                if self.off + data.len() < cap {
                    // SAFETY: `off + data.len() < cap`: inside the ring. The bytes lie in its
                    // free part (at most `room` bytes after `start`, checked against `head` by
                    // the put-lock holder), which no reader looks at until they are published.
                    unsafe {
                        let at = self.ring.region.as_ptr().add(RING_OFFSET + self.off);
                        std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
                    }
                    self.off += data.len();
                } else {
                    self.ring.write_at(self.start.wrapping_add(self.len as u64), data);
                    self.off = (self.off + data.len()) - cap;
                }
                self.len += data.len();
                return;
            }
            self.spill_now();
        }
        self.spill.extend_from_slice(data);
    }
}

/// The mapped queue memory, with its size and item limit as read once on arrival (the header
/// lies in memory that other processes can write; indices into the ring never trust it again).
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    region: Region,
    capacity: usize,
    maxsize: u64,
}

impl Ring {
    pub(crate) fn new(maxsize: usize, capacity: usize) -> Result<Ring> {
        let capacity = capacity.max(4096).next_multiple_of(8);
        let region = Region::new(c"mp-queue", RING_OFFSET + capacity)?;
        // SAFETY: the region is fresh, page aligned and large enough for a Header; nobody else
        // can see it yet.
        unsafe { (region.as_ptr() as *mut Header).write(Header::new(maxsize as u64, capacity as u64)) };
        Ok(Ring { region, capacity, maxsize: maxsize as u64 })
    }

    /// Checks a region received from another process.
    pub(crate) fn from_region(region: Region) -> Result<Ring> {
        if region.len() < RING_OFFSET {
            return Err(Error::Decode("queue memory too small".into()));
        }
        let mut ring = Ring { region, capacity: 0, maxsize: 0 };
        let h = ring.h();
        if h.magic != MAGIC || h.version != VERSION {
            return Err(Error::Decode("not a queue of this version".into()));
        }
        let (capacity, maxsize) = (h.capacity, h.maxsize);
        let fits = usize::try_from(capacity)
            .ok()
            .and_then(|c| c.checked_add(RING_OFFSET))
            .is_some_and(|end| end <= ring.region.len());
        if capacity < 4096 || capacity % 8 != 0 || !fits {
            return Err(Error::Decode(format!(
                "queue ring of {capacity} bytes does not fit its {} bytes of memory",
                ring.region.len()
            )));
        }
        (ring.capacity, ring.maxsize) = (capacity as usize, maxsize);
        Ok(ring)
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    fn h(&self) -> &Header {
        // SAFETY: the region starts with an initialised Header (checked in `from_region`),
        // is page aligned, and lives as long as `self`. Fields shared across processes are
        // atomics; the plain fields are written only before the region is shared.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize as usize
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items in the queue (for a bounded queue, also those being put).
    pub(crate) fn count(&self) -> usize {
        let h = self.h();
        if self.maxsize != 0 {
            return h.count.load(SeqCst) as usize;
        }
        // `taken` first: `committed` read after it is at least as large.
        let taken = h.taken.load(SeqCst);
        h.committed.load(SeqCst).saturating_sub(taken) as usize
    }

    /// One item fewer in the queue: taken by a get, or dropped.
    fn item_gone(&self) {
        let h = self.h();
        if self.maxsize != 0 {
            h.count.fetch_sub(1, SeqCst);
        } else {
            // Only the get-lock holder writes `taken`.
            h.taken.store(h.taken.load(Relaxed).wrapping_add(1), SeqCst);
        }
    }

    /// Bytes of records now in the ring.
    pub(crate) fn used(&self) -> usize {
        let h = self.h();
        let head = h.head.load(SeqCst);
        h.tail.load(SeqCst).saturating_sub(head) as usize
    }

    /// Free ring bytes, for the put-lock holder: from [`Header::head_seen`] when that shows
    /// `need` bytes free, else from `head` read now (and remembered). `None` when `head` and
    /// `tail` make no sense (the memory was written over).
    fn free(&self, need: u64) -> Option<u64> {
        let h = self.h();
        let cap = self.capacity as u64;
        let tail = h.tail.load(Relaxed);
        // Release/Acquire on `head_seen` carry the consumer's `head` store (made after it read
        // the bytes) to the next producer that writes over them.
        let seen = h.head_seen.load(Acquire);
        let cached = cap.saturating_sub(tail.wrapping_sub(seen));
        if cached >= need {
            return Some(cached);
        }
        let head = h.head.load(SeqCst);
        if head != seen {
            h.head_seen.store(head, Release);
        }
        cap.checked_sub(tail.wrapping_sub(head))
    }

    /// How far records are committed, for the get-lock holder at `head`: from
    /// [`Header::tail_seen`] when that is past `head`, else from `tail` read now (and
    /// remembered).
    fn known_tail(&self, head: u64) -> Result<u64, Corrupted> {
        let h = self.h();
        let cap = self.capacity as u64;
        // Release/Acquire on `tail_seen` carry the producer's record bytes to the next consumer.
        let seen = h.tail_seen.load(Acquire);
        if seen > head && seen - head <= cap {
            return Ok(seen);
        }
        let tail = h.tail.load(SeqCst);
        if tail.wrapping_sub(head) > cap {
            return Err(self.corrupted());
        }
        if tail != seen {
            h.tail_seen.store(tail, Release);
        }
        Ok(tail)
    }

    // ---- ring bytes ---------------------------------------------------------------------

    /// Where `len` bytes at ring position `pos` lie: their offset in the ring, and how many of
    /// them come before its end (the rest wrap around to its start). Callers never ask for more
    /// than the ring holds: free space and committed bytes are checked to be at most its capacity
    /// (`free`, `known_tail`). The assertion keeps the copies inside the ring whatever the shared
    /// header says; `what` is the copy, for its message.
    fn span(&self, pos: u64, len: usize, what: &str) -> (usize, usize) {
        let cap = self.capacity();
        assert!(len <= cap, "queue ring corrupted: {len} bytes to {what} {cap}");
        let off = (pos % cap as u64) as usize;
        (off, len.min(cap - off))
    }

    fn write_at(&self, pos: u64, data: &[u8]) {
        let (off, first) = self.span(pos, data.len(), "write into");
        // SAFETY: `off + first <= cap` and `data.len() - first <= cap` (`span`) bytes lie inside the ring
        // (RING_OFFSET + cap <= region.len()). Only the put-lock holder writes, and only in the
        // free part of the ring (between tail and head + cap) that no reader looks at.
        unsafe {
            let ring = self.region.as_ptr().add(RING_OFFSET);
            std::ptr::copy_nonoverlapping(data.as_ptr(), ring.add(off), first);
            std::ptr::copy_nonoverlapping(data.as_ptr().add(first), ring, data.len() - first);
        }
    }

    fn read_at(&self, pos: u64, out: &mut [std::mem::MaybeUninit<u8>]) {
        let (off, first) = self.span(pos, out.len(), "read from");
        // SAFETY: as in `write_at`; only the get-lock holder reads, and only committed bytes
        // (between head and tail) that no writer touches until head moves past them.
        unsafe {
            let ring = self.region.as_ptr().add(RING_OFFSET);
            let dst = out.as_mut_ptr() as *mut u8;
            std::ptr::copy_nonoverlapping(ring.add(off), dst, first);
            std::ptr::copy_nonoverlapping(ring, dst.add(first), out.len() - first);
        }
    }

    // ---- waiting ------------------------------------------------------------------------

    /// Wakes the sleepers on `seq`, if any (see [`wait::notify`]).
    #[inline]
    fn notify(seq: &AtomicU32, waiters: &AtomicU32) {
        wait::notify(seq, waiters)
    }

    /// Waits until `ready()` as the wait core does (see [`wait::wait_for`]).
    #[inline]
    fn wait_for(
        seq: &AtomicU32,
        waiters: &AtomicU32,
        ready: impl Fn() -> bool,
        deadline: Option<Instant>,
        abandon: impl FnMut() -> bool,
    ) -> Waited {
        wait::wait_for(&wait::RING, seq, waiters, ready, deadline, abandon)
    }

    // ---- locks --------------------------------------------------------------------------

    /// Takes a pid lock word now if it is free or its holder is dead. `me` is this process's
    /// pid, which the wait core writes into the word.
    #[inline]
    pub(crate) fn try_lock(word: &AtomicU32, me: u32) -> bool {
        debug_assert_eq!(me, sys::getpid() as u32);
        !matches!(wait::try_lock(word), wait::Acquired::TimedOut)
    }

    /// Takes a pid lock word (the holder's pid, and a waiters bit), as the wait core does: a
    /// holder found dead is taken over. False if the deadline passed.
    #[inline]
    pub(crate) fn lock(word: &AtomicU32, me: u32, deadline: Option<Instant>) -> bool {
        debug_assert_eq!(me, sys::getpid() as u32);
        !matches!(wait::lock(word, deadline), wait::Acquired::TimedOut)
    }

    /// Releases a pid lock word taken with [`lock`](Self::lock).
    #[inline]
    pub(crate) fn unlock(word: &AtomicU32) {
        wait::unlock(word);
    }

    // ---- producer side ------------------------------------------------------------------

    /// Takes one of `maxsize` item slots (always succeeds when unbounded).
    pub(crate) fn reserve(&self, deadline: Option<Instant>, block: bool) -> bool {
        let h = self.h();
        if self.maxsize == 0 {
            // Unbounded: the item is counted when its first record is written (`commit`), so
            // a producer killed with items in its backlog leaves no phantom items behind.
            return true;
        }
        loop {
            let c = h.count.load(SeqCst);
            if c < self.maxsize {
                if h.count.compare_exchange(c, c + 1, SeqCst, Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            if !block {
                return false;
            }
            let ready = || h.count.load(SeqCst) < self.maxsize;
            if let Waited::TimedOut = Self::wait_for(&h.not_full, &h.full_waiters, ready, deadline, || false)
            {
                return false;
            }
        }
    }

    /// Gives back a slot taken by [`reserve`](Self::reserve) for an item never written.
    pub(crate) fn unreserve(&self) {
        if self.maxsize != 0 {
            let h = self.h();
            h.count.fetch_sub(1, SeqCst);
            Self::notify(&h.not_full, &h.full_waiters);
        }
    }

    pub(crate) fn task_added(&self) {
        self.h().unfinished.fetch_add(1, SeqCst);
    }

    /// With the put lock held, before an item's first record: sends its handles. Returns the
    /// flag and tag for the record, or `None` to give up for now.
    fn send_handles(&self, handles: Option<SendHandles<'_>>) -> Option<(u32, u32)> {
        let Some(send) = handles else { return Some((0, 0)) };
        let seq = self.h().handle_seq.fetch_add(1, SeqCst).wrapping_add(1);
        match send(seq) {
            Ok(()) => Some((HANDLES, seq)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => {
                log::warn!("queue: the handles of an item could not be sent ({e}); its get will fail");
                Some((0, 0))
            }
        }
    }

    /// Writes `item` now if the put lock comes within [`PUT_LOCK_PATIENCE`] and the ring has
    /// room (for an item of [`WAIT_FOR_ROOM_FROM`] bytes or more: room that comes within the
    /// same patience); false otherwise (the item then goes to the feeder thread).
    /// [`Corrupted`] when the ring's positions make no sense.
    ///
    /// Another producer holds the put lock only while it copies an item in, and a live consumer
    /// frees room at memory speed, so a short wait usually succeeds: an item written now cannot
    /// be lost with this process, while one left to the feeder can, and a producer that outruns
    /// its consumers by a little does not pile items up in memory.
    pub(crate) fn try_write(
        &self,
        item: &[u8],
        me: u32,
        handles: Option<SendHandles<'_>>,
    ) -> Result<bool, Corrupted> {
        let h = self.h();
        if REC + item.len() > self.capacity() {
            return Ok(false);
        }
        // The clock is read only when a wait begins: on the fast path it would cost more than
        // the copy of a small item.
        let mut patience = None;
        let mut patience = || *patience.get_or_insert_with(|| Instant::now() + PUT_LOCK_PATIENCE);
        if h.put_lock.compare_exchange(0, me, Acquire, Relaxed).is_err()
            && !Self::lock(&h.put_lock, me, Some(patience()))
        {
            return Ok(false);
        }
        let need = (REC + item.len()) as u64;
        let mut room = self.free(need).map(|f| f >= need);
        if room == Some(false) && item.len() >= WAIT_FOR_ROOM_FROM {
            let ready = || self.free(need).is_none_or(|f| f >= need);
            Self::wait_for(&h.not_full, &h.full_waiters, ready, Some(patience()), || false);
            room = self.free(need).map(|f| f >= need);
        }
        let Some(room) = room else {
            Self::unlock(&h.put_lock);
            return Err(self.corrupted());
        };
        let ok = room
            && match self.send_handles(handles) {
                Some((flag, seq)) => {
                    self.commit(item, FIRST | LAST | flag, me, item.len(), seq);
                    true
                }
                None => false,
            };
        Self::unlock(&h.put_lock);
        Ok(ok)
    }

    /// The error for positions that make no sense, naming them.
    fn corrupted(&self) -> Corrupted {
        let h = self.h();
        let (head, tail) = (h.head.load(SeqCst), h.tail.load(SeqCst));
        Corrupted(format!(
            "queue memory corrupted: head {head} and tail {tail} of a ring of {} bytes",
            self.capacity
        ))
    }

    fn commit(&self, chunk: &[u8], flags: u32, me: u32, total: usize, seq: u32) {
        let tail = self.h().tail.load(Relaxed);
        self.write_at(tail.wrapping_add(REC as u64), chunk);
        self.publish(chunk.len(), flags, me, total, seq);
    }

    /// Writes the header of a record whose `len` bytes are already in place after `tail`, and
    /// publishes it.
    fn publish(&self, len: usize, flags: u32, me: u32, total: usize, seq: u32) {
        let h = self.h();
        let tail = h.tail.load(Relaxed);
        if flags & FIRST != 0 && self.maxsize == 0 {
            // Only the put-lock holder writes `committed`: no read-modify-write needed. The
            // `SeqCst` store of `tail` below publishes it before the item can be taken.
            h.committed.store(h.committed.load(Relaxed).wrapping_add(1), Relaxed);
        }
        self.write_at(tail, &record_header(len, flags, me, total, seq));
        h.tail.store(tail.wrapping_add((REC + len) as u64), SeqCst);
        Self::notify(&h.not_empty, &h.empty_waiters);
    }

    /// Encodes an item straight into the free part of the ring, with the put lock held, and
    /// publishes it as one record: the copy into a private buffer and out of it again is
    /// saved. `expect` is the encoded size the caller expects (the thread's last item), for
    /// which room must be there, or come within [`PUT_LOCK_PATIENCE`]; `encode` runs the
    /// item's `Serialize` (a panic in it releases the lock and publishes nothing) and returns
    /// the descriptors of its handles, which `send` sends (without blocking) before the record
    /// is published.
    ///
    /// An item that turns out larger than the room, or whose handles cannot be sent now, ends
    /// in `spill` (empty on entry), its bytes and descriptors handed back
    /// ([`Placed::Spilled`]) for the other paths to write; nothing is published.
    pub(crate) fn try_write_in_place<E>(
        &self,
        me: u32,
        expect: usize,
        spill: &mut Vec<u8>,
        encode: impl FnOnce(&mut InPlace<'_>) -> Result<Vec<RawFd>, E>,
        send: &mut dyn FnMut(u32, &[RawFd]) -> std::io::Result<()>,
    ) -> Result<Placed, InPlaceError<E>> {
        debug_assert!(spill.is_empty());
        let h = self.h();
        let need = REC.saturating_add(expect) as u64;
        if need > self.capacity() as u64 {
            return Ok(Placed::NotNow);
        }
        let mut patience = None;
        let mut patience = || *patience.get_or_insert_with(|| Instant::now() + PUT_LOCK_PATIENCE);
        if h.put_lock.compare_exchange(0, me, Acquire, Relaxed).is_err()
            && !Self::lock(&h.put_lock, me, Some(patience()))
        {
            return Ok(Placed::NotNow);
        }
        // Released on every path out, a panicking `Serialize` in `encode` included.
        let _unlock = Unlock(&h.put_lock);
        let mut free = self.free(need);
        if free.is_some_and(|f| f < need) {
            let ready = || self.free(need).is_none_or(|f| f >= need);
            Self::wait_for(&h.not_full, &h.full_waiters, ready, Some(patience()), || false);
            free = self.free(need);
        }
        let Some(free) = free else { return Err(InPlaceError::Corrupted(self.corrupted())) };
        if free < need {
            return Ok(Placed::NotNow);
        }
        // All the room there is now (the figure for `need` may be an older, smaller one): the
        // item may be larger than expected. One read of the consumers' line per large item.
        let mut free = self.free(self.capacity() as u64).unwrap_or(free) as usize;
        let mut tail = h.tail.load(Relaxed);
        let to_end = self.capacity() - (tail % self.capacity() as u64) as usize;
        if (REC..REC + expect).contains(&to_end) && free >= to_end + need as usize {
            // The item would wrap around the ring's end, and the room allows a filler first.
            self.write_at(tail, &record_header(to_end - REC, PAD, me, 0, 0));
            tail = tail.wrapping_add(to_end as u64);
            h.tail.store(tail, SeqCst);
            free -= to_end;
        }
        let mut sink = InPlace::new(self, tail.wrapping_add(REC as u64), free - REC, spill);
        let fds = encode(&mut sink).map_err(InPlaceError::Encode)?;
        if sink.spilled {
            return Ok(Placed::Spilled(fds));
        }
        let len = sink.len;
        let mut send_now = |seq: u32| send(seq, &fds);
        let handles: Option<SendHandles<'_>> = if fds.is_empty() { None } else { Some(&mut send_now) };
        let Some((flag, seq)) = self.send_handles(handles) else {
            sink.spill_now();
            return Ok(Placed::Spilled(fds));
        };
        self.publish(len, FIRST | LAST | flag, me, len, seq);
        Ok(Placed::Written(len))
    }

    /// Writes `item`, waiting for the put lock and ring space. The deadline covers the wait
    /// before the first chunk; once an item is started it is finished. False on timeout;
    /// [`Corrupted`] when the ring's positions make no sense.
    pub(crate) fn write(
        &self,
        item: &[u8],
        me: u32,
        deadline: Option<Instant>,
        mut handles: Option<SendHandles<'_>>,
    ) -> Result<bool, Corrupted> {
        let h = self.h();
        if !Self::lock(&h.put_lock, me, deadline) {
            return Ok(false);
        }
        let cap = self.capacity();
        let fits = REC + item.len() <= cap;
        let mut off = 0;
        loop {
            let remaining = item.len() - off;
            let want = if fits { REC + remaining } else { (REC + remaining).min(cap / 4) } as u64;
            let d = if off == 0 { deadline } else { None };
            let ready = || self.free(want).is_none_or(|f| f >= want);
            if let Waited::TimedOut = Self::wait_for(&h.not_full, &h.full_waiters, ready, d, || false) {
                Self::unlock(&h.put_lock);
                return Ok(false);
            }
            let Some(free) = self.free(want) else {
                Self::unlock(&h.put_lock);
                return Err(self.corrupted());
            };
            let chunk = remaining.min(free as usize - REC);
            let (mut flags, mut seq) = (0, 0);
            if off == 0 {
                // Blocking senders never answer WouldBlock.
                (flags, seq) = self.send_handles(handles.take()).unwrap_or((0, 0));
                flags |= FIRST;
            }
            if off + chunk == item.len() {
                flags |= LAST;
            }
            self.commit(&item[off..off + chunk], flags, me, item.len(), seq);
            off += chunk;
            if off == item.len() {
                break;
            }
        }
        Self::unlock(&h.put_lock);
        Ok(true)
    }

    // ---- consumer side ------------------------------------------------------------------

    /// Takes the next whole item and hands its bytes to `take` (straight from the shared memory
    /// when the item lies in one piece there). `None` when nothing came before the deadline (or
    /// at once, with `block` false); [`Corrupted`] when the ring's records make no sense (then
    /// nothing is taken, and every later get says the same).
    pub(crate) fn read_with<R>(
        &self,
        me: u32,
        deadline: Option<Instant>,
        block: bool,
        recv_handles: RecvHandles<'_>,
        take: impl FnOnce(&[u8], Vec<std::os::fd::OwnedFd>) -> R,
    ) -> Result<Option<R>, Corrupted> {
        let h = self.h();
        let locked =
            if block { Self::lock(&h.get_lock, me, deadline) } else { Self::try_lock(&h.get_lock, me) };
        if !locked {
            return Ok(None);
        }
        // Released on every path out, a panicking `Deserialize` in `take` included.
        let _unlock = Unlock(&h.get_lock);
        self.read_locked(deadline, block, recv_handles, take)
    }

    /// Marks the record ending before `next` read, and the item done when `whole`.
    fn consumed(&self, next: u64, whole: bool) {
        let h = self.h();
        h.head.store(next, SeqCst);
        if whole {
            self.item_gone();
        }
        Self::notify(&h.not_full, &h.full_waiters);
    }

    fn read_locked<R>(
        &self,
        deadline: Option<Instant>,
        block: bool,
        recv_handles: RecvHandles<'_>,
        take: impl FnOnce(&[u8], Vec<std::os::fd::OwnedFd>) -> R,
    ) -> Result<Option<R>, Corrupted> {
        let h = self.h();
        let cap = self.capacity() as u64;
        // The item being assembled from chunks: its bytes so far, writer and whole length.
        let mut partial: Option<(Vec<u8>, u32, usize)> = None;
        let mut fds = Vec::new();
        loop {
            let head = h.head.load(Relaxed);
            let tail = self.known_tail(head)?;
            if tail == head {
                if partial.is_none() && !block {
                    return Ok(None);
                }
                let writer = partial.as_ref().map(|p| p.1);
                let d = if writer.is_some() { None } else { deadline };
                let ready = || h.tail.load(SeqCst) != head;
                // The writer of an item holds the put lock from its first chunk to its last.
                let abandon = || {
                    writer.is_some_and(|pid| {
                        h.put_lock.load(SeqCst) & !WAITERS != pid || !sys::pid_alive(pid as libc::pid_t)
                    })
                };
                match Self::wait_for(&h.not_empty, &h.empty_waiters, ready, d, abandon) {
                    Waited::Ready => {}
                    Waited::TimedOut => return Ok(None),
                    Waited::Abandon => {
                        log::debug!("queue: dropping an item whose writer died mid-put");
                        partial = None;
                        self.item_gone();
                        Self::notify(&h.not_full, &h.full_waiters);
                    }
                }
                continue;
            }
            let mut rec = [std::mem::MaybeUninit::new(0u8); REC];
            self.read_at(head, &mut rec);
            // SAFETY: every byte was initialised above.
            let rec: [u8; REC] = unsafe { std::mem::transmute(rec) };
            let len = u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize;
            let flags = u32::from_le_bytes(rec[4..8].try_into().unwrap());
            let pid = u32::from_le_bytes(rec[8..12].try_into().unwrap());
            let seq = u32::from_le_bytes(rec[12..16].try_into().unwrap());
            let total = u64::from_le_bytes(rec[16..24].try_into().unwrap());
            // At most `cap` (checked by `known_tail`); positions wrap only in written-over memory.
            let committed = tail.wrapping_sub(head);
            let corrupted = |what: &str| {
                Corrupted(format!(
                    "queue memory corrupted: {what} (record of {len} bytes at {head}, {committed} \
                     bytes committed, ring of {cap})"
                ))
            };
            if (REC + len) as u64 > committed {
                return Err(corrupted("a record runs past the committed bytes"));
            }
            let next = head.wrapping_add((REC + len) as u64);
            if flags & PAD != 0 {
                self.consumed(next, false);
                continue;
            }
            let total = usize::try_from(total).map_err(|_| corrupted("item length out of range"))?;
            let so_far = if flags & FIRST != 0 { 0 } else { partial.as_ref().map_or(0, |p| p.0.len()) };
            let whole =
                if flags & FIRST != 0 { Some((pid, total)) } else { partial.as_ref().map(|p| (p.1, p.2)) };
            if let Some((writer, total)) = whole {
                let end = so_far + len;
                if writer != pid || end > total || (flags & LAST != 0) != (end == total) {
                    return Err(corrupted("a record does not fit its item"));
                }
            }
            if flags & FIRST != 0 && partial.take().is_some() {
                // A writer died mid-item and another producer went on: drop the pieces.
                self.item_gone();
            }
            if flags & FIRST != 0 {
                fds = if flags & HANDLES != 0 { recv_handles(seq) } else { Vec::new() };
            }
            let start = (head.wrapping_add(REC as u64) % cap) as usize;
            if flags & (FIRST | LAST) == FIRST | LAST && start + len <= cap as usize {
                // The whole item, in one piece: decode it where it lies.
                // SAFETY: `start + len <= cap`, inside the ring; the bytes are a committed
                // record (between head and tail) that no writer touches until head moves past
                // it, which happens only after `take` returns.
                let bytes =
                    unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(RING_OFFSET + start), len) };
                let out = take(bytes, std::mem::take(&mut fds));
                self.consumed(next, true);
                return Ok(Some(out));
            }
            if flags & FIRST != 0 {
                let mut buf = ASSEMBLY.with(|c| c.take());
                buf.clear();
                buf.reserve(total.min(1 << 30));
                partial = Some((buf, pid, total));
            }
            let mut done = false;
            match partial.as_mut() {
                Some((buf, _, _)) => {
                    let at = buf.len();
                    buf.reserve(len);
                    self.read_at(head.wrapping_add(REC as u64), &mut buf.spare_capacity_mut()[..len]);
                    // SAFETY: `read_at` just initialised the `len` bytes after `at`.
                    unsafe { buf.set_len(at + len) };
                    done = flags & LAST != 0;
                }
                None => {
                    // The rest of an item whose reader died: skip it.
                    if flags & LAST != 0 {
                        self.item_gone();
                    }
                }
            }
            self.consumed(next, done);
            if done {
                let Some((buf, _, _)) = partial else { unreachable!("done implies an item") };
                let out = take(&buf, fds);
                if buf.capacity() <= ASSEMBLY_KEEP {
                    ASSEMBLY.with(|c| c.set(buf));
                }
                return Ok(Some(out));
            }
        }
    }

    // ---- JoinableQueue ------------------------------------------------------------------

    /// Marks one task done; false if none was unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let h = self.h();
        let mut n = h.unfinished.load(SeqCst);
        loop {
            if n == 0 {
                return false;
            }
            match h.unfinished.compare_exchange(n, n - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(v) => n = v,
            }
        }
        if n == 1 {
            Self::notify(&h.tasks_done, &h.tasks_waiters);
        }
        true
    }

    /// Waits until every task is done, or the deadline passes (false).
    pub(crate) fn join_tasks(&self, deadline: Option<Instant>) -> bool {
        let h = self.h();
        let ready = || h.unfinished.load(SeqCst) == 0;
        matches!(Self::wait_for(&h.tasks_done, &h.tasks_waiters, ready, deadline, || false), Waited::Ready)
    }
}

// ---- what async waits watch (feature `tokio`) -------------------------------------------

#[cfg(feature = "tokio")]
impl Ring {
    /// The consumers' lock word.
    pub(crate) fn get_lock_word(&self) -> &AtomicU32 {
        &self.h().get_lock
    }

    /// The word bumped when a record is committed, and its sleepers' count.
    pub(crate) fn items_words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.h().not_empty, &self.h().empty_waiters)
    }

    /// Whether a record is committed and not yet taken.
    pub(crate) fn has_records(&self) -> bool {
        self.h().tail.load(SeqCst) != self.h().head.load(SeqCst)
    }

    /// The word bumped when room is made, and its sleepers' count.
    pub(crate) fn room_words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.h().not_full, &self.h().full_waiters)
    }

    /// Whether a bounded queue has an item slot free (always for an unbounded one).
    pub(crate) fn has_slot(&self) -> bool {
        self.maxsize == 0 || self.h().count.load(SeqCst) < self.maxsize
    }

    /// The word bumped when the last unfinished task is done, and its sleepers' count.
    pub(crate) fn tasks_words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.h().tasks_done, &self.h().tasks_waiters)
    }

    /// Whether every task put has been marked done.
    pub(crate) fn tasks_finished(&self) -> bool {
        self.h().unfinished.load(SeqCst) == 0
    }

    /// [`read_with`](Self::read_with) without waiting, by a caller that holds the get lock.
    pub(crate) fn read_locked_now<R>(
        &self,
        recv_handles: RecvHandles<'_>,
        take: impl FnOnce(&[u8], Vec<std::os::fd::OwnedFd>) -> R,
    ) -> Result<Option<R>, Corrupted> {
        self.read_locked(None, false, recv_handles, take)
    }
}

#[cfg(test)]
mod tests {
    //! The ring between threads of one process: the same code paths as between processes
    //! (the pid locks exclude threads too, as their compare-and-swap does not care who asks).
    //! Run under Miri with `MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test --lib ring`,
    //! where `sys` stands heap memory in for the mapping.
    use super::*;

    /// A pid no process has (pid_max is at most 2^22).
    const DEAD: u32 = (1 << 22) - 1;

    fn me() -> u32 {
        sys::getpid() as u32
    }

    /// Item `i` of producer `p`: its tag, then bytes derived from both; sizes from empty to
    /// several times the 4 KiB ring.
    fn item(p: usize, i: usize) -> Vec<u8> {
        let len = 8 + [0, 1, 100, 4000, 4096, 9000][(i + p) % 6];
        let mut v: Vec<u8> = if cfg!(miri) {
            // A byte loop costs Miri seconds per item: one fill, and the tag at both ends.
            let mut v = vec![(i * 7 + p) as u8; len];
            v[len - 1] = i as u8;
            v
        } else {
            (0..len).map(|k| (k * 31 + i * 7 + p) as u8).collect()
        };
        v[..4].copy_from_slice(&(p as u32).to_le_bytes());
        v[4..8].copy_from_slice(&(i as u32).to_le_bytes());
        v
    }

    fn get(ring: &Ring, deadline: Option<Instant>) -> Option<Vec<u8>> {
        ring.read_with(me(), deadline, true, &mut |_| Vec::new(), |b, fds| {
            assert!(fds.is_empty());
            b.to_vec()
        })
        .unwrap()
    }

    fn tag(v: &[u8]) -> (usize, usize) {
        let p = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        (p, u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize)
    }

    #[test]
    fn producers_and_consumers_move_every_item_once_in_per_producer_order() {
        let ring = Ring::new(0, 4096).unwrap();
        let (producers, consumers, n) = (2, 2, if cfg!(miri) { 12 } else { 3000 });
        let total = std::sync::atomic::AtomicUsize::new(0);
        let seen = std::thread::scope(|s| {
            for p in 0..producers {
                let ring = &ring;
                s.spawn(move || {
                    for i in 0..n {
                        assert!(ring.write(&item(p, i), me(), None, None).unwrap());
                    }
                });
            }
            let hs: Vec<_> = (0..consumers)
                .map(|_| {
                    let (ring, total) = (&ring, &total);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        while total.load(SeqCst) < producers * n {
                            let d = Instant::now() + Duration::from_millis(50);
                            if let Some(v) = get(ring, Some(d)) {
                                total.fetch_add(1, SeqCst);
                                let (p, i) = tag(&v);
                                assert_eq!(v, item(p, i), "item {i} of producer {p} intact");
                                got.push((p, i));
                            }
                        }
                        got
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        let mut all = Vec::new();
        for got in seen {
            for p in 0..producers {
                let mine: Vec<_> = got.iter().filter(|t| t.0 == p).map(|t| t.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {p}'s items in order");
            }
            all.extend(got);
        }
        all.sort_unstable();
        let want: Vec<_> = (0..producers).flat_map(|p| (0..n).map(move |i| (p, i))).collect();
        assert_eq!(all, want, "each item exactly once");
        assert_eq!((ring.count(), ring.used()), (0, 0));
    }

    #[test]
    fn a_bounded_ring_gives_out_maxsize_slots() {
        let ring = Ring::new(2, 4096).unwrap();
        for i in 0..2 {
            assert!(ring.reserve(None, false));
            assert!(ring.write(&item(0, i), me(), None, None).unwrap());
        }
        assert!(!ring.reserve(None, false), "full");
        let t = Instant::now();
        assert!(!ring.reserve(Some(t + Duration::from_millis(20)), true));
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(get(&ring, None), Some(item(0, 0)));
        assert!(ring.reserve(None, false), "a slot came free");
    }

    #[test]
    fn try_write_refuses_what_does_not_fit_now() {
        let ring = Ring::new(0, 4096).unwrap();
        assert!(!ring.try_write(&[0; 4096], me(), None).unwrap(), "larger than the ring");
        assert!(ring.try_write(&[1; 3000], me(), None).unwrap());
        assert!(!ring.try_write(&[2; 3000], me(), None).unwrap(), "no room until a get");
        assert_eq!(get(&ring, None), Some(vec![1; 3000]));
        assert!(ring.try_write(&[2; 3000], me(), None).unwrap());
        assert_eq!(ring.count(), 1);
    }

    #[test]
    fn pieces_of_an_item_whose_writer_died_are_dropped() {
        let ring = Ring::new(0, 4096).unwrap();
        // A producer that died after the first of several chunks...
        ring.commit(&[9; 1000], FIRST, DEAD, 5000, 0);
        // ... and one that went on after it (as after taking over the dead one's put lock).
        assert!(ring.write(&item(1, 1), me(), None, None).unwrap());
        assert_eq!(get(&ring, None), Some(item(1, 1)));
        assert_eq!(ring.count(), 0);

        // Alone in the ring, the pieces are dropped once the writer is seen dead.
        ring.commit(&[9; 1000], FIRST, DEAD, 5000, 0);
        assert_eq!(ring.count(), 1);
        assert_eq!(get(&ring, Some(Instant::now() + Duration::from_millis(100))), None);
        assert_eq!((ring.count(), ring.used()), (0, 0));
    }

    #[test]
    fn a_lock_held_by_a_dead_process_is_taken_over() {
        let ring = Ring::new(0, 4096).unwrap();
        ring.h().put_lock.store(DEAD, SeqCst);
        assert!(ring.write(&item(0, 0), me(), Some(Instant::now() + Duration::from_secs(5)), None).unwrap());
        ring.h().get_lock.store(DEAD, SeqCst);
        assert!(Ring::try_lock(&ring.h().get_lock, me()));
        Ring::unlock(&ring.h().get_lock);
        assert_eq!(get(&ring, None), Some(item(0, 0)));
    }

    #[test]
    fn a_ring_written_over_reports_corruption_and_stays_inside_the_ring() {
        let read = |ring: &Ring| ring.read_with(me(), None, false, &mut |_| Vec::new(), |b, _| b.to_vec());
        let writes_refused = |ring: &Ring| {
            ring.try_write(&[1; 8], me(), None).is_err() && ring.write(&[1; 8], me(), None, None).is_err()
        };

        // Positions more than a ring apart, or head past tail (a producer refuses to write
        // once the `head` it goes by is one of them).
        for (head, tail) in [(0, 10_000), (100, 0)] {
            let ring = Ring::new(0, 4096).unwrap();
            ring.h().head.store(head, SeqCst);
            ring.h().head_seen.store(head, SeqCst);
            ring.h().tail.store(tail, SeqCst);
            let Err(Corrupted(msg)) = read(&ring) else { panic!("read from {head}..{tail}") };
            assert!(msg.contains("corrupted"), "{msg}");
            assert!(writes_refused(&ring), "write at {head}..{tail}");
        }

        // Positions that wrap around: arithmetic wraps too, and the record is checked.
        let ring = Ring::new(0, 4096).unwrap();
        ring.h().head.store(u64::MAX - 10, SeqCst);
        ring.h().tail.store(5, SeqCst);
        assert!(matches!(read(&ring), Err(Corrupted(m)) if m.contains("past the committed bytes")));

        // A record longer than the bytes committed: refused, and again on the next get.
        let ring = Ring::new(0, 4096).unwrap();
        assert!(ring.write(&[7; 100], me(), None, None).unwrap());
        ring.write_at(0, &record_header(3000, FIRST | LAST, me(), 3000, 0));
        for _ in 0..2 {
            let Err(Corrupted(msg)) = read(&ring) else { panic!("a record past tail was read") };
            assert!(msg.contains("past the committed bytes"), "{msg}");
        }
        assert_eq!(ring.used(), REC + 100, "nothing taken");

        // A last record shorter than its item, and a next record from another writer.
        let ring = Ring::new(0, 4096).unwrap();
        ring.commit(&[1; 10], FIRST | LAST, me(), 20, 0);
        assert!(matches!(read(&ring), Err(Corrupted(m)) if m.contains("does not fit its item")));
        let ring = Ring::new(0, 4096).unwrap();
        ring.commit(&[1; 10], FIRST, me(), 20, 0);
        ring.commit(&[1; 10], LAST, me() + 1, 20, 0);
        assert!(matches!(read(&ring), Err(Corrupted(m)) if m.contains("does not fit its item")));
    }

    #[test]
    fn a_region_that_is_not_a_queue_is_refused() {
        let region = Region::new(c"mp-test", 4096).unwrap();
        assert!(matches!(Ring::from_region(region), Err(Error::Decode(_))));
        let ring = Ring::new(0, 4096).unwrap();
        assert!(Ring::from_region(ring.region().clone()).is_ok());
        // A size that would wrap around the address space, or that the memory cannot hold.
        for capacity in [u64::MAX - 300, 8192, 0, 4100] {
            // SAFETY: the header is in bounds; no other thread uses this ring.
            unsafe { (*(ring.region().as_ptr() as *mut Header)).capacity = capacity };
            assert!(matches!(Ring::from_region(ring.region().clone()), Err(Error::Decode(_))), "{capacity}");
        }
    }

    /// Writes `data` into the ring as an encoder would, in pieces of 700 bytes and a byte.
    fn in_place(ring: &Ring, data: &[u8], expect: usize, spill: &mut Vec<u8>) -> Placed {
        use crate::wire::Sink;
        let encode = |sink: &mut InPlace<'_>| {
            let (last, rest) = data.split_last().unwrap();
            for piece in rest.chunks(700) {
                sink.extend(piece);
            }
            sink.push(*last);
            Ok::<_, ()>(Vec::new())
        };
        ring.try_write_in_place(me(), expect, spill, encode, &mut |_, _| Ok(())).unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + len) as u8).collect()
    }

    fn put_lock_is_free(ring: &Ring) -> bool {
        let free = Ring::try_lock(&ring.h().put_lock, me());
        if free {
            Ring::unlock(&ring.h().put_lock);
        }
        free
    }

    #[test]
    fn an_item_encoded_in_place_at_the_ring_end_arrives_whole_after_a_filler_or_across_the_end() {
        let ring = Ring::new(0, 4096).unwrap();
        // (length, expected length, filler before it): records at 0, 1024, 2048; then one that
        // would cross the end goes to the start after a filler; one expected to be small (so no
        // filler is made for it) crosses the end; one fills the whole ring.
        let steps = [
            (1000, 1000, 0),
            (1000, 1000, 0),
            (1000, 1000, 0),
            (2000, 2000, 1024),
            (3000, 100, 0),
            (100, 100, 0),
            (4096 - REC, 4096 - REC, 0),
        ];
        for (len, expect, filler) in steps {
            let data = pattern(len);
            let mut spill = Vec::new();
            let placed = in_place(&ring, &data, expect, &mut spill);
            assert!(matches!(placed, Placed::Written(n) if n == len), "{len}: {placed:?}");
            assert!(spill.is_empty());
            assert_eq!((ring.count(), ring.used()), (1, filler + REC + len), "{len}");
            assert_eq!(get(&ring, None).unwrap(), data, "{len}");
            assert_eq!(ring.used(), 0);
        }
        assert!(put_lock_is_free(&ring));
    }

    #[test]
    fn an_item_larger_than_the_room_spills_whole_and_publishes_nothing() {
        let ring = Ring::new(0, 4096).unwrap();
        assert!(ring.write(&[1; 2000], me(), None, None).unwrap());
        let used = ring.used();
        let data = pattern(3000);
        let mut spill = Vec::new();
        let placed = in_place(&ring, &data, 100, &mut spill);
        assert!(matches!(&placed, Placed::Spilled(fds) if fds.is_empty()), "{placed:?}");
        assert_eq!(spill, data);
        assert_eq!((ring.used(), ring.count()), (used, 1));
        assert!(put_lock_is_free(&ring));
        // Expected to be larger than the room: nothing is encoded.
        let mut spill = Vec::new();
        assert!(matches!(in_place(&ring, &data, 3000, &mut spill), Placed::NotNow));
        assert!(spill.is_empty());
        assert_eq!(get(&ring, None).unwrap(), vec![1; 2000]);
        assert_eq!(ring.used(), 0);
    }

    #[test]
    fn a_failed_or_panicking_encoding_in_place_publishes_nothing_and_frees_the_lock() {
        use crate::wire::Sink;
        let ring = Ring::new(0, 4096).unwrap();
        let send = &mut |_: u32, _: &[RawFd]| Ok(());
        let failed = ring.try_write_in_place(
            me(),
            10,
            &mut Vec::new(),
            |sink| {
                sink.extend(&[9; 500]);
                Err("refused")
            },
            send,
        );
        assert!(matches!(failed, Err(InPlaceError::Encode("refused"))));
        assert_eq!((ring.used(), ring.count()), (0, 0));
        assert!(put_lock_is_free(&ring));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let encode = |sink: &mut InPlace<'_>| -> Result<Vec<RawFd>, ()> {
                sink.extend(&[9; 500]);
                panic!("a Serialize that panics")
            };
            ring.try_write_in_place(me(), 10, &mut Vec::new(), encode, send)
        }));
        assert!(panicked.is_err());
        assert_eq!((ring.used(), ring.count()), (0, 0));
        assert!(put_lock_is_free(&ring));
        assert!(ring.write(&[2; 10], me(), Some(Instant::now() + Duration::from_secs(5)), None).unwrap());
        assert_eq!(get(&ring, None).unwrap(), vec![2; 10]);
    }

    #[test]
    fn an_item_whose_handles_cannot_be_sent_now_spills() {
        let ring = Ring::new(0, 4096).unwrap();
        let data = pattern(1500);
        let encode = |sink: &mut InPlace<'_>| {
            crate::wire::Sink::extend(sink, &data);
            Ok::<_, ()>(vec![0 as RawFd])
        };
        let mut spill = Vec::new();
        let mut busy = |_: u32, _: &[RawFd]| Err(std::io::ErrorKind::WouldBlock.into());
        let placed = ring.try_write_in_place(me(), 1500, &mut spill, encode, &mut busy).unwrap();
        assert!(matches!(&placed, Placed::Spilled(fds) if fds == &[0]), "{placed:?}");
        assert_eq!(spill, data);
        assert_eq!(ring.used(), 0);
        // Sent: the record carries the datagram's tag, which the consumer asks for.
        let mut sent = Vec::new();
        let placed = ring
            .try_write_in_place(me(), 1500, &mut Vec::new(), encode, &mut |seq, fds| {
                sent.push((seq, fds.to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(matches!(placed, Placed::Written(1500)));
        let mut asked = Vec::new();
        let got = ring.read_with(
            me(),
            None,
            true,
            &mut |seq| {
                asked.push(seq);
                Vec::new()
            },
            |b, _| b.to_vec(),
        );
        assert_eq!(got.unwrap().unwrap(), data);
        assert_eq!(sent.len(), 1);
        assert_eq!((asked, sent[0].1.clone()), (vec![sent[0].0], vec![0]));
    }
}
