//! No thread per await (feature `tokio`): 10 000 awaits of each kind that has to sleep, queue
//! gets, pipe receives and semaphore acquires fed by other processes, and process joins, on the
//! current-thread and the multi-thread runtime, leave this process's thread count as it was
//! after the first await (the one process-wide waker thread). One test in its own binary, so
//! that no other test's threads come and go meanwhile.
#![cfg(feature = "tokio")]

use multiproc::{Connection, Pipe, Process, Queue, Semaphore};
use std::time::Duration;

const N: u64 = 10_000;

fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

fn produce(q: Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn echo(conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if v == u64::MAX || conn.send(&v).is_err() {
            break;
        }
    }
}

/// Hands a permit over and waits for one back, `n` times.
fn ping(to_parent: Semaphore, to_child: Semaphore, n: u64) {
    for _ in 0..n {
        to_parent.release().unwrap();
        to_child.acquire().forget();
    }
}

fn exit_now() {}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f).await.expect("well within the bound")
}

#[test]
fn ten_thousand_awaits_of_each_kind_add_no_thread() {
    let runtimes = [
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    ];
    for rt in runtimes {
        rt.block_on(async {
            // Every kind of wait once, so that the waker thread and the runtime's own are there.
            let q: Queue<u64> = Queue::new().unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(1), q.get_async()).await;
            let p = Process::new(exit_now, ()).start().unwrap();
            within(p.join_async()).await.unwrap();
        });
        let before = threads();
        rt.block_on(async {
            let q: Queue<u64> = Queue::new().unwrap();
            let p = Process::new(produce, (q.clone(), N)).start().unwrap();
            let mut sum = 0;
            for _ in 0..N {
                sum += within(q.get_async()).await.unwrap();
            }
            assert_eq!(sum, N * (N - 1) / 2);
            within(p.join_async()).await.unwrap();
            assert_eq!(threads(), before, "queue gets");

            let (a, b) = Pipe::duplex().unwrap();
            let p = Process::new(echo, (b,)).start().unwrap();
            for i in 0..N {
                a.send_async(&i).await.unwrap();
                assert_eq!(within(a.recv_async::<u64>()).await.unwrap(), i);
            }
            a.send_async(&u64::MAX).await.unwrap();
            within(p.join_async()).await.unwrap();
            assert_eq!(threads(), before, "pipe receives");

            let (to_parent, to_child) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
            let p = Process::new(ping, (to_parent.clone(), to_child.clone(), N)).start().unwrap();
            for _ in 0..N {
                within(to_parent.acquire_async()).await.forget();
                to_child.release().unwrap();
            }
            within(p.join_async()).await.unwrap();
            assert_eq!(threads(), before, "semaphore acquires");

            for _ in 0..200 {
                let p = Process::new(exit_now, ()).start().unwrap();
                assert!(within(p.join_async()).await.unwrap().success());
            }
            assert_eq!(threads(), before, "process joins");
        });
    }
}
