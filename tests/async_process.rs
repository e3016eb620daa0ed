//! Awaiting processes (feature `tokio`) under each start method: exit codes, values, a kill
//! or terminate while awaited, timeouts around the wait, many children at once.
#![cfg(feature = "tokio")]

use multiproc::{ChildFailure, Error, Event, Process, StartMethod};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn runtimes() -> [tokio::runtime::Runtime; 2] {
    [
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    ]
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn cube(n: u64) -> u64 {
    n * n * n
}

fn boom(msg: String) -> u64 {
    panic!("{msg}")
}

/// Runs until killed: waits on an event nobody sets.
fn hang(ev: Event) {
    ev.wait();
}

/// A value larger than a socket's buffer.
fn big(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

#[test]
fn join_async_gives_the_exit_code_under_each_method() {
    for method in METHODS {
        for rt in runtimes() {
            rt.block_on(async {
                let ps: Vec<Process> = (0..4)
                    .map(|i| Process::builder(exit_with, (i,)).start_method(method).start().unwrap())
                    .collect();
                for (i, p) in ps.iter().enumerate() {
                    let st =
                        tokio::time::timeout(Duration::from_secs(60), p.join_async()).await.unwrap().unwrap();
                    assert_eq!(st.exitcode(), i as i32, "{method}");
                    assert_eq!(p.exitcode(), Some(i as i32));
                    // Joined already: at once.
                    assert_eq!(p.join_async().await.unwrap().exitcode(), i as i32);
                }
            });
        }
    }
}

#[test]
fn a_process_killed_while_awaited_gives_its_signal() {
    for method in METHODS {
        for rt in runtimes() {
            rt.block_on(async {
                let ev = Event::new().unwrap();
                let p = Process::builder(hang, (ev.clone(),)).start_method(method).start().unwrap();
                let waiting = p.join_async();
                let killer = async {
                    // Awaited for a while first: it must still be running.
                    assert!(tokio::time::timeout(Duration::from_millis(50), p.join_async()).await.is_err());
                    p.kill().unwrap();
                };
                let (st, ()) = tokio::join!(waiting, killer);
                let st = st.unwrap();
                assert_eq!(st.signal(), Some(libc::SIGKILL), "{method}");
                assert_eq!(st.exitcode(), -9);
            });
        }
    }
}

#[test]
fn terminate_after_a_timed_out_await() {
    for method in METHODS {
        let [rt, _] = runtimes();
        rt.block_on(async {
            let p = Process::builder(hang, (Event::new().unwrap(),)).start_method(method).start().unwrap();
            assert!(tokio::time::timeout(Duration::from_millis(30), p.join_async()).await.is_err());
            assert!(p.is_alive(), "a cancelled await leaves the child alone");
            p.terminate().unwrap();
            let st = tokio::time::timeout(Duration::from_secs(60), p.join_async()).await.unwrap().unwrap();
            assert_eq!(st.exitcode(), -libc::SIGTERM, "{method}");
        });
    }
}

#[test]
fn join_handle_async_returns_the_value_or_the_failure() {
    for method in METHODS {
        for rt in runtimes() {
            rt.block_on(async {
                let ctx = multiproc::get_context(Some(method));
                let h = ctx.spawn(cube, (5u64,)).unwrap();
                assert_eq!(h.join_async().await.unwrap(), 125);
                let h = ctx.spawn(boom, ("async boom".to_string(),)).unwrap();
                match h.join_async().await {
                    Err(Error::Child(e)) => {
                        assert!(matches!(e.failure(), ChildFailure::Panicked { message, .. } if message.contains("async boom")))
                    }
                    other => panic!("{other:?}"),
                }
                let h = ctx.spawn(big, (4usize << 20,)).unwrap();
                let v = tokio::time::timeout(Duration::from_secs(60), h.join_async()).await.unwrap().unwrap();
                assert_eq!(v.len(), 4 << 20);
                assert!(v.iter().all(|b| *b == 7));
            });
        }
    }
}

#[test]
fn a_spawned_child_killed_while_its_value_is_awaited() {
    let [rt, _] = runtimes();
    rt.block_on(async {
        let h = multiproc::spawn(hang, (Event::new().unwrap(),)).unwrap();
        let p = h.process().clone();
        let (r, ()) = tokio::join!(h.join_async(), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.kill().unwrap();
        });
        match r {
            Err(Error::Child(e)) => assert!(matches!(e.failure(), ChildFailure::Signaled(libc::SIGKILL))),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn join_async_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let p = Process::new(exit_with, (0,));
    send(&p.join_async());
    let q: multiproc::Queue<u8> = multiproc::Queue::new().unwrap();
    send(&q.get_async());
    send(&q.put_async(1));
}
