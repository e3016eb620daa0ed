//! A tokio program over processes: fans work out to worker processes through a bounded queue,
//! streams their results back through a second queue, sends the results through a pool's
//! `imap` over that stream, talks to a child over a pipe (through a `Sink`), gives up on a slow
//! executor task whose worker is then killed, and shuts down on Ctrl-C with every child joined
//! (nothing left behind).
//!
//! `cargo run --release --features tokio --example async_tour [JOBS]` (2000 by default; a
//! large count gives time to press Ctrl-C).

use multiproc::{Connection, Event, Executor, OnDrop, Pipe, Pool, Process, Queue, Sink, Stream};
use std::pin::Pin;
use std::time::Duration;

/// Steps of the Collatz sequence from `n` down to 1.
fn collatz(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// A worker process: takes numbers until `None`, puts back `(worker, n, steps)`.
fn worker(id: u32, jobs: Queue<Option<u64>>, results: Queue<(u32, u64, u64)>) {
    while let Ok(Some(n)) = jobs.get() {
        results.put((id, n, collatz(n))).unwrap();
    }
}

/// A child that answers over a pipe until the pipe closes or `stop` is set.
fn echo(conn: Connection, stop: Event) {
    while !stop.is_set() {
        match conn.recv::<String>() {
            Ok(s) => conn.send(&s.to_uppercase()).unwrap(),
            Err(_) => break,
        }
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// A task that takes far too long.
fn stall(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Hands every item to `sink`, then flushes it (what `SinkExt::send_all` does).
async fn send_all<S: Sink<T> + Unpin, T>(
    sink: &mut S,
    items: impl IntoIterator<Item = T>,
) -> Result<(), S::Error> {
    for item in items {
        std::future::poll_fn(|cx| Pin::new(&mut *sink).poll_ready(cx)).await?;
        Pin::new(&mut *sink).start_send(item)?;
    }
    std::future::poll_fn(|cx| Pin::new(&mut *sink).poll_flush(cx)).await
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn jobs_count() -> u64 {
    std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000)
}
const WORKERS: u32 = 3;

/// The work itself; returns early (and cleanly) when interrupted, as `main` then cancels it.
async fn run(
    jobs: &Queue<Option<u64>>,
    results: &Queue<(u32, u64, u64)>,
    pool: &Pool,
    conn: &Connection,
) -> multiproc::Result<()> {
    // Producer: a bounded queue, so put_async waits (without a thread) while workers lag.
    let jobs_n = jobs_count();
    let produce = async {
        for n in 1..=jobs_n {
            jobs.put_async(Some(n)).await.map_err(|e| multiproc::Error::InvalidState(e.to_string()))?;
        }
        Ok::<_, multiproc::Error>(())
    };
    // Consumer: the results as a stream.
    let consume = async {
        let mut per_worker = [0u64; WORKERS as usize];
        let (mut longest, mut at) = (0, 0);
        let mut stream = results.stream();
        for _ in 0..jobs_n {
            let (id, n, steps) = next(&mut stream).await.expect("a queue stream does not end").unwrap();
            per_worker[id as usize] += 1;
            if steps > longest {
                (longest, at) = (steps, n);
            }
        }
        println!("workers took {per_worker:?} jobs; the longest sequence up to {jobs_n} starts at {at} ({longest} steps)");
    };
    let (produced, ()) = tokio::join!(produce, consume);
    produced?;

    // The pipe: the words go out through a sink, the replies come back as a stream.
    let words = ["fan", "out", "stream", "back"];
    send_all(&mut conn.sink(), words.map(String::from)).await?;
    let mut replies = conn.messages::<String>();
    for _ in words {
        println!("child says {}", next(&mut replies).await.expect("the child answers each word")?);
    }

    // A pool's imap over an input stream, read lazily.
    let input = Numbers(1..=10);
    let mut squares = pool.imap_stream(square, input);
    let mut total = 0;
    while let Some(v) = next(&mut squares).await {
        total += v?;
    }
    println!("sum of squares 1..=10 through the pool: {total}");
    assert_eq!(total, 385);

    // An executor whose futures, dropped, take their task with them: a timeout gives up on a
    // task that would run for a minute, and its worker is killed and replaced.
    let ex = Executor::builder().max_workers(1).on_drop(OnDrop::Kill).build()?;
    let slow = ex.submit(stall, (60_000,))?;
    if tokio::time::timeout(Duration::from_millis(100), slow).await.is_err() {
        println!("gave up on a slow task after 100 ms: its worker was killed");
    }
    println!("the executor goes on: collatz(27) takes {} steps", ex.submit(collatz, (27,))?.await?);
    ex.shutdown();
    Ok(())
}

/// A plain range as a stream.
struct Numbers(std::ops::RangeInclusive<u64>);

impl Stream for Numbers {
    type Item = u64;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<u64>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::main]
async fn main() -> multiproc::Result<()> {
    let jobs: Queue<Option<u64>> = Queue::with_maxsize(32)?;
    let results: Queue<(u32, u64, u64)> = Queue::new()?;
    let workers: Vec<Process> = (0..WORKERS)
        .map(|id| Process::new(worker, (id, jobs.clone(), results.clone())).start())
        .collect::<multiproc::Result<_>>()?;
    let (conn, child_end) = Pipe::duplex()?;
    let stop = Event::new()?;
    let echoer = Process::new(echo, (child_end, stop.clone())).start()?;
    let pool = Pool::new(2)?;

    let interrupted = tokio::select! {
        r = run(&jobs, &results, &pool, &conn) => { r?; false }
        _ = tokio::signal::ctrl_c() => { println!("interrupted: shutting down"); true }
    };

    // Shutdown, the same either way: stop the workers, close the pipe, join everything.
    for _ in 0..WORKERS {
        let _ = jobs.put_nowait(None);
    }
    stop.set();
    drop(conn);
    for p in workers.iter().chain([&echoer]) {
        match tokio::time::timeout(Duration::from_secs(5), p.join_async()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                // Still busy (a worker with jobs queued ahead of its `None`): it goes now.
                p.terminate()?;
                p.join_async().await?;
            }
        }
    }
    pool.close();
    pool.join()?;
    println!(
        "{}",
        if interrupted { "stopped early, every child joined" } else { "done, every child joined" }
    );
    Ok(())
}
