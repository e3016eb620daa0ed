//! Async pipe operations (feature `tokio`) across real processes, under each start method:
//! `send_async`/`recv_async`/`recv_bytes_async`/`poll_async`, lane-sized and socket-sized
//! messages, cancellation at await points, end-of-file.
#![cfg(feature = "tokio")]

use multiproc::{Connection, Error, Pipe, Process, StartMethod};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Blocking echo until end-of-file.
fn echo(conn: Connection) {
    while let Ok(v) = conn.recv_bytes() {
        conn.send_bytes(&v).unwrap();
    }
}

/// Async echo on its own runtime until end-of-file.
fn echo_async(conn: Connection) {
    current().block_on(async {
        while let Ok(v) = conn.recv_bytes_async().await {
            conn.send_bytes_async(&v).await.unwrap();
        }
    })
}

fn message(i: usize) -> Vec<u8> {
    // Mostly lane-sized, every 50th larger than a lane message, every 200th larger than the lane.
    let len = if i % 200 == 0 {
        300 << 10
    } else if i % 50 == 0 {
        40 << 10
    } else {
        i % 300
    };
    (0..len).map(|k| (k * 31 + i) as u8).collect()
}

#[test]
fn async_round_trips_with_a_blocking_and_an_async_peer() {
    for method in METHODS {
        for peer_async in [false, true] {
            for rt in [current(), multi()] {
                let (a, b) = Pipe::duplex().unwrap();
                let p = if peer_async {
                    Process::builder(echo_async, (b,))
                } else {
                    Process::builder(echo, (b,))
                };
                let p = p.start_method(method).start().unwrap();
                rt.block_on(async {
                    for i in 0..600 {
                        a.send_bytes_async(&message(i)).await.unwrap();
                        let back = tokio::time::timeout(Duration::from_secs(60), a.recv_bytes_async())
                            .await
                            .unwrap();
                        assert_eq!(back.unwrap(), message(i), "{method} message {i}");
                    }
                });
                drop(a);
                assert_eq!(p.join().unwrap().exitcode(), 0);
            }
        }
    }
}

#[test]
fn typed_values_and_handles_travel_async() {
    fn child(conn: Connection) {
        current().block_on(async {
            let (n, s): (u32, String) = conn.recv_async().await.unwrap();
            let inner: Connection = conn.recv_async().await.unwrap();
            inner.send_async(&format!("{s}{n}")).await.unwrap();
        })
    }
    for method in METHODS {
        let (a, b) = Pipe::duplex().unwrap();
        let (x, y) = Pipe::duplex().unwrap();
        let p = Process::builder(child, (b,)).start_method(method).start().unwrap();
        current().block_on(async {
            a.send_async(&(7u32, "seven".to_string())).await.unwrap();
            a.send_async(&y).await.unwrap();
            assert_eq!(x.recv_async::<String>().await.unwrap(), "seven7");
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

#[test]
fn both_ends_in_one_current_thread_runtime_with_messages_larger_than_the_socket_buffer() {
    let (a, b) = Pipe::duplex().unwrap();
    current().block_on(async {
        let big: Vec<u8> = (0..(4usize << 20)).map(|i| i as u8).collect();
        let send = async {
            for _ in 0..3 {
                a.send_bytes_async(&big).await.unwrap();
            }
            // Fills the lane: the sender must wait for room without blocking the receiver.
            for i in 0..5000u32 {
                a.send_async(&i).await.unwrap();
            }
        };
        let recv = async {
            for _ in 0..3 {
                assert_eq!(b.recv_bytes_async().await.unwrap(), big);
            }
            for i in 0..5000u32 {
                assert_eq!(b.recv_async::<u32>().await.unwrap(), i);
            }
        };
        tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(send, recv) }).await.unwrap();
    });
}

#[test]
fn cancelled_receives_lose_no_message() {
    fn late_sender(conn: Connection) {
        for i in 0..200u32 {
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
            conn.send(&i).unwrap();
        }
    }
    for method in METHODS {
        let (a, b) = Pipe::duplex().unwrap();
        let p = Process::builder(late_sender, (b,)).start_method(method).start().unwrap();
        let got = multi().block_on(async {
            let mut got = Vec::new();
            let mut cancelled = 0;
            while got.len() < 200 {
                // Short timeouts: many receives are dropped while waiting.
                match tokio::time::timeout(Duration::from_micros(300), a.recv_async::<u32>()).await {
                    Ok(v) => got.push(v.unwrap()),
                    Err(_) => cancelled += 1,
                }
                assert!(cancelled < 1_000_000);
            }
            got
        });
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "{method}: in order, none lost");
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

#[test]
fn poll_async_and_end_of_file() {
    fn send_then_close(conn: Connection) {
        std::thread::sleep(Duration::from_millis(20));
        conn.send(&1u8).unwrap();
    }
    for method in METHODS {
        let (a, b) = Pipe::duplex().unwrap();
        let p = Process::builder(send_then_close, (b,)).start_method(method).start().unwrap();
        current().block_on(async {
            tokio::time::timeout(Duration::from_secs(60), a.poll_async()).await.unwrap().unwrap();
            assert!(a.poll(Some(Duration::ZERO)).unwrap(), "poll_async took nothing");
            assert_eq!(a.recv_async::<u8>().await.unwrap(), 1);
            let end = tokio::time::timeout(Duration::from_secs(60), a.recv_async::<u8>()).await.unwrap();
            assert!(matches!(end, Err(Error::Eof)), "{end:?}");
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

#[test]
fn closing_an_end_used_async_reaches_the_peer_even_with_a_fork_child_started_since() {
    fn sleeper(ev: multiproc::Event) {
        ev.wait();
    }
    fn wait_eof(conn: Connection, out: multiproc::Queue<bool>) {
        conn.send(&1u8).unwrap();
        out.put(matches!(conn.recv::<u8>(), Err(Error::Eof))).unwrap();
    }
    let (a, b) = Pipe::duplex().unwrap();
    let out = multiproc::Queue::new().unwrap();
    let peer = Process::builder(wait_eof, (b, out.clone())).start_method(StartMethod::Fork).start().unwrap();
    let ev = multiproc::Event::new().unwrap();
    current().block_on(async {
        assert_eq!(a.recv_async::<u8>().await.unwrap(), 1);
    });
    // A forked child inherits every descriptor this process has, the async one included.
    let bystander = Process::builder(sleeper, (ev.clone(),)).start_method(StartMethod::Fork).start().unwrap();
    a.close();
    let saw_eof = out.get_timeout(Duration::from_secs(20));
    ev.set();
    assert_eq!(bystander.join().unwrap().exitcode(), 0);
    assert!(matches!(saw_eof, Ok(true)), "the peer saw the close: {saw_eof:?}");
    assert_eq!(peer.join().unwrap().exitcode(), 0);
}
