//! `Queue`, `SimpleQueue` and `JoinableQueue` across real processes, under each start method.
//! Each test names the CPython test (`_test_multiprocessing.py`, `_TestQueue`) it ports, or says
//! what Python lacks.

use multiproc::{
    get_context, Bytes, Connection, GetError, GetTimeoutError, JoinableQueue, Pipe, Process, PutError,
    PutTimeoutError, Queue, SimpleQueue, StartMethod, TryGetError, TryPutError,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

/// Tests run one at a time so that the descriptor checks see only their own queues.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's descriptors for queue memory.
fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.contains("mp-queue"))
        .collect();
    v.sort();
    v
}

fn start<F, A>(method: StartMethod, f: F, args: A) -> Process
where
    F: multiproc::Target<A>,
    F::Output: multiproc::ProcessOutput,
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    Process::builder(f, args).start_method(method).start().unwrap()
}

fn produce(q: Queue<(u32, u64)>, id: u32, n: u64) {
    for i in 0..n {
        q.put((id, i)).unwrap();
    }
}

fn consume(q: Queue<Option<u64>>, out: Queue<(u64, u64, u64)>) {
    let (mut count, mut sum, mut xor) = (0, 0, 0);
    while let Some(v) = q.get().unwrap() {
        count += 1;
        sum += v;
        xor ^= v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    out.put((count, sum, xor)).unwrap();
}

fn produce_range(q: Queue<Option<u64>>, from: u64, to: u64) {
    for i in from..to {
        q.put(Some(i)).unwrap();
    }
}

/// _TestQueue.test_put/test_get: items from each producer arrive in the order it put them,
/// and a drop at exit flushes the feeder.
#[test]
fn fifo_per_producer() {
    let _g = serial();
    for method in METHODS {
        // The library keeps a few descriptors of its own after the first child (fork server).
        start(method, || (), ()).join().unwrap();
        let fds = open_fds();
        {
            let q = Queue::new().unwrap();
            let n = 3000;
            let ps: Vec<_> = (0..2).map(|id| start(method, produce, (q.clone(), id, n))).collect();
            let mut next = [0u64; 2];
            for _ in 0..2 * n {
                let (id, i) = q.get_timeout(Duration::from_secs(20)).unwrap();
                assert_eq!(next[id as usize], i, "{method}");
                next[id as usize] += 1;
            }
            for p in ps {
                assert_eq!(p.join().unwrap().exitcode(), 0, "{method}");
            }
            assert!(q.empty());
        }
        assert_eq!(open_fds(), fds, "{method}: descriptors leaked");
    }
}

/// Beyond CPython's tests: 4 producers x 4 consumers, nothing lost or duplicated (checksums).
#[test]
fn four_producers_four_consumers() {
    let _g = serial();
    for method in METHODS {
        let q: Queue<Option<u64>> = Queue::with_maxsize(64).unwrap();
        let out = Queue::new().unwrap();
        let n = 2000u64;
        let cs: Vec<_> = (0..4).map(|_| start(method, consume, (q.clone(), out.clone()))).collect();
        let ps: Vec<_> =
            (0..4).map(|k| start(method, produce_range, (q.clone(), k * n, (k + 1) * n))).collect();
        for p in ps {
            assert_eq!(p.join().unwrap().exitcode(), 0);
        }
        for _ in 0..4 {
            q.put(None).unwrap();
        }
        let (mut count, mut sum, mut xor) = (0, 0, 0);
        for _ in 0..4 {
            let (c, s, x) = out.get_timeout(Duration::from_secs(20)).unwrap();
            count += c;
            sum += s;
            xor ^= x;
        }
        for c in cs {
            assert_eq!(c.join().unwrap().exitcode(), 0);
        }
        let total = 4 * n;
        assert_eq!(count, total, "{method}");
        assert_eq!(sum, total * (total - 1) / 2, "{method}");
        let want = (0..total).fold(0, |a, v| a ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert_eq!(xor, want, "{method}");
        assert!(q.empty() && out.empty());
    }
}

/// What a child's `get_timeout` on an empty queue answered, and after how many milliseconds.
fn timed_get(q: Queue<u8>, ms: u64) -> (String, u64) {
    let t = Instant::now();
    let r = q.get_timeout(Duration::from_millis(ms));
    (format!("{r:?}"), t.elapsed().as_millis() as u64)
}

fn put_all(q: Queue<u32>, items: Vec<u32>) {
    for i in items {
        q.put(i).unwrap();
    }
}

fn take_n(q: Queue<u32>, n: usize) -> Vec<u32> {
    (0..n).map(|_| q.get().unwrap()).collect()
}

/// _TestQueue.test_timeout: get(timeout) on an empty queue raises Empty after the timeout; here
/// it is the `Timeout` case of `get_timeout`'s own error, in this process and in a child, while
/// `get_nowait` says `Empty`.
#[test]
fn get_timeout_on_empty_is_a_timeout_within_bounds() {
    let _g = serial();
    let q: Queue<u8> = Queue::new().unwrap();
    let t = Instant::now();
    let e = q.get_timeout(Duration::from_millis(100)).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e, GetTimeoutError::Timeout);
    assert!(e.is_timeout() && !e.is_closed());
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
    assert!(q.get_nowait().unwrap_err().is_empty());
    for method in METHODS {
        let (answer, ms) =
            get_context(Some(method)).spawn(timed_get, (q.clone(), 150)).unwrap().join().unwrap();
        assert_eq!(answer, "Err(Timeout)", "{method}");
        assert!((150..2000).contains(&ms), "{method}: {ms} ms");
    }
    assert!(q.empty());
}

/// _TestQueue.test_qsize and the Full cases of test_put: with the queue filled by another
/// process, `put_nowait` is `Full` and `put_timeout` is `Timeout` (after the timeout), each
/// with the value back, and the queue is left exactly as it was: the same qsize, and the old
/// items come out in order.
#[test]
fn put_nowait_on_a_full_queue_hands_the_value_back_and_leaves_the_queue_as_it_was() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_maxsize(3).unwrap();
        assert!(q.empty() && !q.full() && q.qsize() == 0);
        assert_eq!(start(method, put_all, (q.clone(), vec![10, 11, 12])).join().unwrap().exitcode(), 0);
        assert!(q.full() && q.qsize() == 3 && !q.empty(), "{method}");

        let e = q.put_nowait(99).unwrap_err();
        assert_eq!(e, TryPutError::Full(99), "{method}");
        assert!(e.is_full() && !e.is_closed());
        assert_eq!(e.into_inner(), 99);
        assert_eq!(q.qsize(), 3, "{method}: a refused put leaves the count");

        let t = Instant::now();
        let e = q.put_timeout(98, Duration::from_millis(100)).unwrap_err();
        let took = t.elapsed();
        assert_eq!(e, PutTimeoutError::Timeout(98), "{method}");
        assert!(e.is_timeout());
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{method}: {took:?}");
        assert_eq!(q.qsize(), 3, "{method}");

        let got = get_context(Some(method)).spawn(take_n, (q.clone(), 3)).unwrap().join().unwrap();
        assert_eq!(got, [10, 11, 12], "{method}: the old items, in order");
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty), "{method}: nothing of the refused puts");
        q.put(3).unwrap();
        assert_eq!(q.get().unwrap(), 3);
    }
}

fn put_joinable(q: JoinableQueue<u32>, items: Vec<u32>) {
    for i in items {
        q.put(i).unwrap();
    }
}

/// Beyond Python's tests: a refused put on a full `JoinableQueue` counts no task, so `join`
/// returns once the items that went in are done.
#[test]
fn a_refused_put_on_a_full_joinable_queue_counts_no_task() {
    let _g = serial();
    for method in METHODS {
        let q = JoinableQueue::with_maxsize(2).unwrap();
        assert_eq!(start(method, put_joinable, (q.clone(), vec![1, 2])).join().unwrap().exitcode(), 0);
        assert_eq!(q.put_nowait(3), Err(TryPutError::Full(3)), "{method}");
        assert_eq!(q.put_timeout(4, Duration::from_millis(20)), Err(PutTimeoutError::Timeout(4)), "{method}");
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (1, 2), "{method}");
        assert!(!q.join_timeout(Duration::ZERO), "{method}: two tasks open");
        q.task_done().unwrap();
        q.task_done().unwrap();
        assert!(q.join_timeout(Duration::from_secs(5)), "{method}: the refused puts left no task");
        assert!(q.task_done().is_err(), "{method}");
    }
}

/// _TestQueue.test_closed_queue_put_get_exceptions: put and get after close are errors.
#[test]
fn close_then_put_errors() {
    let _g = serial();
    let q = Queue::new().unwrap();
    assert!(q.join_thread().is_err(), "join_thread needs close first");
    q.put(1u32).unwrap();
    q.close();
    assert_eq!(q.put(2), Err(PutError::Closed(2)));
    assert_eq!(q.put_nowait(3), Err(TryPutError::Closed(3)));
    assert_eq!(q.put_timeout(4, Duration::from_secs(1)), Err(PutTimeoutError::Closed(4)));
    assert!(q.put(5).unwrap_err().is_closed());
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.get_nowait(), Err(TryGetError::Closed));
    assert_eq!(q.get_timeout(Duration::from_secs(1)), Err(GetTimeoutError::Closed));
    q.join_thread().unwrap();
}

/// Beyond Python: an item with more handles than one message can carry (the kernel's
/// `SCM_MAX_FD`, 253) is refused cleanly and handed back; the queue stays usable.
#[test]
fn an_item_with_too_many_handles_is_refused_and_returned() {
    let _g = serial();
    let q: Queue<Vec<multiproc::Value<u8>>> = Queue::new().unwrap();
    let many: Vec<_> = (0..254).map(|_| multiproc::Value::new(1u8).unwrap()).collect();
    match q.put(many) {
        Err(PutError::Encode(back, msg)) => {
            assert!(msg.contains("253"), "{msg}");
            assert_eq!(back.len(), 254, "the value comes back");
        }
        other => panic!("{other:?}"),
    }
    q.put(vec![multiproc::Value::new(7u8).unwrap()]).unwrap();
    assert_eq!(q.get().unwrap()[0].get(), 7);
}

fn work(q: JoinableQueue<u64>, done: Queue<u64>) {
    loop {
        let v = q.get().unwrap();
        done.put(v).unwrap();
        // `put` may leave the item in this process's feeder backlog; it must be in the ring
        // before the task is reported done, or the parent's `qsize` can run ahead of it.
        done.flush();
        q.task_done().unwrap();
    }
}

/// _TestJoinableQueue.test_task_done: join returns only after every task_done.
#[test]
fn joinable_join_waits_for_task_done() {
    let _g = serial();
    for method in METHODS {
        let q = JoinableQueue::new().unwrap();
        let done = Queue::new().unwrap();
        let ws: Vec<_> = (0..2).map(|_| start(method, work, (q.clone(), done.clone()))).collect();
        for i in 0..200u64 {
            q.put(i).unwrap();
        }
        q.join();
        assert_eq!(done.qsize(), 200, "{method}: join returned before every task_done");
        for w in ws {
            w.kill().unwrap();
            w.join().unwrap();
        }
        assert_eq!(q.task_done(), Err(multiproc::TaskDoneError::TooManyCalls));
    }
}

fn blocked_get(q: Queue<u64>, ready: Connection) {
    ready.send(&()).unwrap();
    let _ = q.get();
}

/// Beyond CPython (where this can leave the queue's lock held forever): a consumer killed while
/// blocked in get does not stop the next one.
#[test]
fn consumer_killed_in_get() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::new().unwrap();
        let (a, b) = Pipe::duplex().unwrap();
        let p = start(method, blocked_get, (q.clone(), b));
        a.recv::<()>().unwrap();
        p.kill().unwrap();
        p.join().unwrap();
        q.put(42).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)), Ok(42), "{method}");
    }
}

fn put_big_forever(q: Queue<Vec<u8>>) {
    q.put(vec![1]).unwrap();
    loop {
        q.put(vec![0xab; 64 * 1024]).unwrap();
    }
}

/// Beyond CPython: a producer killed in the middle of a put leaves no torn item.
#[test]
fn producer_killed_mid_put() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(100, 4096).unwrap();
        let p = start(method, put_big_forever, (q.clone(),));
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), vec![1]);
        // The big item does not fit the ring: once bytes are there the child is mid-item.
        let t = Instant::now();
        while q.ring_bytes_used() == 0 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        p.kill().unwrap();
        p.join().unwrap();
        // The dead writer's pieces fill the ring: put from a thread while this one reads.
        let q2 = q.clone();
        let putter = std::thread::spawn(move || q2.put(vec![7; 10]).unwrap());
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), vec![7; 10], "{method}");
        putter.join().unwrap();
        assert!(q.empty(), "{method}: {}", q.qsize());
    }
}

fn put_pattern(q: Queue<Vec<u8>>, len: usize, count: usize) {
    for k in 0..count {
        q.put((0..len).map(|i| (i * 31 + k) as u8).collect()).unwrap();
    }
}

/// Beyond CPython's tests: items far larger than the ring pass whole, in order.
#[test]
fn item_bigger_than_ring() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(0, 4096).unwrap();
        let len = 300 * 1024 + 7;
        let p = start(method, put_pattern, (q.clone(), len, 3));
        for k in 0..3 {
            let v = q.get_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(v.len(), len);
            assert!(v.iter().enumerate().all(|(i, &b)| b == (i * 31 + k) as u8), "{method}");
        }
        assert_eq!(p.join().unwrap().exitcode(), 0);
        // In one process too: the feeder thread writes it while this thread reads.
        q.put(vec![5; 100_000]).unwrap();
        assert_eq!(q.get().unwrap(), vec![5; 100_000]);
        let qb = Queue::with_ring(0, 4096).unwrap();
        qb.put(Bytes(vec![6; 50_000])).unwrap();
        assert_eq!(qb.get().unwrap(), Bytes(vec![6; 50_000]));
    }
}

fn take_pattern(q: Queue<Vec<u8>>, len: usize, count: usize) -> bool {
    (0..count).all(|k| {
        let v = q.get_timeout(Duration::from_secs(10)).unwrap();
        v.len() == len && v.iter().enumerate().all(|(i, &b)| b == (i * 31 + k) as u8)
    })
}

/// Python's `Queue.put` without `maxsize` returns at once; here an item of 64 KiB or more may
/// wait up to 2 ms for room in a full ring before going to the feeder thread. With nobody
/// reading, puts still return promptly, and a reader started later gets every item in order.
#[test]
fn unbounded_puts_of_large_items_return_with_nobody_reading() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(0, 256 * 1024).unwrap();
        let (len, count) = (100 * 1024 + 3, 40);
        let t = Instant::now();
        for k in 0..count {
            let started = Instant::now();
            q.put((0..len).map(|i| (i * 31 + k) as u8).collect()).unwrap();
            assert!(started.elapsed() < Duration::from_millis(500), "{method}: put {k} waited");
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{method}: {count} puts took {:?}", t.elapsed());
        assert_eq!(q.qsize(), count);
        let reader =
            multiproc::get_context(Some(method)).spawn(take_pattern, (q.clone(), len, count)).unwrap();
        assert!(reader.join().unwrap(), "{method}: items intact and in order");
        assert!(q.empty());
    }
}

fn take_in_order(q: Queue<Vec<u8>>, count: u32) -> bool {
    (0..count).all(|k| {
        let v = q.get_timeout(Duration::from_secs(20)).unwrap();
        v[..4] == k.to_le_bytes()
    })
}

/// A small item put right after a large one that went to the feeder's backlog (the ring
/// too full for it) waits its turn behind it, even when it would fit in the ring at once and
/// the put lock is free: one producer's items arrive in the order it put them.
#[test]
fn small_puts_never_overtake_the_feeder_backlog() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(0, 64 * 1024).unwrap();
        // Should the check below fail, the test must not then wait at drop for a feeder
        // whose items nobody will read.
        q.cancel_join_thread();
        let count = 600u32;
        let reader = multiproc::get_context(Some(method)).spawn(take_in_order, (q.clone(), count)).unwrap();
        for k in 0..count {
            let len = if k % 2 == 0 { 40 * 1024 } else { 8 };
            let mut item = vec![0u8; len];
            item[..4].copy_from_slice(&k.to_le_bytes());
            q.put(item).unwrap();
        }
        assert!(reader.join().unwrap(), "{method}: every item, in the order put");
        assert!(q.empty());
    }
}

/// _TestSimpleQueue.test_empty.
#[test]
fn simple_queue() {
    let _g = serial();
    for method in METHODS {
        let q = SimpleQueue::new().unwrap();
        assert!(q.empty());
        let p = start(method, |q: SimpleQueue<String>| q.put("hi".into()).unwrap(), (q.clone(),));
        assert_eq!(q.get().unwrap(), "hi");
        p.join().unwrap();
        assert!(q.empty());
    }
}

fn bench_small(q: Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn bench_big(q: Queue<Bytes>, n: usize) {
    let blob = Bytes(vec![b'x'; 1 << 20]);
    for _ in 0..n {
        q.put_ref(&blob).unwrap();
    }
}

/// queue_small and queue_1mb of bench/python_anchor.py (run with --release --ignored).
#[test]
#[ignore]
fn bench_queue() {
    let _g = serial();
    let n = 200_000u64;
    let q = Queue::new().unwrap();
    let t = Instant::now();
    let p = Process::new(bench_small, (q.clone(), n)).start().unwrap();
    for _ in 0..n {
        q.get().unwrap();
    }
    p.join().unwrap();
    println!("queue_small\t{:.1}\titems/s", n as f64 / t.elapsed().as_secs_f64());
    let big = 1000;
    let q = Queue::new().unwrap();
    let t = Instant::now();
    let p = Process::new(bench_big, (q.clone(), big)).start().unwrap();
    for _ in 0..big {
        q.get().unwrap();
    }
    p.join().unwrap();
    println!("queue_1mb\t{:.1}\tMiB/s", big as f64 / t.elapsed().as_secs_f64());
}

// ---- handles inside items ----------------------------------------------------------------------

type Handles = (multiproc::Lock, multiproc::Value<u64>, Connection, Queue<String>);

fn use_handles_from_queue(q: Queue<(u32, Handles)>, n: u32) {
    for _ in 0..n {
        let (i, (lock, value, conn, replies)) = q.get_timeout(Duration::from_secs(20)).unwrap();
        {
            let _g = lock.acquire().unwrap();
            value.with_lock(|v| *v += i as u64);
        }
        conn.send(&i).unwrap();
        replies.put(format!("done {i}")).unwrap();
    }
}

#[test]
fn locks_values_connections_and_queues_travel_through_a_queue() {
    // Deliver 4 of the queue design: every handle passes through a queue, under every start
    // method, through the direct path and (with a tiny ring) the feeder's backlog.
    for m in METHODS {
        for ring in [4 << 20, 4096] {
            let q: Queue<(u32, Handles)> = Queue::with_ring(0, ring).unwrap();
            let n = 40;
            let p = Process::builder(use_handles_from_queue, (q.clone(), n)).start_method(m).start().unwrap();
            let lock = multiproc::Lock::new().unwrap();
            let value = multiproc::Value::new(0u64).unwrap();
            let replies = Queue::new().unwrap();
            let mut mine = Vec::new();
            for i in 0..n {
                let (a, b) = Pipe::duplex().unwrap();
                q.put((i, (lock.clone(), value.clone(), b, replies.clone()))).unwrap();
                mine.push(a);
            }
            for (i, a) in mine.iter().enumerate() {
                assert_eq!(a.recv::<u32>().unwrap(), i as u32, "{m}, ring {ring}: the right connection");
            }
            for i in 0..n {
                assert_eq!(replies.get_timeout(Duration::from_secs(20)).unwrap(), format!("done {i}"));
            }
            assert_eq!(p.join().unwrap().exitcode(), 0, "{m}");
            assert_eq!(value.get(), (0..n as u64).sum::<u64>(), "{m}, ring {ring}");
        }
    }
}

#[test]
fn handles_through_a_bounded_queue_and_a_joinable_queue() {
    let q: Queue<Connection> = Queue::with_maxsize(2).unwrap();
    let (a, b) = Pipe::duplex().unwrap();
    q.put(b).unwrap();
    let b: Connection = q.get().unwrap();
    b.send(&"via a bounded queue").unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "via a bounded queue");

    let jq: JoinableQueue<multiproc::Value<i32>> = JoinableQueue::new().unwrap();
    let v = multiproc::Value::new(1).unwrap();
    jq.put(v.clone()).unwrap();
    jq.get().unwrap().set(5);
    jq.task_done().unwrap();
    jq.join();
    assert_eq!(v.get(), 5);
}

/// Puts `n` items of 200 bytes (most go to the feeder's backlog: the ring is small), then
/// leaves the process in one of the ways that skip the queue's destructor.
fn put_then_leave(q: Queue<Vec<u8>>, n: u32, how: u8) {
    for k in 0..n {
        let mut item = vec![0u8; 200];
        item[..4].copy_from_slice(&k.to_le_bytes());
        q.put(item).unwrap();
    }
    match how {
        0 => std::process::exit(0),
        1 => std::mem::forget(q), // the target returns normally with the handle leaked
        _ => {
            // The queue stays reachable from a thread that is still running at exit.
            let q2 = q.clone();
            std::thread::spawn(move || {
                let _keep = q2;
                std::thread::sleep(Duration::from_secs(60));
            });
            std::process::exit(0)
        }
    }
}

/// Python joins the feeder thread at exit: every item put before `sys.exit()` arrives.
#[test]
fn items_put_before_exit_all_arrive() {
    let _g = serial();
    let n = 20_000u32;
    for method in METHODS {
        for how in 0..3u8 {
            let q = Queue::with_ring(0, 64 * 1024).unwrap();
            let p = start(method, put_then_leave, (q.clone(), n, how));
            let mut got = 0u32;
            while got < n {
                match q.get_timeout(Duration::from_secs(10)) {
                    Ok(v) => {
                        assert_eq!(v[..4], got.to_le_bytes(), "{method}/{how}: in order");
                        got += 1;
                    }
                    Err(GetTimeoutError::Timeout) => break,
                    Err(e) => panic!("{method}/{how}: {e}"),
                }
            }
            assert_eq!(got, n, "{method}/{how}: items put before exit that arrived");
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap().map(|s| s.exitcode()), Some(0));
        }
    }
}

fn put_cancel_then_exit(q: Queue<Vec<u8>>, n: u32) {
    for _ in 0..n {
        q.put(vec![1u8; 4096]).unwrap();
    }
    q.cancel_join_thread();
    std::process::exit(0)
}

/// Python's `cancel_join_thread`: the process exits at once, even with nobody reading.
#[test]
fn cancel_join_thread_lets_a_process_exit_with_a_backlog() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(0, 16 * 1024).unwrap();
        q.cancel_join_thread();
        let p = start(method, put_cancel_then_exit, (q.clone(), 200));
        let status = p.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(status.map(|s| s.exitcode()), Some(0), "{method}: the child exited");
    }
}

fn put_flush_then_die(q: Queue<Vec<u8>>, n: u32) {
    for k in 0..n {
        let mut item = vec![0u8; 2000];
        item[..4].copy_from_slice(&k.to_le_bytes());
        q.put(item).unwrap();
    }
    q.flush();
    // SAFETY: ends this very process at once: no exit handler, no destructor.
    unsafe { libc::raise(libc::SIGKILL) };
}

/// `flush` returns once every item this process put is in the shared ring: a producer killed
/// right after loses nothing.
#[test]
fn flush_puts_every_item_in_the_ring() {
    let _g = serial();
    let n = 2_000u32;
    for method in METHODS {
        let q = Queue::with_ring(0, 64 * 1024).unwrap();
        let p = start(method, put_flush_then_die, (q.clone(), n));
        for k in 0..n {
            let v =
                q.get_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{method}: item {k}: {e}"));
            assert_eq!(v[..4], k.to_le_bytes(), "{method}");
        }
        assert_eq!(p.join().unwrap().exitcode(), -libc::SIGKILL);
        // With nothing waiting, flush returns at once; with a bound it reports success.
        q.flush();
        assert!(q.flush_timeout(Duration::from_millis(1)));
    }
}

/// Refuses to be encoded when it holds 13, and to be decoded when it holds 7.
#[derive(Debug)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky, refused to encode"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <u32 as serde::Deserialize>::deserialize(d)?;
        if v == 7 {
            return Err(serde::de::Error::custom("7 is refused on arrival"));
        }
        Ok(Picky(v))
    }
}

fn put_picky(q: Queue<Picky>, v: u32) {
    q.put(Picky(v)).unwrap();
}

#[test]
fn custom_serde_errors_of_items_reach_the_caller() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::<Picky>::new().unwrap();
        match q.put(Picky(13)) {
            Err(PutError::Encode(Picky(13), msg)) => assert!(msg.contains("13 is unlucky"), "{msg}"),
            other => panic!("{method}: {other:?}"),
        }
        start(method, put_picky, (q.clone(), 7)).join().unwrap();
        match q.get_timeout(Duration::from_secs(10)) {
            Err(GetTimeoutError::Decode(msg)) => {
                assert!(msg.contains("7 is refused on arrival"), "{method}: {msg}")
            }
            other => panic!("{method}: {other:?}"),
        }
    }
}

/// Beyond CPython: a producer killed mid-put and not yet reaped (a zombie of this process) is
/// seen dead: its pieces are dropped and its put lock taken over within a bound.
#[test]
fn producer_killed_mid_put_and_unreaped_is_seen_dead() {
    let _g = serial();
    for method in METHODS {
        let q = Queue::with_ring(100, 4096).unwrap();
        let p = start(method, put_big_forever, (q.clone(),));
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), vec![1]);
        let t = Instant::now();
        while q.ring_bytes_used() == 0 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        p.kill().unwrap();
        let q2 = q.clone();
        let putter = std::thread::spawn(move || q2.put(vec![7; 10]).unwrap());
        // The get runs on a thread so that a hang shows as a failure, not a stuck test.
        let (tx, rx) = std::sync::mpsc::channel();
        let q3 = q.clone();
        std::thread::spawn(move || tx.send(q3.get_timeout(Duration::from_secs(5))).unwrap());
        let t = Instant::now();
        let got = rx
            .recv_timeout(Duration::from_secs(8))
            .unwrap_or_else(|e| panic!("{method}: get hung on a dead writer ({e})"));
        assert_eq!(got.unwrap(), vec![7; 10], "{method}");
        assert!(t.elapsed() < Duration::from_secs(1), "{method}: took {:?}", t.elapsed());
        putter.join().unwrap();
        p.join().unwrap();
        assert!(q.empty(), "{method}: {}", q.qsize());
    }
}

// ---- large items encoded straight into the ring -------------------------------------------

/// Item `k` of [`put_sizes`]: `len` bytes from `k`.
fn sized(len: usize, k: usize) -> Bytes {
    Bytes((0..len).map(|i| (i * 13 + k * 7) as u8).collect())
}

/// Puts items of the given sizes, every other one by reference.
fn put_sizes(q: Queue<Bytes>, sizes: Vec<usize>) {
    for (k, &len) in sizes.iter().enumerate() {
        let item = sized(len, k);
        if k % 2 == 0 {
            q.put(item).unwrap();
        } else {
            q.put_ref(&item).unwrap();
        }
    }
}

/// Beyond CPython: a run of large items, each encoded into the ring where it fits (across the
/// ring's end, too) and through the thread's buffer where it does not, arrives whole and in
/// order; a put after one that is larger than the ring's room goes the other way.
#[test]
fn large_items_encoded_in_place_arrive_whole_and_in_order() {
    let _g = serial();
    let sizes: Vec<usize> =
        (0..40).map(|k| [70_000, 300_000, 1_000_000, 130_000, 1_900_000, 65_536][k % 6] + k).collect();
    for method in METHODS {
        let q = Queue::with_ring(0, 2 << 20).unwrap();
        let p = start(method, put_sizes, (q.clone(), sizes.clone()));
        for (k, &len) in sizes.iter().enumerate() {
            let got = q.get_timeout(Duration::from_secs(20)).unwrap();
            assert!(got == sized(len, k), "{method}: item {k} of {len} bytes came as {} bytes", got.len());
        }
        assert_eq!(p.join().unwrap().exitcode(), 0, "{method}");
        assert!(q.empty());
    }
}

/// An item (a tag and bytes) whose encoding can misbehave halfway, after the tag: fail, panic,
/// put another item into a queue, or tell the parent and wait forever. It arrives as a plain
/// item.
#[derive(Debug)]
struct Odd {
    tag: u8,
    bytes: Bytes,
    act: Act,
}

#[derive(Debug)]
enum Act {
    None,
    Fail,
    Panic,
    PutInto(Queue<Odd>),
    Stall,
}

fn odd(tag: u8, len: usize) -> Odd {
    Odd { tag, bytes: Bytes(vec![tag; len]), act: Act::None }
}

impl PartialEq for Odd {
    fn eq(&self, other: &Odd) -> bool {
        (self.tag, &self.bytes) == (other.tag, &other.bytes)
    }
}

/// Where a stalling [`Odd`] says it stalled.
static STALL: std::sync::OnceLock<Connection> = std::sync::OnceLock::new();

impl serde::Serialize for Odd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.tag)?;
        match &self.act {
            Act::None => {}
            Act::Fail => return Err(serde::ser::Error::custom("refused halfway")),
            Act::Panic => panic!("a Serialize that panics halfway"),
            Act::PutInto(q) => q.put(odd(3, 100_000)).unwrap(),
            Act::Stall => {
                t.serialize_element(&self.bytes)?;
                STALL.get().unwrap().send(&()).unwrap();
                loop {
                    std::thread::park();
                }
            }
        }
        t.serialize_element(&self.bytes)?;
        t.end()
    }
}

impl<'de> serde::Deserialize<'de> for Odd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Odd, D::Error> {
        let (tag, bytes) = <(u8, Bytes)>::deserialize(d)?;
        Ok(Odd { tag, bytes, act: Act::None })
    }
}

/// Beyond CPython: a large item whose encoding fails or panics halfway, after a large item
/// (so that it is encoded into the ring), leaves the queue as it was: no item, no slot and no
/// task counted, the producers' lock free for the next put.
#[test]
fn a_large_item_that_fails_to_encode_in_place_leaves_the_queue_as_it_was() {
    let _g = serial();
    let q: JoinableQueue<Odd> = JoinableQueue::with_maxsize(3).unwrap();
    let first = odd(1, 200_000);
    q.put_ref(&first).unwrap();
    match q.put(Odd { act: Act::Fail, ..odd(2, 200_000) }) {
        Err(PutError::Encode(v, msg)) => {
            assert_eq!(v.bytes.len(), 200_000);
            assert!(msg.contains("refused halfway"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = q.put(Odd { act: Act::Panic, ..odd(2, 200_000) });
    }));
    assert!(panicked.is_err());
    assert_eq!(q.qsize(), 1);
    // Two slots are left (maxsize 3), and the lock is free: a put from another thread is
    // not kept waiting.
    let q2 = q.clone();
    let t = Instant::now();
    std::thread::spawn(move || {
        q2.put(odd(4, 200_000)).unwrap();
        q2.put_nowait(odd(5, 10)).unwrap();
        assert!(matches!(q2.put_nowait(odd(6, 1)), Err(TryPutError::Full(_))));
    })
    .join()
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    for want in [first, odd(4, 200_000), odd(5, 10)] {
        assert_eq!(q.get().unwrap(), want);
    }
    for _ in 0..3 {
        q.task_done().unwrap();
    }
    // Exactly three tasks were counted: a fourth task_done is refused.
    assert!(q.task_done().is_err());
    assert!(q.join_timeout(Duration::from_secs(5)));
}

/// Beyond CPython: a put made from inside an item's `Serialize`, into the bounded queue the item
/// is being put into, while the item is encoded into the ring with the producers' lock held,
/// does not wait for that lock: both items arrive.
#[test]
fn a_put_from_inside_a_large_items_encoding_does_not_wait_for_its_own_lock() {
    let _g = serial();
    let q: Queue<Odd> = Queue::with_maxsize(10).unwrap();
    q.put(odd(1, 100_000)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        tx.send(q2.put(Odd { act: Act::PutInto(q2.clone()), ..odd(2, 100_000) }).is_ok()).unwrap();
    });
    assert!(rx.recv_timeout(Duration::from_secs(10)).expect("the put hung on its own lock"));
    let mut got: Vec<Odd> = (0..3).map(|_| q.get_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(got[0], odd(1, 100_000));
    got.sort_by_key(|o| o.tag);
    assert_eq!(got, [odd(1, 100_000), odd(2, 100_000), odd(3, 100_000)]);
}

/// Puts a large item, then one whose encoding stops halfway (its `Serialize` tells the parent
/// and waits) until the process is killed.
fn put_then_stall_mid_encoding(q: Queue<Odd>, ready: Connection) {
    q.put(odd(1, 300_000)).unwrap();
    STALL.set(ready).unwrap();
    let _ = q.put(Odd { act: Act::Stall, ..odd(9, 200_000) });
}

/// Beyond CPython: a producer killed while its item is being encoded into the ring (the
/// producers' lock held, half the bytes written, nothing published) leaves no item behind, and
/// the next producer takes the lock over within a bound.
#[test]
fn a_producer_killed_mid_encoding_in_place_leaves_no_item() {
    let _g = serial();
    for method in METHODS {
        let q: Queue<Odd> = Queue::with_ring(0, 1 << 20).unwrap();
        let (mine, theirs) = Pipe::duplex().unwrap();
        let p = start(method, put_then_stall_mid_encoding, (q.clone(), theirs));
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), odd(1, 300_000), "{method}");
        assert!(mine.poll(Some(Duration::from_secs(10))).unwrap(), "{method}: the encoding began");
        mine.recv::<()>().unwrap();
        assert_eq!((q.qsize(), q.ring_bytes_used()), (0, 0), "{method}: nothing published");
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        q.put(odd(4, 300_000)).unwrap();
        q.put(odd(5, 300_000)).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), odd(4, 300_000), "{method}");
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), odd(5, 300_000), "{method}");
        assert!(t.elapsed() < Duration::from_secs(3), "{method}: took {:?}", t.elapsed());
        assert!(q.empty());
    }
}

/// Beyond CPython: `put_ref` puts a copy and leaves the value with the caller; a refused one
/// hands the reference back.
#[test]
fn put_ref_puts_a_copy_and_a_refused_one_hands_the_reference_back() {
    let _g = serial();
    let q: Queue<Bytes> = Queue::new().unwrap();
    let block = Bytes(vec![8; 300_000]);
    for _ in 0..3 {
        q.put_ref(&block).unwrap();
    }
    for _ in 0..3 {
        assert!(q.get_timeout(Duration::from_secs(5)).unwrap() == block);
    }
    q.close();
    match q.put_ref(&block) {
        Err(PutError::Closed(r)) => assert!(std::ptr::eq(r, &block)),
        other => panic!("{other:?}"),
    }
}

fn take_blocks(q: Queue<Bytes>, n: usize) -> Vec<(usize, u8, u8)> {
    (0..n)
        .map(|_| {
            let b = q.get().unwrap().0;
            (b.len(), b[0], b[b.len() - 1])
        })
        .collect()
}

/// _TestQueue.test_put's `queue.Full` cases through the by-reference forms: on a full queue
/// `put_ref_nowait` says `Full` and `put_ref_timeout` times out within bounds, each handing
/// back the very reference it was given, with the queue's count and contents untouched; a
/// child then takes exactly the items that went in.
#[test]
fn put_ref_nowait_and_timeout_on_a_full_queue_hand_the_reference_back() {
    let _g = serial();
    for method in METHODS {
        let q: Queue<Bytes> = Queue::with_maxsize(2).unwrap();
        let mut block = Bytes(vec![1; 200_000]);
        q.put_ref_nowait(&block).unwrap();
        block.0[0] = 2;
        q.put_ref_timeout(&block, Duration::from_secs(5)).unwrap();
        block.0[0] = 3;
        match q.put_ref_nowait(&block) {
            Err(TryPutError::Full(r)) => assert!(std::ptr::eq(r, &block), "{method}"),
            other => panic!("{method}: {other:?}"),
        }
        assert_eq!(q.qsize(), 2, "{method}: a refused put leaves the count");
        let t = Instant::now();
        match q.put_ref_timeout(&block, Duration::from_millis(100)) {
            Err(PutTimeoutError::Timeout(r)) => assert!(std::ptr::eq(r, &block), "{method}"),
            other => panic!("{method}: {other:?}"),
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{method}: {took:?}");
        assert_eq!(q.qsize(), 2, "{method}");

        let got = get_context(Some(method)).spawn(take_blocks, (q.clone(), 2)).unwrap().join().unwrap();
        assert_eq!(got, [(200_000, 1, 1), (200_000, 2, 1)], "{method}: the items that went in, in order");
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty), "{method}: nothing of the refused puts");
        q.put_ref_timeout(&block, Duration::from_secs(5)).unwrap();
        assert!(q.get_timeout(Duration::from_secs(5)).unwrap() == block, "{method}");
        q.close();
        match q.put_ref_nowait(&block) {
            Err(TryPutError::Closed(r)) => assert!(std::ptr::eq(r, &block), "{method}"),
            other => panic!("{method}: {other:?}"),
        }
    }
}
