//! Models of the shared-memory protocols for the loom model checker, which runs each model
//! under every interleaving of its threads (up to a bound on preemptions) and every value the
//! memory model lets each atomic load return:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --lib loom
//! ```
//!
//! The models call the real code (the queue ring, the pipe's send and receive, the wait
//! core's lock): under `cfg(loom)` their atomics are loom's (`crate::sync::atomic`), a futex
//! sleep ends only with a wake (`sys::futex::model`), so a lost wake-up is a deadlock loom
//! reports, and a spin is one look. The threads are loom's, within one process. See "Model
//! checking" in `docs/design.md` for what is and is not covered.

use crate::queue::ring::Ring;
use crate::sync::atomic::AtomicU32;
use crate::sync::wait;
use crate::{sys, Pipe};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Runs `f` under every interleaving, with at most `LOOM_MAX_PREEMPTIONS` preemptions (3 when
/// unset; from 4 on, loom's partial modification order reports lost wake-ups in the two
/// parked lane models that cannot happen, see `docs/design.md`), as on a machine with two usable CPUs or more (`many_cpus`) or one. Prints how many
/// interleavings were explored.
fn check(name: &str, many_cpus: bool, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let before = RUNS.load(Relaxed);
    let was = wait::model::MANY_CPUS.with(|c| c.replace(many_cpus));
    let t = std::time::Instant::now();
    b.check(move || {
        RUNS.fetch_add(1, Relaxed);
        f()
    });
    wait::model::MANY_CPUS.with(|c| c.set(was));
    eprintln!(
        "loom model {name}: {} interleavings in {:.1?} (preemption bound {:?})",
        RUNS.load(Relaxed) - before,
        t.elapsed(),
        b.preemption_bound
    );
}

fn me() -> u32 {
    sys::getpid() as u32
}

/// Item `i`: `len` bytes that name it.
fn item(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|k| i.wrapping_mul(31).wrapping_add(k as u8)).collect()
}

fn get(ring: &Ring) -> Vec<u8> {
    ring.read_with(me(), None, true, &mut |_| Vec::new(), |b, _| b.to_vec()).unwrap().expect("no deadline")
}

/// A producer and a consumer on an unbounded 4 KiB ring, with items of 3000 bytes: the second
/// put finds the ring full and waits for the get to make room, the get may wait for the first
/// put. Every item arrives once, whole and in order, and neither side sleeps through the
/// other's wake.
#[test]
fn loom_ring_producer_and_consumer() {
    check("ring_producer_and_consumer", true, || {
        let ring = Ring::new(0, 4096).unwrap();
        assert_eq!(ring.capacity(), 4096);
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for i in 0..2 {
                    assert!(ring.write(&item(i, 3000), me(), None, None).unwrap());
                }
            })
        };
        for i in 0..2 {
            assert_eq!(get(&ring), item(i, 3000), "item {i}");
        }
        producer.join().unwrap();
        assert_eq!((ring.count(), ring.used()), (0, 0));
    });
}

/// An item larger than the ring goes in chunks while its producer keeps the put lock, each
/// waiting for the room the consumer frees; the consumer assembles it whole.
#[test]
fn loom_ring_item_larger_than_the_ring() {
    check("ring_item_larger_than_the_ring", true, || {
        let ring = Ring::new(0, 4096).unwrap();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || assert!(ring.write(&item(7, 6000), me(), None, None).unwrap()))
        };
        assert_eq!(get(&ring), item(7, 6000));
        producer.join().unwrap();
        assert_eq!((ring.count(), ring.used()), (0, 0));
    });
}

/// Two producers and a consumer: the producers take turns on the put lock (one may sleep on
/// it), and the consumer gets both items, each once.
#[test]
fn loom_ring_two_producers() {
    check("ring_two_producers", true, || {
        let ring = Ring::new(0, 4096).unwrap();
        let producers: Vec<_> = (0..2)
            .map(|i| {
                let ring = ring.clone();
                thread::spawn(move || assert!(ring.write(&item(i, 8), me(), None, None).unwrap()))
            })
            .collect();
        let mut got = vec![get(&ring), get(&ring)];
        got.sort();
        let mut want = vec![item(0, 8), item(1, 8)];
        want.sort();
        assert_eq!(got, want);
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// A bounded queue of one slot: the second `reserve` waits until the get frees the slot.
#[test]
fn loom_ring_full_slot_blocks_and_wakes() {
    check("ring_full_slot_blocks_and_wakes", true, || {
        let ring = Ring::new(1, 4096).unwrap();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for i in 0..2 {
                    assert!(ring.reserve(None, true));
                    assert!(ring.write(&item(i, 8), me(), None, None).unwrap());
                }
            })
        };
        for i in 0..2 {
            assert_eq!(get(&ring), item(i, 8), "item {i}");
        }
        producer.join().unwrap();
        assert_eq!((ring.count(), ring.used()), (0, 0));
    });
}

/// Two threads ping-ponging through a pipe's lanes; `many_cpus` picks the receiver's sleep: on
/// the socket, woken by the sender's doorbell, or parked on the lane's flag, woken by its futex.
fn ping_pong(name: &str, many_cpus: bool) {
    check(name, many_cpus, || {
        let (a, b) = Pipe::duplex().unwrap();
        let echo = thread::spawn(move || {
            for _ in 0..2 {
                let m = b.recv_bytes().unwrap();
                b.send_bytes(&m).unwrap();
            }
        });
        for i in 0..2u8 {
            a.send_bytes(&[i; 3]).unwrap();
            assert_eq!(a.recv_bytes().unwrap(), [i; 3]);
        }
        echo.join().unwrap();
    });
}

/// A sender that fills the lane (three messages of the largest inline size fit) waits for
/// the receiver to make room, and the receiver gets the four in order.
fn full_lane(name: &str, many_cpus: bool) {
    check(name, many_cpus, || {
        let (a, b) = Pipe::duplex().unwrap();
        let message = |i: u8| vec![i; crate::connection::INLINE_MAX_FOR_MODELS];
        let sender = thread::spawn(move || {
            for i in 0..4 {
                b.send_bytes(&message(i)).unwrap();
            }
        });
        for i in 0..4 {
            assert!(a.recv_bytes().unwrap() == message(i), "message {i}");
        }
        sender.join().unwrap();
    });
}

#[test]
fn loom_lane_full_doorbell() {
    full_lane("lane_full_doorbell", true);
}

#[test]
fn loom_lane_full_parked() {
    full_lane("lane_full_parked", false);
}

#[test]
fn loom_lane_ping_pong_doorbell() {
    ping_pong("lane_ping_pong_doorbell", true);
}

#[test]
fn loom_lane_ping_pong_parked() {
    ping_pong("lane_ping_pong_parked", false);
}

/// The wait core's lock between three threads: no two are inside at once, each sees the
/// count the previous holder left (a plain load and store: a lock without its acquire and
/// release orderings would let loom return a stale count and lose an increment), a waiter
/// that set the waiters bit and slept is woken by a release, and the word ends free.
#[test]
fn loom_lock_contended() {
    check("lock_contended", true, || {
        let shared = loom::sync::Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)));
        let critical = |s: &(AtomicU32, AtomicU32, AtomicU32)| {
            let (word, inside, count) = s;
            assert_eq!(wait::lock(word, None), wait::Acquired::Yes);
            assert_eq!(inside.fetch_add(1, Relaxed), 0, "two holders at once");
            let n = count.load(Relaxed);
            count.store(n + 1, Relaxed);
            inside.fetch_sub(1, Relaxed);
            assert!(wait::unlock(word));
        };
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || critical(&shared))
            })
            .collect();
        critical(&shared);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shared.2.load(Relaxed), 3, "an increment was lost");
        assert_eq!(wait::holder(&shared.0), None);
    });
}
