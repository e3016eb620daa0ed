//! Async waits for tokio (feature `tokio`): the shapes of the wait core's waits as futures. They
//! sit beside the wait core, below every primitive that has an async form; the `Stream` and
//! `Sink` adapters over connections, queues and the pool are the `aio` room, above them all.
//!
//! Futex words are watched by the process-wide waker thread (`sync/waker.rs`); descriptors (a pidfd,
//! a connection's socket) are registered with tokio's reactor through `AsyncFd`. Futures
//! never hold a lock or a registration across their own drop: each wait's registration is
//! removed when the future goes, and a lock or item is taken only inside the `poll` that
//! returns it.
//!
//! Runtime: the futures need tokio's IO and time drivers (`Builder::enable_all`, as
//! `#[tokio::main]` and `#[tokio::test]` do): the time driver for the liveness checks of lock
//! waits (a holder that died is noticed within a slice, as in the blocking waits).

use super::waker::WordWait;
use crate::sync::wait::{Acquired, SLICE, WAITERS};
use crate::sys;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::task::Poll;

const PID_MASK: u32 = !WAITERS;

/// Counts a waiter in `waiters` while alive.
struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    fn new(waiters: &'a AtomicU32) -> Counted<'a> {
        waiters.fetch_add(1, SeqCst);
        Counted(waiters)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The sequence wait ([`crate::sync::wait::wait_for`]) as a future: ready once `ready()`,
/// re-checked after each bump of `seq`, counted in `waiters` meanwhile (so that the side that
/// makes it true bumps and wakes the word).
///
/// Cancellation: dropping it counts the waiter out and deregisters; nothing else was taken.
pub(crate) async fn until(seq: &AtomicU32, waiters: &AtomicU32, ready: impl Fn() -> bool) {
    if ready() {
        return;
    }
    let _counted = Counted::new(waiters);
    let mut w = WordWait::new();
    poll_fn(|cx| loop {
        let seen = seq.load(SeqCst);
        if ready() {
            return Poll::Ready(());
        }
        if w.poll_changed(cx, seq, seen).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// Ready once `ready(word's value)`, for words woken whenever they change (an event's flag, a
/// barrier's generation; with `wake_one`, a word whose changes wake one sleeper, such as a
/// semaphore's count). With `sleepers`, counts itself there meanwhile.
///
/// Cancellation: dropping it counts the waiter out and deregisters, passing on a wake-one it
/// consumed.
pub(crate) async fn until_word(
    word: &AtomicU32,
    sleepers: Option<&AtomicU32>,
    wake_one: bool,
    ready: impl Fn(u32) -> bool,
) {
    if ready(word.load(SeqCst)) {
        return;
    }
    let _counted = sleepers.map(Counted::new);
    let mut w = if wake_one { WordWait::wake_one() } else { WordWait::new() };
    poll_fn(|cx| loop {
        let v = word.load(SeqCst);
        if ready(v) {
            w.clear();
            return Poll::Ready(());
        }
        if w.poll_changed(cx, word, v).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// Takes the wait core's lock word as [`crate::sync::wait::lock`] does, without a thread:
/// sleeps on the word through the waker thread, and checks every [`SLICE`] that the holder
/// is alive (taking the word over from a dead one).
///
/// Cancellation: the lock is taken only in the poll that returns it; a future dropped before
/// holds nothing, and passes on a release's wake it consumed.
pub(crate) async fn lock(word: &AtomicU32) -> Acquired {
    let me = sys::getpid() as u32;
    if word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
        return Acquired::Yes;
    }
    let mut w = WordWait::wake_one();
    let mut slice: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| loop {
        let cur = word.load(Relaxed);
        if cur == 0 {
            // Having waited, we cannot know whether others sleep: keep the WAITERS bit.
            if word.compare_exchange(0, me | WAITERS, Acquire, Relaxed).is_ok() {
                w.clear();
                return Poll::Ready(Acquired::Yes);
            }
            continue;
        }
        if cur & WAITERS == 0 && word.compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed).is_err() {
            continue;
        }
        let sleep = slice.get_or_insert_with(|| Box::pin(tokio::time::sleep(SLICE)));
        if sleep.as_mut().poll(cx).is_ready() {
            let holder = (cur & PID_MASK) as i32;
            if holder != 0
                && !sys::pid_alive(holder)
                && word.compare_exchange(cur | WAITERS, me | WAITERS, Acquire, Relaxed).is_ok()
            {
                log::debug!("lock recovered from dead process {holder}");
                w.clear();
                return Poll::Ready(Acquired::FromDead(holder));
            }
            sleep.as_mut().reset(tokio::time::Instant::now() + SLICE);
            continue;
        }
        if w.poll_changed(cx, word, cur | WAITERS).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}

/// A duplicate of `fd` registered with the current runtime's reactor for readability. A
/// duplicate, so that each waiting future has its own registration and closing it leaves the
/// object's descriptor alone.
pub(crate) fn async_fd(
    fd: std::os::fd::BorrowedFd<'_>,
) -> crate::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::AsRawFd;
    let own = sys::dup_cloexec(fd.as_raw_fd()).map_err(crate::Error::io("duplicating a descriptor"))?;
    sys::register_async(own, tokio::io::Interest::READABLE)
        .map_err(crate::Error::io("registering a descriptor with the tokio reactor"))
}

/// [`until`], also asking `gone` every [`crate::sync::wait::PARK_SLICE`] whether the wait can
/// still end (a peer that went away); false if it cannot.
pub(crate) async fn until_checked(
    seq: &AtomicU32,
    waiters: &AtomicU32,
    ready: impl Fn() -> bool,
    gone: impl Fn() -> bool,
) -> bool {
    if ready() {
        return true;
    }
    let _counted = Counted::new(waiters);
    let mut w = WordWait::new();
    let mut slice = Box::pin(tokio::time::sleep(crate::sync::wait::PARK_SLICE));
    poll_fn(|cx| loop {
        let seen = seq.load(SeqCst);
        if ready() {
            return Poll::Ready(true);
        }
        if slice.as_mut().poll(cx).is_ready() {
            if gone() && !ready() {
                return Poll::Ready(false);
            }
            slice.as_mut().reset(tokio::time::Instant::now() + crate::sync::wait::PARK_SLICE);
            continue;
        }
        if w.poll_changed(cx, seq, seen).is_pending() {
            return Poll::Pending;
        }
    })
    .await
}
