//! The shared-memory transport of a [`Pipe`](super::Pipe): one byte ring ("lane") per direction
//! in a memfd [`Region`], beside the socket pair.
//!
//! A message of at most [`INLINE_MAX`] bytes that carries no handles is written into the
//! sender's lane as one record (`[len u32][kind u32][payload, padded to 8]`, never split at the
//! ring's end: a pad record fills the gap) and decoded by the receiver straight from the shared
//! memory. Larger messages and messages with descriptors go through the socket as ordinary
//! frames; the lane then holds a marker record at the message's place, written *before* the
//! frame so the receiver drains the socket while the sender fills it, and order is kept.
//!
//! The socket stays the connection's identity: the kernel knows when every copy of the peer's
//! end is closed (a receiver sleeping on the socket wakes with end-of-file at once, a sender
//! waiting for ring space checks it every slice), it carries descriptors, and it is what
//! `poll` and [`wait`](super::wait) sleep on.
//!
//! Waking: a receiver spins on its lane as the wait core allows ([`crate::sync::wait`]: only
//! with two usable CPUs or more, only while the peer is not asleep, as long as recent spins
//! paid, and on a machine with every CPU busy only while the last record's sender ran on
//! another CPU, which each record's sender notes in the lane's header), then sleeps. With one usable CPU, or with more runnable tasks than CPUs, it parks: it sets `reader_active` to
//! [`wait::PARKED`] and sleeps on that word's futex, in slices after which it checks that the
//! socket is not hung up; a sender that finds the flag parked after committing a record moves
//! it back and wakes the futex (one system call a side). With more CPUs, some idle, it sleeps on
//! the socket (a blocking peek: the wait and the look at the socket's front in one call): it
//! clears `reader_active`, and a sender that finds it clear writes a doorbell (an empty frame,
//! see [`frame::DOORBELL`]) to the socket, whose wake-up runs the receiver on the sender's CPU
//! at once where a futex wake-up would first wake an idle CPU. Both sides use
//! sequentially consistent operations on `tail` and `reader_active`, so either the receiver sees
//! the record before sleeping or the sender sees the receiver asleep. In a ping-pong on two
//! idle CPUs both sides stay in the spin, so a round trip makes no system call; on one CPU
//! neither spins. Doorbells the receiver did not need
//! (it found the record while spinning) are counted (`bells` against `drained`) and drained
//! after the next receive, so a stale one rarely makes the socket look readable.
//!
//! Several processes may hold copies of one end (Python allows it, with a warning about
//! interleaving). Senders serialize on `put_lock` and receivers on `get_lock`, pid lock words
//! whose holder, if found dead, is replaced; a record is published only when whole, so a
//! process killed mid-send leaves no torn message.

use super::frame;
use crate::error::{Error, Result};
use crate::mem::Region;
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::sync::wait::{self, Waited};
use crate::sys;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering::*;

const MAGIC: u64 = 0x4d50_5049_5045_3031; // "MPPIPE01"
const VERSION: u32 = 1;
/// Bytes of ring per direction.
pub(crate) const LANE_BYTES: usize = 128 * 1024;
/// Largest payload that travels through a lane; larger ones go through the socket.
pub(crate) const INLINE_MAX: usize = LANE_BYTES / 4;
/// Record header: payload length and kind.
const REC: usize = 8;
const HEADERS_AT: usize = 128;
const DATA_AT: usize = 4096;
const REGION_BYTES: usize = DATA_AT + 2 * LANE_BYTES;

/// `reader_active`: the receiver sleeps in `poll` on the socket (senders ring the doorbell),
/// or runs; [`wait::PARKED`] while it sleeps on the flag itself (senders wake the futex).
const IDLE: u32 = 0;
const ACTIVE: u32 = 1;

const KIND_DATA: u32 = 1;
const KIND_SOCKET: u32 = 2;
const KIND_PAD: u32 = 3;

#[repr(C)]
struct Top {
    magic: u64,
    version: u32,
    lane_bytes: u32,
}

/// One direction's indices and flags: the senders' cache line, then the receivers'.
#[repr(C, align(64))]
struct LaneHeader {
    tail: AtomicU64,
    bells: AtomicU64,
    put_lock: AtomicU32,
    space_waiters: AtomicU32,
    /// The CPU (plus one; 0: not known) the last sender ran on when it published a record.
    sender_cpu: AtomicU32,
    _senders: [u8; 36],
    head: AtomicU64,
    drained: AtomicU64,
    get_lock: AtomicU32,
    reader_active: AtomicU32,
    space_seq: AtomicU32,
    _receivers: [u8; 36],
}

/// The distance between the two lanes' headers (128 bytes; more under the model checker, whose
/// atomics are larger).
const HEADER_BYTES: usize = std::mem::size_of::<LaneHeader>();
#[cfg(not(loom))]
const _: () = assert!(HEADER_BYTES == 128);
const _: () = assert!(std::mem::size_of::<Top>() <= HEADERS_AT);
const _: () = assert!(HEADERS_AT + 2 * HEADER_BYTES <= DATA_AT);

impl LaneHeader {
    /// An empty lane's indices and flags, all zero (as in the zero-filled memory they are
    /// written into).
    fn new() -> LaneHeader {
        LaneHeader {
            tail: AtomicU64::new(0),
            bells: AtomicU64::new(0),
            put_lock: AtomicU32::new(0),
            space_waiters: AtomicU32::new(0),
            sender_cpu: AtomicU32::new(0),
            _senders: [0; 36],
            head: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            get_lock: AtomicU32::new(0),
            reader_active: AtomicU32::new(0),
            space_seq: AtomicU32::new(0),
            _receivers: [0; 36],
        }
    }
}

/// Both lanes of a pipe, seen from one end: `side` is the lane this end sends on.
#[derive(Clone, Debug)]
pub(crate) struct Lanes {
    region: Region,
    side: u8,
}

/// What the receiver found at the head of its lane.
pub(crate) enum Next<'a> {
    /// A whole message, in the shared memory.
    Inline(&'a [u8]),
    /// The message is the next frame on the socket.
    Socket,
}

impl Lanes {
    /// The two ends' views of a fresh pair of lanes.
    pub(crate) fn pair() -> Result<(Lanes, Lanes)> {
        let region = Region::new(c"mp-pipe", REGION_BYTES)?;
        // SAFETY: the region is fresh, zero-filled, page aligned and REGION_BYTES long, and no
        // other process can see it yet; the headers lie at HEADERS_AT (64-byte aligned).
        unsafe {
            let base = region.as_ptr();
            for i in 0..2 {
                (base.add(HEADERS_AT + HEADER_BYTES * i) as *mut LaneHeader).write(LaneHeader::new());
            }
            let top = base as *mut Top;
            (*top).lane_bytes = LANE_BYTES as u32;
            (*top).version = VERSION;
            (*top).magic = MAGIC;
        }
        Ok((Lanes { region: region.clone(), side: 0 }, Lanes { region, side: 1 }))
    }

    fn check(region: Region, side: u8) -> Result<Lanes> {
        if side > 1 || region.len() < DATA_AT {
            return Err(Error::Decode("not the memory of a pipe".into()));
        }
        // SAFETY: the region is at least DATA_AT bytes and page aligned; Top is plain data.
        let top = unsafe { &*(region.as_ptr() as *const Top) };
        if top.magic != MAGIC || top.version != VERSION || top.lane_bytes as usize != LANE_BYTES {
            return Err(Error::Decode("not the memory of a pipe of this version".into()));
        }
        if region.len() < REGION_BYTES {
            return Err(Error::Decode("pipe memory smaller than its lanes".into()));
        }
        Ok(Lanes { region, side })
    }

    fn lane(&self, i: u8) -> Lane<'_> {
        let base = self.region.as_ptr();
        // SAFETY: `check`/`pair` guarantee REGION_BYTES of mapped memory; the headers lie at
        // HEADERS_AT + i * HEADER_BYTES (64-byte aligned inside a page-aligned block) and are
        // atomics only, valid at any bit pattern; the lane's data follows DATA_AT.
        unsafe {
            Lane {
                h: &*(base.add(HEADERS_AT + HEADER_BYTES * i as usize) as *const LaneHeader),
                data: base.add(DATA_AT + LANE_BYTES * i as usize),
            }
        }
    }

    /// The lane this end sends on.
    pub(crate) fn tx(&self) -> Lane<'_> {
        self.lane(self.side)
    }

    /// The lane this end receives on.
    pub(crate) fn rx(&self) -> Lane<'_> {
        self.lane(1 - self.side)
    }
}

impl Serialize for Lanes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.region, self.side).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Lanes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (region, side) = <(Region, u8)>::deserialize(d)?;
        Lanes::check(region, side).map_err(serde::de::Error::custom)
    }
}

/// One direction.
pub(crate) struct Lane<'a> {
    h: &'a LaneHeader,
    data: *mut u8,
}

/// Holds a lane's pid lock; releases it when dropped (also when a `Deserialize` panics).
pub(crate) struct LaneLock<'a>(&'a AtomicU32);

impl Drop for LaneLock<'_> {
    fn drop(&mut self) {
        wait::unlock(self.0);
    }
}

fn round8(n: usize) -> usize {
    n.next_multiple_of(8)
}

impl<'a> Lane<'a> {
    pub(crate) fn lock_put(&self) -> LaneLock<'a> {
        wait::lock(&self.h.put_lock, None);
        LaneLock(&self.h.put_lock)
    }

    pub(crate) fn lock_get(&self) -> LaneLock<'a> {
        wait::lock(&self.h.get_lock, None);
        LaneLock(&self.h.get_lock)
    }

    pub(crate) fn try_lock_get(&self) -> Option<LaneLock<'a>> {
        // Built only on success: dropped, a guard unlocks whoever holds the lock.
        (!matches!(wait::try_lock(&self.h.get_lock), wait::Acquired::TimedOut))
            .then(|| LaneLock(&self.h.get_lock))
    }

    fn write(&self, off: usize, bytes: &[u8]) {
        debug_assert!(off + bytes.len() <= LANE_BYTES);
        // SAFETY: callers keep `off + bytes.len() <= LANE_BYTES`, inside this lane's data; the
        // bytes lie in the free part of the ring, which no receiver reads until `tail` moves.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(off), bytes.len()) }
    }

    /// Appends a record if it fits now. The caller holds the put lock.
    fn try_push(&self, kind: u32, payload: &[u8]) -> bool {
        let need = REC + round8(payload.len());
        let tail = self.h.tail.load(Relaxed);
        let head = self.h.head.load(SeqCst);
        let off = (tail % LANE_BYTES as u64) as usize;
        let to_end = LANE_BYTES - off;
        let pad = if need > to_end { to_end } else { 0 };
        if (tail - head) as usize + pad + need > LANE_BYTES {
            return false;
        }
        let mut at = off;
        if pad > 0 {
            self.write(off, &header(pad - REC, KIND_PAD));
            at = 0;
        }
        self.write(at, &header(payload.len(), kind));
        self.write(at + REC, payload);
        self.h.sender_cpu.store(sys::current_cpu(), Relaxed);
        self.h.tail.store(tail + (pad + need) as u64, SeqCst);
        true
    }

    /// Appends a record, waiting for room; [`Error::Eof`] if the receiving end is gone while
    /// the ring is full. The caller holds the put lock.
    pub(crate) fn push(&self, kind_socket: bool, payload: &[u8], sock: BorrowedFd<'_>) -> Result<()> {
        debug_assert!(payload.len() <= INLINE_MAX);
        let kind = if kind_socket { KIND_SOCKET } else { KIND_DATA };
        // `ready` pushes: the wait core calls it until it first returns true, never after.
        let pushed = || self.try_push(kind, payload);
        match wait::wait_for(&wait::LANE, &self.h.space_seq, &self.h.space_waiters, pushed, None, || {
            sys::hung_up(sock)
        }) {
            Waited::Ready => Ok(()),
            Waited::Abandon => Err(Error::Eof),
            Waited::TimedOut => unreachable!("no deadline"),
        }
    }

    /// After a push: wakes a receiver that may be asleep, parked on its lane's flag (a futex
    /// wake) or in `poll` on the socket (a doorbell). The caller still holds the put lock, so
    /// the doorbell never lands inside another sender's frame.
    ///
    /// [`Error::Eof`] when the receiving end is gone (every copy closed) and the message is
    /// still in the lane. A receiver that took the message and then closed (it was awake, and
    /// answered and exited before this call looked at its flag) got it: that send succeeded.
    pub(crate) fn ring_bell(&self, sock: BorrowedFd<'_>) -> Result<()> {
        // The end of the record just pushed: the put-lock holder is the only writer of `tail`.
        let end = self.h.tail.load(Relaxed);
        let gone = || if self.h.head.load(SeqCst) >= end { Ok(()) } else { Err(Error::Eof) };
        loop {
            match self.h.reader_active.load(SeqCst) {
                IDLE => break,
                wait::PARKED => match wait::unpark(&self.h.reader_active, ACTIVE) {
                    // Parked but not asleep, or died parked: a gone receiver is reported as
                    // the doorbell's EPIPE would.
                    Some(0) if sys::hung_up(sock) => return gone(),
                    Some(_) => return Ok(()),
                    None => continue,
                },
                _ => return Ok(()),
            }
        }
        self.h.bells.fetch_add(1, SeqCst);
        match sys::send_with_fds_flags(sock, &frame::DOORBELL, &[], libc::MSG_DONTWAIT) {
            Ok(_) => Ok(()),
            // The socket is full of doorbells: the receiver is awake or will be.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => gone(),
                _ => Err(Error::Io { context: "waking the receiver", source: e }),
            },
        }
    }

    /// Whether this lane's receiver is parked on its flag (not asleep on the socket).
    #[cfg(test)]
    pub(crate) fn receiver_parked(&self) -> bool {
        self.h.reader_active.load(SeqCst) == wait::PARKED
    }

    /// Whether a record is waiting.
    pub(crate) fn has_data(&self) -> bool {
        self.h.head.load(Relaxed) != self.h.tail.load(SeqCst)
    }

    /// Whether this end's receiver is, or may soon be, reading without sleeping on the socket.
    pub(crate) fn set_active(&self, active: bool) {
        self.h.reader_active.store(if active { ACTIVE } else { IDLE }, SeqCst);
    }

    /// Sleeps until a record comes (a sender wakes this receiver), a wake from
    /// [`wake_parked`](Self::wake_parked), or `slice` passes; whether a record is there. The
    /// caller holds the get lock.
    pub(crate) fn park(&self, slice: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + slice;
        wait::park(&self.h.reader_active, ACTIVE, || self.has_data(), until)
    }

    /// Wakes a receiver parked on this lane so that it looks at the socket again (this end is
    /// closing, or shutting the socket down).
    pub(crate) fn wake_parked(&self) {
        wait::unpark(&self.h.reader_active, ACTIVE);
    }

    /// The record at the head of the lane, skipping padding, and the position after it; `None`
    /// when the lane is empty. The caller holds the get lock.
    pub(crate) fn peek(&self) -> Result<Option<(Next<'a>, u64)>> {
        loop {
            let head = self.h.head.load(Relaxed);
            let tail = self.h.tail.load(SeqCst);
            if head == tail {
                return Ok(None);
            }
            let off = (head % LANE_BYTES as u64) as usize;
            let mut rec = [0u8; REC];
            // SAFETY: `off` is a multiple of 8 below LANE_BYTES, so the 8 header bytes lie
            // inside the lane; they were published by the `tail` store that made them visible.
            unsafe { std::ptr::copy_nonoverlapping(self.data.add(off), rec.as_mut_ptr(), REC) };
            let len = u32::from_le_bytes(rec[..4].try_into().expect("4 bytes")) as usize;
            let kind = u32::from_le_bytes(rec[4..].try_into().expect("4 bytes"));
            let next = head + (REC + round8(len)) as u64;
            if off + REC + len > LANE_BYTES || next > tail || (kind != KIND_PAD && len > INLINE_MAX) {
                return Err(Error::Decode("pipe memory corrupted: a record runs past the ring".into()));
            }
            match kind {
                KIND_PAD => self.advance(next),
                KIND_DATA => {
                    // SAFETY: checked above to lie inside the lane, between head and tail: the
                    // bytes of a published record, which no sender touches until `head` passes
                    // them, and `'a` does not outlive the mapping.
                    let payload = unsafe { std::slice::from_raw_parts(self.data.add(off + REC), len) };
                    return Ok(Some((Next::Inline(payload), next)));
                }
                KIND_SOCKET => return Ok(Some((Next::Socket, next))),
                _ => return Err(Error::Decode(format!("pipe memory corrupted: record kind {kind}"))),
            }
        }
    }

    /// Releases everything before `next` to the senders. The caller holds the get lock.
    pub(crate) fn advance(&self, next: u64) {
        self.h.head.store(next, SeqCst);
        wait::notify(&self.h.space_seq, &self.h.space_waiters);
    }

    /// Spins for a record, as the wait core allows; true if one came. `peer` is the lane the
    /// peer receives on: while the peer sleeps with nothing sent to it, it will not send
    /// either, and the spin stops.
    pub(crate) fn spin_for_data(&self, peer: &Lane<'_>) -> bool {
        let peer_runs = || peer.h.reader_active.load(Relaxed) == ACTIVE || peer.has_data();
        wait::LANE.spin_where(|| self.has_data(), peer_runs, || self.apart())
    }

    /// Whether the sender of the last record ran on another CPU than this receiver runs on
    /// now (false where either is unknown).
    fn apart(&self) -> bool {
        let sender = self.h.sender_cpu.load(Relaxed);
        let here = sys::current_cpu();
        sender != 0 && here != 0 && sender != here
    }

    /// Doorbells written but not yet read off the socket.
    pub(crate) fn bells_pending(&self) -> bool {
        self.h.bells.load(SeqCst) != self.h.drained.load(SeqCst)
    }

    /// Counts doorbells the receiver read.
    pub(crate) fn drained(&self, n: u64) {
        if n != 0 {
            self.h.drained.fetch_add(n, SeqCst);
        }
    }
}

fn header(len: usize, kind: u32) -> [u8; REC] {
    let mut h = [0u8; REC];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
    h
}

/// What is at the front of a socket, looked at without waiting.
pub(crate) enum SocketFront {
    Nothing,
    EndOfFile,
    /// A frame (or part of one) that is not a doorbell.
    Frame,
}

/// Reads doorbells off the front of `sock` without waiting, counting them on `lane`, and says
/// what is left there (`Nothing` also once every doorbell rung is read: what may follow is then
/// announced in the lane or makes the socket readable again).
pub(crate) fn drain_bells(lane: &Lane<'_>, sock: BorrowedFd<'_>) -> Result<SocketFront> {
    drain_bells_after(lane, sock, false)
}

/// Sleeps until the socket holds something (a doorbell, a frame, end-of-file), then drains
/// doorbells as [`drain_bells`] does: the sleep and the first peek are one system call.
pub(crate) fn wait_bells(lane: &Lane<'_>, sock: BorrowedFd<'_>) -> Result<SocketFront> {
    drain_bells_after(lane, sock, true)
}

fn drain_bells_after(lane: &Lane<'_>, sock: BorrowedFd<'_>, mut wait: bool) -> Result<SocketFront> {
    let mut drained = 0;
    let front = loop {
        if drained != 0 && lane.h.bells.load(SeqCst) == lane.h.drained.load(SeqCst) + drained {
            // Every doorbell rung so far is read: what else the socket may hold is announced in
            // the lane (a frame's marker goes first) or wakes the next poll (end-of-file). One
            // peek fewer per wake, which is most of a round trip on one CPU.
            break SocketFront::Nothing;
        }
        let mut hdr = [0u8; frame::HEADER_LEN];
        let peeked = if std::mem::take(&mut wait) {
            match sys::peek_wait(sock, &mut hdr) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sys::poll_readable(&[sock], None).map_err(Error::io("receiving a message"))?;
                    sys::peek_now(sock, &mut hdr)
                }
                r => r,
            }
        } else {
            sys::peek_now(sock, &mut hdr)
        };
        match peeked {
            Ok(0) => break SocketFront::EndOfFile,
            Ok(n) if n == hdr.len() && hdr == frame::DOORBELL => {
                let mut fds = Vec::new();
                // The peek showed these 8 bytes at the front and the caller is the only reader:
                // this takes exactly the doorbell.
                match sys::recv_with_fds_flags(sock, &mut hdr, &mut fds, libc::MSG_DONTWAIT) {
                    Ok(8) => drained += 1,
                    Ok(_) => break SocketFront::Frame,
                    Err(e) => {
                        lane.drained(drained);
                        return Err(Error::Io { context: "receiving a message", source: e });
                    }
                }
            }
            // A doorbell still arriving.
            Ok(n) if n < hdr.len() && hdr[..n] == frame::DOORBELL[..n] => break SocketFront::Nothing,
            Ok(_) => break SocketFront::Frame,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break SocketFront::Nothing,
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => break SocketFront::EndOfFile,
            Err(e) => {
                lane.drained(drained);
                return Err(Error::Io { context: "receiving a message", source: e });
            }
        }
    };
    lane.drained(drained);
    Ok(front)
}

// ---- what async sends and receives use (feature `tokio`) ---------------------------------

#[cfg(feature = "tokio")]
impl<'a> Lane<'a> {
    /// The receivers' lock word.
    pub(crate) fn get_lock_word(&self) -> &'a AtomicU32 {
        &self.h.get_lock
    }

    /// The senders' lock word.
    pub(crate) fn put_lock_word(&self) -> &'a AtomicU32 {
        &self.h.put_lock
    }

    /// A lock word taken elsewhere (by an async wait), released when the guard drops.
    pub(crate) fn adopt(word: &'a AtomicU32) -> LaneLock<'a> {
        LaneLock(word)
    }

    /// The word bumped when a receiver makes room, and its sleepers' count.
    pub(crate) fn space_words(&self) -> (&'a AtomicU32, &'a AtomicU32) {
        (&self.h.space_seq, &self.h.space_waiters)
    }

    /// Whether a record of `len` payload bytes fits now (a pad to the ring's end included).
    pub(crate) fn fits(&self, len: usize) -> bool {
        let need = REC + round8(len);
        let tail = self.h.tail.load(Relaxed);
        let head = self.h.head.load(SeqCst);
        let to_end = LANE_BYTES - (tail % LANE_BYTES as u64) as usize;
        let pad = if need > to_end { to_end } else { 0 };
        (tail - head) as usize + pad + need <= LANE_BYTES
    }

    /// [`push`](Self::push) without waiting: false if the record does not fit now. The caller
    /// holds the put lock.
    pub(crate) fn push_now(&self, kind_socket: bool, payload: &[u8]) -> bool {
        debug_assert!(payload.len() <= INLINE_MAX);
        self.try_push(if kind_socket { KIND_SOCKET } else { KIND_DATA }, payload)
    }
}

#[cfg(test)]
mod tests {
    //! The ring logic over heap memory instead of a memfd, so that Miri can check it
    //! (`cargo +nightly miri test --lib lane`): records, padding at the ring's end, and a
    //! sender and a receiver thread racing on the indices.
    use super::*;

    /// Header and ring in one heap block, 64-byte aligned like the mapping; the ring sits in
    /// an `UnsafeCell` because both ends write it through shared references, as they do a
    /// shared mapping.
    #[repr(C, align(64))]
    struct Block {
        header: LaneHeader,
        data: std::cell::UnsafeCell<[u8; LANE_BYTES]>,
    }

    // SAFETY: the ring's bytes are reached only through `Lane`, whose indices hand each byte
    // to one side at a time (the sender until it publishes `tail`, then the receiver until it
    // publishes `head`), exactly as for the shared mapping.
    unsafe impl Sync for Block {}

    fn block() -> Box<Block> {
        // SAFETY: Block is atomics and bytes, for which all-zero is valid.
        unsafe { Box::new_zeroed().assume_init() }
    }

    fn lane(b: &Block) -> Lane<'_> {
        Lane { h: &b.header, data: b.data.get().cast() }
    }

    fn message(i: usize) -> Vec<u8> {
        let len = [0, 1, 7, 8, 9, 1000, INLINE_MAX - 3, INLINE_MAX][i % 8];
        if cfg!(miri) {
            // A byte loop costs Miri seconds per message: one fill, the index at both ends.
            let mut m = vec![(i * 7) as u8; len];
            for (k, b) in (i as u32).to_le_bytes().into_iter().enumerate().take(len) {
                m[k] = b;
                m[len - 1 - k] = b;
            }
            return m;
        }
        (0..len).map(|k| (i * 7 + k) as u8).collect()
    }

    fn take(l: &Lane<'_>) -> Option<Vec<u8>> {
        let (next, after) = l.peek().unwrap()?;
        let out = match next {
            Next::Inline(bytes) => bytes.to_vec(),
            Next::Socket => panic!("no socket records here"),
        };
        l.advance(after);
        Some(out)
    }

    /// The spin policy's hint: a receiver is "apart" from its sender exactly while the last
    /// record came from another CPU than the one the receiver runs on.
    #[test]
    #[cfg_attr(miri, ignore = "sched_getcpu and sched_setaffinity")]
    fn a_receiver_is_apart_while_the_last_record_came_from_another_cpu() {
        std::thread::spawn(|| {
            let b = block();
            let l = lane(&b);
            assert!(!l.apart(), "nothing sent yet: not known, so not apart");
            sys::pin_thread_to(0).unwrap();
            assert!(l.try_push(KIND_DATA, b"x"));
            assert_eq!(b.header.sender_cpu.load(Relaxed), 1, "the sender's CPU, plus one");
            assert!(!l.apart(), "same CPU as the sender");
            if sys::cpu_count() < 2 {
                return;
            }
            if sys::pin_thread_to(1).is_err() {
                return; // CPU 1 is outside this process's cgroup.
            }
            assert!(l.apart(), "the record came from CPU 0, the receiver runs on CPU 1");
            assert!(l.try_push(KIND_DATA, b"y"));
            assert!(!l.apart(), "the last record came from CPU 1 too");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn records_wrap_with_padding_and_keep_their_order() {
        let b = block();
        let l = lane(&b);
        let n = if cfg!(miri) { 40 } else { 400 };
        let (mut sent, mut got) = (0, 0);
        while got < n {
            while sent < n && l.try_push(KIND_DATA, &message(sent)) {
                sent += 1;
            }
            let m = take(&l).expect("a record after a push");
            assert_eq!(m, message(got), "record {got}");
            got += 1;
        }
        assert!(take(&l).is_none());
        assert!(b.header.tail.load(SeqCst) > 2 * LANE_BYTES as u64, "the ring wrapped");
    }

    #[test]
    fn a_record_that_runs_past_the_ring_is_an_error_not_a_read_out_of_bounds() {
        let b = block();
        let l = lane(&b);
        assert!(l.try_push(KIND_DATA, b"ok"));
        // Corrupt the length as a misbehaving process could.
        l.write(0, &header(LANE_BYTES, KIND_DATA));
        assert!(matches!(l.peek(), Err(Error::Decode(_))));
        l.write(0, &header(2, 99));
        assert!(matches!(l.peek(), Err(Error::Decode(_))));
    }

    #[test]
    #[cfg_attr(miri, ignore = "sockets and poll(2)")]
    fn a_message_taken_before_its_receiver_closed_was_sent() {
        // The receiver takes the message (it was spinning, or woke) and its process exits, all
        // before the sender, after publishing, looks at the receiver's flag: asleep on the
        // socket (the doorbell then meets a closed socket), or parked and not yet asleep (the
        // futex wake finds nobody, and the socket is hung up). The message was delivered, so
        // the send succeeded; one the receiver did not take before it was gone was not.
        use std::os::fd::AsFd;
        for flag in [IDLE, wait::PARKED] {
            let b = block();
            let l = lane(&b);
            let (mine, peer) = sys::socketpair().unwrap();
            l.h.reader_active.store(flag, SeqCst);
            assert!(l.try_push(KIND_DATA, b"taken"));
            assert_eq!(take(&l).as_deref(), Some(&b"taken"[..]));
            drop(peer);
            assert!(l.ring_bell(mine.as_fd()).is_ok(), "flag {flag}: delivered, yet the send failed");
            l.h.reader_active.store(flag, SeqCst);
            assert!(l.try_push(KIND_DATA, b"never taken"));
            assert!(
                matches!(l.ring_bell(mine.as_fd()), Err(Error::Eof)),
                "flag {flag}: lost with the receiver"
            );
        }
    }

    #[test]
    fn a_sender_and_a_receiver_thread_race_on_the_indices() {
        let b = block();
        let n = if cfg!(miri) { 60 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                let l = lane(&b);
                for i in 0..n {
                    while !l.try_push(KIND_DATA, &message(i)) {
                        std::thread::yield_now();
                    }
                }
            });
            let l = lane(&b);
            for i in 0..n {
                let m = loop {
                    match take(&l) {
                        Some(m) => break m,
                        None => std::thread::yield_now(),
                    }
                };
                assert_eq!(m, message(i));
            }
        });
    }
}
