//! Sink adapters (feature `tokio`): `Connection::sink` and `Queue::sink` across real processes,
//! under each start method; an item handed over by a send future that was then dropped still
//! goes, in order; what dropping the sink itself does.
#![cfg(feature = "tokio")]

use multiproc::{Connection, Event, JoinableQueue, Pipe, Process, Queue, SimpleQueue, Sink, StartMethod};
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What `SinkExt::send` does: wait until ready, hand the item over, flush.
async fn send<S: Sink<T> + Unpin, T>(sink: &mut S, item: T) -> Result<(), S::Error> {
    poll_fn(|cx| Pin::new(&mut *sink).poll_ready(cx)).await?;
    Pin::new(&mut *sink).start_send(item)?;
    poll_fn(|cx| Pin::new(&mut *sink).poll_flush(cx)).await
}

/// Hands `item` over, waiting for the sink's readiness in slices of `t` (a `poll_ready` given
/// up on loses nothing: the item is still here), then flushes for at most `t`; whether the
/// flush finished (if not, the item waits in the sink).
async fn feed_then_flush<S, T>(sink: &mut S, item: T, t: Duration) -> bool
where
    S: Sink<T> + Unpin,
    S::Error: std::fmt::Debug,
{
    while tokio::time::timeout(t, poll_fn(|cx| Pin::new(&mut *sink).poll_ready(cx))).await.is_err() {}
    Pin::new(&mut *sink).start_send(item).unwrap();
    match tokio::time::timeout(t, poll_fn(|cx| Pin::new(&mut *sink).poll_flush(cx))).await {
        Ok(r) => {
            r.unwrap();
            true
        }
        Err(_) => false,
    }
}

async fn close<S: Sink<T> + Unpin, T>(sink: &mut S) -> Result<(), S::Error> {
    poll_fn(|cx| Pin::new(&mut *sink).poll_close(cx)).await
}

fn message(i: u32) -> Vec<u8> {
    // Mostly small, every 40th larger than the lane takes inline, every 400th larger than the lane.
    let len = match i {
        i if i % 400 == 0 => 300 << 10,
        i if i % 40 == 0 => 40 << 10,
        i => (i % 200) as usize,
    };
    (0..len).map(|k| (k as u32 * 7 + i) as u8).collect()
}

/// Waits for `go`, then receives until `u32::MAX`, checking order and content; the count.
fn check_messages(conn: Connection, go: Event) -> u32 {
    go.wait();
    let mut n = 0;
    loop {
        let (i, body): (u32, Vec<u8>) = conn.recv().unwrap();
        if i == u32::MAX {
            return n;
        }
        assert_eq!(i, n, "in order");
        assert_eq!(body, message(i));
        n += 1;
    }
}

#[test]
fn connection_sink_delivers_every_item_in_order_with_sends_cancelled_on_a_full_pipe() {
    for method in METHODS {
        for rt in [current(), multi()] {
            let (a, b) = Pipe::duplex().unwrap();
            let go = Event::new().unwrap();
            let ctx = multiproc::get_context(Some(method));
            let child = ctx.spawn(check_messages, (b, go.clone())).unwrap();
            let sent = rt.block_on(async {
                let mut sink = a.sink::<(u32, Vec<u8>)>();
                let mut i = 0u32;
                // The reader waits: the pipe fills, and a flush is given up on. Its item stays in
                // the sink.
                while feed_then_flush(&mut sink, (i, message(i)), Duration::from_millis(5)).await {
                    i += 1;
                    assert!(i < 1_000_000, "a pipe nobody reads fills up");
                }
                i += 1;
                go.set();
                let mut given_up = 0;
                for _ in 0..1000 {
                    if !feed_then_flush(&mut sink, (i, message(i)), Duration::from_millis(1)).await {
                        given_up += 1;
                    }
                    i += 1;
                }
                eprintln!("{method}: {given_up} of 1000 flushes given up on");
                send(&mut sink, (u32::MAX, Vec::new())).await.unwrap();
                close(&mut sink).await.unwrap();
                i
            });
            assert_eq!(child.join().unwrap(), sent, "{method}: every item, once, in order");
        }
    }
}

fn take_all(q: Queue<u64>, out: Queue<Vec<u64>>) {
    let mut got = Vec::new();
    loop {
        let v = q.get().unwrap();
        if v == u64::MAX {
            break;
        }
        got.push(v);
    }
    out.put(got).unwrap();
}

#[test]
fn queue_sink_waits_for_room_and_keeps_an_item_whose_send_was_cancelled() {
    for method in METHODS {
        let q: Queue<u64> = Queue::with_maxsize(2).unwrap();
        let out: Queue<Vec<u64>> = Queue::new().unwrap();
        current().block_on(async {
            let mut sink = q.sink();
            send(&mut sink, 0).await.unwrap();
            send(&mut sink, 1).await.unwrap();
            // Full: the send hands the item over, then gives up waiting for room.
            assert!(tokio::time::timeout(Duration::from_millis(20), send(&mut sink, 2)).await.is_err());
            assert_eq!(q.qsize(), 2, "a bounded queue never holds more than its maxsize");
            let p =
                Process::builder(take_all, (q.clone(), out.clone())).start_method(method).start().unwrap();
            for i in 3..500 {
                tokio::time::timeout(Duration::from_secs(60), send(&mut sink, i)).await.unwrap().unwrap();
            }
            send(&mut sink, u64::MAX).await.unwrap();
            close(&mut sink).await.unwrap();
            let got = out.get_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(got, (0..500).collect::<Vec<_>>(), "{method}: every item, once, in order");
            assert_eq!(p.join().unwrap().exitcode(), 0);
        });
    }
}

#[test]
fn a_dropped_queue_sink_puts_its_waiting_item_if_there_is_room_then() {
    let q: Queue<u32> = Queue::with_maxsize(1).unwrap();
    current().block_on(async {
        let mut sink = q.sink();
        send(&mut sink, 1).await.unwrap();
        poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx)).await.unwrap();
        Pin::new(&mut sink).start_send(2).unwrap();
        assert_eq!(q.qsize(), 1, "2 waits in the sink");
        assert_eq!(q.get().unwrap(), 1);
        drop(sink);
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 2, "put by the drop");
        // With no room at the drop, the item goes with the sink.
        let mut sink = q.sink();
        send(&mut sink, 3).await.unwrap();
        poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx)).await.unwrap();
        Pin::new(&mut sink).start_send(4).unwrap();
        drop(sink);
        assert_eq!(q.get().unwrap(), 3);
        assert!(q.get_nowait().is_err());
    });
}

fn finish(q: JoinableQueue<u32>, n: u32) {
    for _ in 0..n {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_and_simple_queue_sinks() {
    for method in METHODS {
        current().block_on(async {
            let q: JoinableQueue<u32> = JoinableQueue::with_maxsize(4).unwrap();
            let p = Process::builder(finish, (q.clone(), 50)).start_method(method).start().unwrap();
            let mut sink = q.sink();
            for i in 0..50 {
                send(&mut sink, i).await.unwrap();
            }
            tokio::time::timeout(Duration::from_secs(60), q.join_async()).await.expect("every item done");
            assert_eq!(p.join().unwrap().exitcode(), 0);

            let s: SimpleQueue<String> = SimpleQueue::new().unwrap();
            let mut sink = s.sink();
            send(&mut sink, "a".to_string()).await.unwrap();
            send(&mut sink, "b".to_string()).await.unwrap();
            assert_eq!(s.get_async().await.unwrap(), "a");
            assert_eq!(s.get_async().await.unwrap(), "b");
        });
    }
}

#[test]
fn sinks_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let (a, _b) = Pipe::duplex().unwrap();
    is_send(&a.sink::<(u32, String)>());
    let q: Queue<u32> = Queue::new().unwrap();
    is_send(&q.sink());
}
