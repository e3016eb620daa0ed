//! The Rust peers on the workloads they have: procspawn (spawn + join) and ipc-channel (round
//! trip between two processes, and a stream of items or 1 MiB byte strings from a child).

use ipc_channel::ipc;
use std::time::Instant;

/// procspawn's spawn + join of a child that does nothing, microseconds per process.
pub fn procspawn_spawn_join(n: usize) -> f64 {
    procspawn::spawn((), |()| ()).join().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        procspawn::spawn((), |()| ()).join().unwrap();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e6
}

/// ipc-channel ping-pong of a u64 with a child process (hosted by procspawn), round trips/s.
pub fn ipc_channel_roundtrip(n: usize) -> f64 {
    let (to_child, child_rx) = ipc::channel::<u64>().unwrap();
    let (child_tx, from_child) = ipc::channel::<u64>().unwrap();
    let child = procspawn::spawn(
        (child_rx, child_tx, n),
        |(rx, tx, n): (ipc::IpcReceiver<u64>, ipc::IpcSender<u64>, usize)| {
            for _ in 0..n {
                tx.send(rx.recv().unwrap()).unwrap();
            }
        },
    );
    let t = Instant::now();
    for i in 0..n as u64 {
        to_child.send(i).unwrap();
        assert_eq!(from_child.recv().unwrap(), i);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    child.join().unwrap();
    rate
}

/// ipc-channel: one child process (hosted by procspawn) sends n u64 items to the parent,
/// items per second; the clock starts before the child, as in the queue workloads.
pub fn ipc_channel_small(n: usize) -> f64 {
    let t = Instant::now();
    let (tx, rx) = ipc::channel::<u64>().unwrap();
    let child = procspawn::spawn((tx, n), |(tx, n): (ipc::IpcSender<u64>, usize)| {
        for i in 0..n as u64 {
            tx.send(i).unwrap();
        }
    });
    for i in 0..n as u64 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    child.join().unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

/// ipc-channel's byte channel: one child sends n 1 MiB byte strings to the parent, MiB/s.
pub fn ipc_channel_1mb(n: usize) -> f64 {
    let t = Instant::now();
    let (tx, rx) = ipc::bytes_channel().unwrap();
    let child = procspawn::spawn((tx, n), |(tx, n): (ipc::IpcBytesSender, usize)| {
        let blob = vec![b'x'; 1 << 20];
        for _ in 0..n {
            tx.send(&blob.clone()).unwrap();
        }
    });
    for _ in 0..n {
        assert_eq!(rx.recv().unwrap().len(), 1 << 20);
    }
    child.join().unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}
