//! `redis::Queue` and `redis::JoinableQueue` across real processes, on the server `REDIS_URL`
//! names (skipped, saying so, when it is unset). Producers and consumers are started with each
//! start method in turn.
#![cfg(feature = "redis")]

use multiproc::redis::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, TryGetError, TryPutError,
};
use multiproc::{get_context, StartMethod};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!(
                "REDIS_URL not set, skipping (set it to a Redis 7 server, e.g. redis://127.0.0.1:6390/0)"
            );
            None
        }
    }
}

/// A queue name no other test or run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test-{what}-{}-{nanos}", std::process::id())
}

fn produce(q: Queue<(u32, u64)>, producer: u32, n: u64) {
    for i in 0..n {
        q.put((producer, i)).unwrap();
    }
}

/// Takes items until a `u32::MAX` producer id arrives; returns them in the order taken.
fn consume(q: Queue<(u32, u64)>) -> Vec<(u32, u64)> {
    let mut got = Vec::new();
    loop {
        let item = q.get().unwrap();
        if item.0 == u32::MAX {
            return got;
        }
        got.push(item);
    }
}

#[test]
fn four_producers_four_consumers_lose_nothing_and_keep_each_producers_order() {
    let Some(url) = url() else { return };
    let name = unique("mpmc");
    let q: Queue<(u32, u64)> = Queue::with_maxsize(&url, &name, 50).unwrap();
    const PER: u64 = 300;
    let consumers: Vec<_> =
        (0..4).map(|i| get_context(Some(METHODS[i % 3])).spawn(consume, (q.clone(),)).unwrap()).collect();
    let producers: Vec<_> = (0..4u32)
        .map(|p| {
            get_context(Some(METHODS[(p as usize + 1) % 3])).spawn(produce, (q.clone(), p, PER)).unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..4 {
        q.put((u32::MAX, 0)).unwrap();
    }
    let mut seen: HashMap<(u32, u64), usize> = HashMap::new();
    let (mut sum, mut count) = (0u64, 0u64);
    for c in consumers {
        let got = c.join().unwrap();
        // FIFO: each consumer sees each producer's items in the order they were put.
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(p, i) in &got {
            if let Some(&prev) = last.get(&p) {
                assert!(i > prev, "producer {p}: item {i} came after {prev}");
            }
            last.insert(p, i);
            *seen.entry((p, i)).or_default() += 1;
            sum += u64::from(p) * 1_000_000 + i;
            count += 1;
        }
    }
    let want: u64 = (0..4u64).map(|p| p * 1_000_000 * PER + PER * (PER - 1) / 2).sum();
    assert_eq!(count, 4 * PER);
    assert_eq!(sum, want);
    assert!(seen.values().all(|&n| n == 1), "an item was delivered twice");
    assert_eq!(q.qsize().unwrap(), 0);
    q.unlink().unwrap();
}

fn take_one(q: Queue<u32>) -> u32 {
    q.get_timeout(Duration::from_secs(30)).unwrap()
}

/// What a child's `get_timeout` on an empty queue answered, and after how many milliseconds.
fn timed_get(q: Queue<u32>, ms: u64) -> (String, u64) {
    let t = Instant::now();
    let r = q.get_timeout(Duration::from_millis(ms));
    (format!("{r:?}"), t.elapsed().as_millis() as u64)
}

#[test]
fn maxsize_qsize_full_and_a_blocked_put_released_by_another_process() {
    let Some(url) = url() else { return };
    let name = unique("bounded");
    let q: Queue<u32> = Queue::with_maxsize(&url, &name, 3).unwrap();
    assert!(q.empty().unwrap());
    for i in 0..3 {
        q.put_nowait(i).unwrap();
    }
    assert_eq!(q.qsize().unwrap(), 3);
    assert!(q.full().unwrap());
    // Refused puts hand the value back and leave the queue as it was.
    let e = q.put_nowait(9).unwrap_err();
    assert!(e.is_full(), "{e:?}");
    assert!(matches!(e, TryPutError::Full(9)));
    let t = Instant::now();
    let e = q.put_timeout(8, Duration::from_millis(300)).unwrap_err();
    let waited = t.elapsed();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(e.into_inner(), 8);
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(q.qsize().unwrap(), 3);
    // Another handle opened by name sees the same bound.
    let other: Queue<u32> = Queue::open(&url, &name).unwrap();
    assert_eq!(other.maxsize(), 3);
    assert!(Queue::<u32>::with_maxsize(&url, &name, 4).is_err());
    for (i, method) in METHODS.into_iter().enumerate() {
        let child = get_context(Some(method)).spawn(take_one, (q.clone(),)).unwrap();
        // Full until the child takes the front item; then this put goes in.
        q.put_timeout(10, Duration::from_secs(30)).unwrap();
        let front = child.join().unwrap();
        assert_eq!(front, i as u32, "{method}: the old items, in order");
    }
    let rest: Vec<u32> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(rest, vec![10, 10, 10]);
    assert!(q.get_nowait().unwrap_err().is_empty());
    let t = Instant::now();
    assert!(matches!(q.get_timeout(Duration::from_millis(300)), Err(GetTimeoutError::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(300));
    for method in METHODS {
        let (answer, ms) =
            get_context(Some(method)).spawn(timed_get, (q.clone(), 300)).unwrap().join().unwrap();
        assert_eq!(answer, "Err(Timeout)", "{method}");
        assert!((300..5000).contains(&ms), "{method}: {ms} ms");
    }
    q.close();
    assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    assert!(matches!(q.put_nowait(2), Err(TryPutError::Closed(2))));
    assert!(matches!(q.put_timeout(3, Duration::ZERO), Err(PutTimeoutError::Closed(3))));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.get_nowait(), Err(TryGetError::Closed)));
    assert!(matches!(q.get_timeout(Duration::ZERO), Err(GetTimeoutError::Closed)));
    other.unlink().unwrap();
}

/// Takes an item and ends without marking it done, as a consumer that dies does.
fn take_and_die(q: JoinableQueue<String>) -> String {
    q.get_timeout(Duration::from_secs(30)).unwrap()
}

fn take_and_finish(q: JoinableQueue<String>) -> String {
    let v = q.get_timeout(Duration::from_secs(30)).unwrap();
    q.task_done().unwrap().unwrap();
    v
}

#[test]
fn joinable_item_taken_by_a_dead_consumer_comes_back_after_the_visibility_timeout() {
    let Some(url) = url() else { return };
    for method in METHODS {
        let name = unique("joinable");
        let q: JoinableQueue<String> =
            JoinableQueue::with_options(&url, &name, 0, Duration::from_millis(500)).unwrap();
        q.put("a".into()).unwrap();
        q.put("b".into()).unwrap();
        assert_eq!(q.unfinished().unwrap(), 2);
        assert_eq!(get_context(Some(method)).spawn(take_and_die, (q.clone(),)).unwrap().join().unwrap(), "a");
        assert!(!q.join_timeout(Duration::from_millis(100)).unwrap());
        // "a" is leased to the dead consumer: "b" first, then "a" again once the lease ends.
        assert_eq!(q.get_nowait().unwrap(), "b");
        let t = Instant::now();
        assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap(), "a");
        assert!(t.elapsed() < Duration::from_secs(10));
        q.task_done().unwrap().unwrap();
        q.task_done().unwrap().unwrap();
        assert!(q.task_done().unwrap().is_err(), "a third task_done has nothing to mark");
        q.join().unwrap();
        assert_eq!(q.unfinished().unwrap(), 0);
        // Marked done in a child: the parent's join returns.
        q.put("c".into()).unwrap();
        assert_eq!(
            get_context(Some(method)).spawn(take_and_finish, (q.clone(),)).unwrap().join().unwrap(),
            "c"
        );
        assert!(q.join_timeout(Duration::from_secs(10)).unwrap());
        q.unlink().unwrap();
    }
}

#[test]
fn bad_names_and_urls_are_clear_errors() {
    assert!(Queue::<u8>::open("not a url", "x").is_err());
    let Some(url) = url() else { return };
    assert!(Queue::<u8>::open(&url, "").is_err());
    assert!(Queue::<u8>::open(&url, "a{b}").is_err());
    let q: Queue<Vec<u8>> = Queue::open(&url, &unique("handles")).unwrap();
    let (a, _b) = multiproc::Pipe::duplex().unwrap();
    let hq: Queue<multiproc::Connection> = Queue::open(&url, &unique("handles2")).unwrap();
    assert!(matches!(hq.put(a), Err(PutError::Encode(..))));
    q.unlink().unwrap();
}

fn produce_unbounded(q: Queue<(u32, u64)>, producer: u32, n: u64) {
    for i in 0..n {
        q.put((producer, i)).unwrap();
    }
    // Returning drops the handle, which writes out the backlog before the process exits.
}

/// As [`consume`], failing when no item comes for 20 s.
fn consume_within(q: Queue<(u32, u64)>) -> Vec<(u32, u64)> {
    let mut got = Vec::new();
    loop {
        let item = q.get_timeout(Duration::from_secs(20)).expect("an item or an end marker within 20 s");
        if item.0 == u32::MAX {
            return got;
        }
        got.push(item);
    }
}

#[test]
fn unbounded_queue_batches_and_loses_nothing_when_consumers_leave_with_items_taken_ahead() {
    let Some(url) = url() else { return };
    let name = unique("unbounded-mpmc");
    let q: Queue<(u32, u64)> = Queue::open(&url, &name).unwrap();
    assert_eq!(q.maxsize(), 0);
    const PER: u64 = 5000;
    let producers: Vec<_> = (0..4u32)
        .map(|p| {
            get_context(Some(METHODS[p as usize % 3])).spawn(produce_unbounded, (q.clone(), p, PER)).unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    // Every producer's backlog was written before it exited.
    assert_eq!(q.qsize().unwrap(), 4 * PER as usize);
    // The end markers follow the items: a consumer that stops at its marker leaves with what
    // it took ahead (other items, other markers), which must go back to the queue.
    for _ in 0..4 {
        q.put((u32::MAX, 0)).unwrap();
    }
    let consumers: Vec<_> = (0..4)
        .map(|i| get_context(Some(METHODS[i % 3])).spawn(consume_within, (q.clone(),)).unwrap())
        .collect();
    // (Each consumer's order is not checked: a consumer descheduled for long enough gives back
    // what it took ahead, which another then gets after newer items.)
    let mut seen: HashMap<(u32, u64), usize> = HashMap::new();
    for c in consumers {
        for item in c.join().unwrap() {
            *seen.entry(item).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 4 * PER as usize, "items lost");
    assert!(seen.values().all(|&n| n == 1), "an item was delivered twice");
    assert_eq!(q.qsize().unwrap(), 0);
    q.unlink().unwrap();
}

#[test]
fn items_taken_ahead_and_not_asked_for_go_back_to_the_front() {
    let Some(url) = url() else { return };
    let name = unique("ahead");
    let a: Queue<u32> = Queue::open(&url, &name).unwrap();
    let b: Queue<u32> = Queue::open(&url, &name).unwrap();
    for i in 0..2000 {
        a.put(i).unwrap();
    }
    // This handle's own puts are on the server before its next qsize or get.
    assert_eq!(a.qsize().unwrap(), 2000);
    assert_eq!(b.qsize().unwrap(), 2000);
    // A quick consumer takes items ahead (in order, as the only consumer)...
    for i in 0..1000 {
        assert_eq!(a.get().unwrap(), i);
    }
    let ahead = a.qsize().unwrap() - b.qsize().unwrap();
    assert!(ahead > 1, "a quick consumer took no items ahead");
    // ... and stops: another handle gets every item once they are given back (to the front:
    // after the newer items it had already taken, in their own order).
    let t = Instant::now();
    let got: Vec<u32> = (1000..2000).map(|_| b.get_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let back: Vec<u32> = got.iter().copied().filter(|&i| i < got[0]).collect();
    assert_eq!(back.len(), got[0] as usize - 1000, "{got:?}");
    assert!(back.windows(2).all(|w| w[0] < w[1]), "given back out of order: {back:?}");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1000..2000).collect::<Vec<u32>>());
    assert_eq!(a.qsize().unwrap(), 0);
    assert!(matches!(a.get_nowait(), Err(TryGetError::Empty)));
    // A put is on the server for this handle's next get_nowait.
    a.put(7).unwrap();
    assert_eq!(a.get_nowait().unwrap(), 7);
    a.flush().unwrap();
    a.unlink().unwrap();
}

#[test]
fn a_backlog_that_cannot_be_written_is_reported_by_flush_and_the_next_put() {
    let Some(_) = url() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Ok(mut server) = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not found, skipping");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
        // Waiting for the server to listen: it has no readiness signal.
        std::thread::sleep(Duration::from_millis(20));
    }
    let q: Queue<u32> = Queue::open(&format!("redis://127.0.0.1:{port}/0"), "backlog").unwrap();
    q.put(1).unwrap();
    q.flush().unwrap();
    assert_eq!(q.qsize().unwrap(), 1);
    server.kill().unwrap(); // our own child, by pid
    server.wait().unwrap();
    // The put returns at once; its write fails once the reconnect window (10 s) is over.
    q.put(2).unwrap();
    let t = Instant::now();
    let e = q.flush().expect_err("a backlog written to a server that is gone");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(e.to_string().contains("Redis"), "{e}");
    // Reported once; then puts go to the backlog again.
    q.put(3).unwrap();
}
