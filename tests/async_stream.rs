//! Stream adapters (feature `tokio`): a connection's messages, a queue's items, and a pool's
//! `imap` over an input stream, read lazily, under each start method.
#![cfg(feature = "tokio")]

use multiproc::{Connection, Pipe, Pool, Process, Queue, StartMethod, Stream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn send_n(conn: Connection, n: u32) {
    for i in 0..n {
        conn.send(&i).unwrap();
    }
}

fn put_n(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn messages_and_items_streams_end_or_continue_as_documented() {
    for method in METHODS {
        let (a, b) = Pipe::duplex().unwrap();
        let p = Process::builder(send_n, (b, 300)).start_method(method).start().unwrap();
        let q: Queue<u32> = Queue::new().unwrap();
        let pq = Process::builder(put_n, (q.clone(), 300)).start_method(method).start().unwrap();
        current().block_on(async {
            let mut msgs = a.messages::<u32>();
            let mut got = Vec::new();
            while let Some(v) = tokio::time::timeout(Duration::from_secs(60), next(&mut msgs)).await.unwrap()
            {
                got.push(v.unwrap());
            }
            assert_eq!(got, (0..300).collect::<Vec<_>>(), "{method}: every message, then the end");
            let mut items = q.stream();
            let mut got = Vec::new();
            for _ in 0..300 {
                got.push(next(&mut items).await.unwrap().unwrap());
            }
            got.sort();
            assert_eq!(got, (0..300).collect::<Vec<_>>());
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);
        assert_eq!(pq.join().unwrap().exitcode(), 0);
    }
}

/// An input stream counting how many items were taken from it.
struct Counting {
    next: u64,
    end: u64,
    taken: Arc<AtomicU64>,
}

impl Stream for Counting {
    type Item = u64;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next == self.end {
            return Poll::Ready(None);
        }
        self.next += 1;
        self.taken.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(self.next - 1))
    }
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn pool_imap_stream_reads_its_input_lazily_and_keeps_order() {
    for method in METHODS {
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        current().block_on(async {
            let taken = Arc::new(AtomicU64::new(0));
            let input = Counting { next: 0, end: 1000, taken: taken.clone() };
            let mut out = pool.imap_stream(square, input);
            assert_eq!(next(&mut out).await.unwrap().unwrap(), 0);
            let window = 4 * 2 + 16;
            assert!(taken.load(Ordering::SeqCst) <= window + 1, "lazy: {}", taken.load(Ordering::SeqCst));
            let mut rest = Vec::new();
            while let Some(v) = next(&mut out).await {
                rest.push(v.unwrap());
            }
            assert_eq!(rest, (1..1000).map(|x| x * x).collect::<Vec<_>>(), "{method}");

            let input = Counting { next: 0, end: 200, taken: Arc::new(AtomicU64::new(0)) };
            let mut out = pool.imap_unordered_stream(square, input);
            let mut all = Vec::new();
            while let Some(v) = next(&mut out).await {
                all.push(v.unwrap());
            }
            all.sort();
            assert_eq!(all, (0..200).map(|x| x * x).collect::<Vec<_>>());
        });
    }
}
