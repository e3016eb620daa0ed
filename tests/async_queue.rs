//! Async queue operations (feature `tokio`) across real processes, under each start method:
//! `get_async`, `put_async` with backpressure, `JoinableQueue::join_async`, many awaiters on
//! one queue with cancellations, and no thread growth.
#![cfg(feature = "tokio")]

use multiproc::{
    Event, GetError, JoinableQueue, Process, PutError, Queue, SimpleQueue, Sink, StartMethod, TryGetError,
};
use std::sync::Mutex;
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

/// A child that puts with `put_async` on its own runtime: waits on a bounded queue's room.
fn async_producer(q: Queue<u64>, from: u64, to: u64) {
    current().block_on(async {
        for i in from..to {
            q.put_async(i).await.unwrap();
        }
    })
}

/// A child that takes with `get_async` and sends back what it saw.
fn async_consumer(q: Queue<Option<u64>>, out: Queue<(u64, u64)>) {
    let (count, sum) = current().block_on(async {
        let (mut count, mut sum) = (0, 0);
        while let Some(v) = q.get_async().await.unwrap() {
            count += 1;
            sum += v;
        }
        (count, sum)
    });
    out.put((count, sum)).unwrap();
}

fn blocking_producer(q: Queue<u64>, from: u64, to: u64) {
    for i in from..to {
        q.put(i).unwrap();
    }
}

#[test]
fn get_async_takes_every_item_of_producers_in_other_processes() {
    let _g = serial();
    for method in METHODS {
        for rt in [current(), multi()] {
            let q: Queue<u64> = Queue::with_maxsize(8).unwrap();
            let a =
                Process::builder(async_producer, (q.clone(), 0, 500)).start_method(method).start().unwrap();
            let b = Process::builder(blocking_producer, (q.clone(), 500, 1000))
                .start_method(method)
                .start()
                .unwrap();
            let mut got: Vec<u64> = rt.block_on(async {
                let mut v = Vec::new();
                for _ in 0..1000 {
                    v.push(
                        tokio::time::timeout(Duration::from_secs(60), q.get_async()).await.unwrap().unwrap(),
                    );
                }
                v
            });
            assert_eq!(a.join().unwrap().exitcode(), 0, "{method}");
            assert_eq!(b.join().unwrap().exitcode(), 0, "{method}");
            got.sort();
            assert_eq!(got, (0..1000).collect::<Vec<_>>(), "{method}");
        }
    }
}

#[test]
fn put_async_waits_for_room_and_consumers_in_other_processes_see_everything() {
    let _g = serial();
    for method in METHODS {
        let rt = multi();
        let q: Queue<Option<u64>> = Queue::with_maxsize(4).unwrap();
        let out: Queue<(u64, u64)> = Queue::new().unwrap();
        let consumers: Vec<Process> = (0..2)
            .map(|_| {
                Process::builder(async_consumer, (q.clone(), out.clone()))
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        rt.block_on(async {
            for i in 1..=2000u64 {
                q.put_async(Some(i)).await.unwrap();
            }
            assert!(q.qsize() <= 4, "a bounded queue never holds more than its maxsize");
            q.put_async(None).await.unwrap();
            q.put_async(None).await.unwrap();
        });
        let (mut count, mut sum) = (0, 0);
        for _ in 0..2 {
            let (c, s) = out.get_timeout(Duration::from_secs(60)).unwrap();
            count += c;
            sum += s;
        }
        for c in consumers {
            assert_eq!(c.join().unwrap().exitcode(), 0);
        }
        assert_eq!((count, sum), (2000, 2000 * 2001 / 2), "{method}");
    }
}

/// Puts `first` items, waits for `go`, puts the rest up to `total`.
fn two_phase_producer(q: Queue<u64>, first: u64, total: u64, go: Event) {
    for i in 0..first {
        q.put(i).unwrap();
    }
    go.wait();
    for i in first..total {
        q.put(i).unwrap();
    }
}

#[test]
fn a_thousand_getters_half_cancelled_lose_and_duplicate_nothing() {
    let _g = serial();
    const N: u64 = 1000;
    for method in METHODS {
        let rt = multi();
        let q: Queue<u64> = Queue::new().unwrap();
        let go = Event::new().unwrap();
        let (taken, cancelled, leftover) = rt.block_on(async {
            let mut evens = Vec::new();
            let mut odds = Vec::new();
            for i in 0..N {
                let q = q.clone();
                if i % 2 == 0 {
                    // Cancelled by its timeout at some await point, most of them while parked.
                    let ms = 1 + (i % 37);
                    evens.push(tokio::spawn(async move {
                        tokio::time::timeout(Duration::from_millis(ms), q.get_async())
                            .await
                            .ok()
                            .map(|r| r.unwrap())
                    }));
                } else {
                    odds.push(tokio::spawn(async move {
                        tokio::time::timeout(Duration::from_secs(120), q.get_async()).await.unwrap().unwrap()
                    }));
                }
            }
            // A quarter of the items arrive from another process while the timeouts fire; the
            // rest once every timed getter is done, so that at least a quarter of the getters
            // (the timed ones the first items did not reach) were cancelled.
            let p = Process::builder(two_phase_producer, (q.clone(), N / 4, N, go.clone()))
                .start_method(method)
                .start()
                .unwrap();
            let mut taken = Vec::new();
            let mut cancelled = 0;
            for t in evens {
                match t.await.unwrap() {
                    Some(v) => taken.push(v),
                    None => cancelled += 1,
                }
            }
            go.set();
            for t in odds {
                taken.push(t.await.unwrap());
            }
            assert_eq!(p.join_async().await.unwrap().exitcode(), 0);
            let mut leftover = Vec::new();
            while let Ok(v) = q.get_nowait() {
                leftover.push(v);
            }
            (taken, cancelled, leftover)
        });
        assert!(cancelled >= N / 4, "{method}: {cancelled} getters cancelled");
        assert_eq!(leftover.len() as u64, cancelled, "{method}: each cancelled getter left its item");
        let mut all: Vec<u64> = taken.iter().chain(&leftover).copied().collect();
        all.sort();
        assert_eq!(all, (0..N).collect::<Vec<_>>(), "{method}: each item exactly once");
        let checksum: u64 = all.iter().map(|v| v.wrapping_mul(0x9e37_79b9_7f4a_7c15)).fold(0, |a, b| a ^ b);
        let want: u64 = (0..N).map(|v| v.wrapping_mul(0x9e37_79b9_7f4a_7c15)).fold(0, |a, b| a ^ b);
        assert_eq!(checksum, want);
    }
}

#[test]
fn a_cancelled_get_leaves_no_waiter_and_the_next_item_goes_to_a_live_getter() {
    let _g = serial();
    let rt = current();
    let q: Queue<u64> = Queue::new().unwrap();
    rt.block_on(async {
        for _ in 0..100 {
            assert!(tokio::time::timeout(Duration::from_millis(1), q.get_async()).await.is_err());
        }
        q.put(7).unwrap();
        assert_eq!(q.get_nowait().unwrap(), 7, "the item is still there for anyone");
        assert!(matches!(q.get_nowait(), Err(TryGetError::Empty)));
    });
}

/// The async forms wait for room and for items, so their errors are those of the blocking
/// forms (never "full", never "empty"): a closed handle answers `Closed`, with the value back.
#[test]
fn async_puts_and_gets_on_a_closed_queue_say_closed_with_the_value_back() {
    let _g = serial();
    let rt = current();
    let q: Queue<u64> = Queue::with_maxsize(1).unwrap();
    rt.block_on(async {
        q.put_async(1).await.unwrap();
        // Full: the put waits (and is cancelled by the timeout) rather than failing.
        assert!(tokio::time::timeout(Duration::from_millis(20), q.put_async(2)).await.is_err());
        assert_eq!(q.get_async().await, Ok(1));
        q.close();
        let e: PutError<u64> = q.put_async(3).await.unwrap_err();
        assert_eq!(e, PutError::Closed(3));
        assert_eq!(q.get_async().await, Err(GetError::Closed));
        let mut sink = std::pin::pin!(q.sink());
        let e: PutError<u64> = sink.as_mut().start_send(4).unwrap_err();
        assert_eq!(e.into_inner(), 4);
    });
    let s: SimpleQueue<u64> = SimpleQueue::new().unwrap();
    s.close();
    rt.block_on(async {
        assert_eq!(s.put_async(5).await, Err(PutError::Closed(5)));
        assert_eq!(s.get_async().await, Err(GetError::Closed));
    });
}

fn finish_tasks(q: JoinableQueue<u64>) {
    for _ in 0..50 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn join_async_waits_for_task_done_in_other_processes() {
    let _g = serial();
    for method in METHODS {
        let rt = current();
        let q: JoinableQueue<u64> = JoinableQueue::new().unwrap();
        rt.block_on(async {
            for i in 0..50 {
                q.put_async(i).await.unwrap();
            }
            assert!(
                tokio::time::timeout(Duration::from_millis(50), q.join_async()).await.is_err(),
                "nobody did them"
            );
            let p = Process::builder(finish_tasks, (q.clone(),)).start_method(method).start().unwrap();
            // Well within the bound, never at it: a wake lost to a word whose address an
            // earlier queue's mapping had (the kernel keys a sleep on the mapping) stalled here.
            tokio::time::timeout(Duration::from_secs(20), q.join_async()).await.expect("all done");
            assert_eq!(p.join().unwrap().exitcode(), 0);
        });
    }
}

fn simple_echo(a: SimpleQueue<u64>, b: SimpleQueue<u64>) {
    current().block_on(async {
        for _ in 0..100 {
            let v = a.get_async().await.unwrap();
            b.put_async(v * 2).await.unwrap();
        }
    })
}

#[test]
fn simple_queue_async_round_trips() {
    let _g = serial();
    for method in METHODS {
        let (a, b) = (SimpleQueue::new().unwrap(), SimpleQueue::new().unwrap());
        let p = Process::builder(simple_echo, (a.clone(), b.clone())).start_method(method).start().unwrap();
        current().block_on(async {
            for i in 0..100u64 {
                a.put_async(i).await.unwrap();
                assert_eq!(b.get_async().await.unwrap(), i * 2);
            }
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

#[test]
fn ten_thousand_awaits_add_at_most_the_one_waker_thread() {
    let _g = serial();
    let rt = current();
    let q: Queue<u64> = Queue::new().unwrap();
    // Start the waker thread and the library's process machinery first.
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_millis(1), q.get_async()).await;
    });
    let p = Process::new(blocking_producer, (q.clone(), 0, 10_000)).start().unwrap();
    let before = threads();
    let sum: u64 = rt.block_on(async {
        let mut sum = 0;
        for _ in 0..10_000 {
            sum += q.get_async().await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 10_000 * 9_999 / 2);
    assert_eq!(p.join().unwrap().exitcode(), 0);
    assert_eq!(threads(), before, "no thread per await");
}
