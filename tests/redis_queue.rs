//! `redis::Queue` and `redis::JoinableQueue` across real processes, on the server `REDIS_URL`
//! names (skipped, saying so, when it is unset). Producers and consumers are started with each
//! start method in turn.
#![cfg(feature = "redis")]

use multiprocessing::redis::{GetError, JoinableQueue, PutError, Queue};
use multiprocessing::{get_context, StartMethod};
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
    assert!(matches!(q.put_nowait(9), Err(PutError::Full(9))));
    let t = Instant::now();
    assert!(matches!(q.put_timeout(9, Duration::from_millis(300)), Err(PutError::Full(9))));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    // Another handle opened by name sees the same bound.
    let other: Queue<u32> = Queue::open(&url, &name).unwrap();
    assert_eq!(other.maxsize(), 3);
    assert!(Queue::<u32>::with_maxsize(&url, &name, 4).is_err());
    for method in METHODS {
        let child = get_context(Some(method)).spawn(take_one, (q.clone(),)).unwrap();
        // Full until the child takes the front item; then this put goes in.
        q.put_timeout(10, Duration::from_secs(30)).unwrap();
        let front = child.join().unwrap();
        assert!(front < 3, "{front}");
    }
    let rest: Vec<u32> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
    assert_eq!(rest, vec![10, 10, 10]);
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
    let t = Instant::now();
    assert!(matches!(q.get_timeout(Duration::from_millis(300)), Err(GetError::Empty)));
    assert!(t.elapsed() >= Duration::from_millis(300));
    q.close();
    assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    assert!(matches!(q.get_nowait(), Err(GetError::Closed)));
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
    let (a, _b) = multiprocessing::Pipe::new(true).unwrap();
    let hq: Queue<multiprocessing::Connection> = Queue::open(&url, &unique("handles2")).unwrap();
    assert!(matches!(hq.put(a), Err(PutError::Encode(..))));
    q.unlink().unwrap();
}
