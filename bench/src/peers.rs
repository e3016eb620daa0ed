//! The Rust peers on the workloads they have, each used as its maintainers document it:
//! procspawn (spawn + join, its own `Pool`), ipc-channel (channels, byte channels and
//! `IpcSharedMemory`) and, with the `iceoryx2` feature, iceoryx2's request-response.

use crate::host::{Meter, Sample};
use ipc_channel::ipc;

/// procspawn's spawn + join of a child that does nothing (it always execs: the spawn row only).
pub fn procspawn_spawn_join(n: usize) -> Sample {
    procspawn::spawn((), |()| ()).join().unwrap();
    let m = Meter::start();
    for _ in 0..n {
        procspawn::spawn((), |()| ()).join().unwrap();
    }
    m.stop(n as f64)
}

fn warm_procspawn_pool() -> procspawn::Pool {
    let pool = procspawn::Pool::new(2).unwrap();
    let hs: Vec<_> = (0..10u64).map(|i| pool.spawn(i, crate::workloads::square)).collect();
    for h in hs {
        h.join().unwrap();
    }
    pool
}

/// Most procspawn task handles outstanding at once: each holds its own IPC channel
/// (descriptors), so n handles at once run out of descriptors for large n.
const PROCSPAWN_OUTSTANDING: u64 = 1024;

/// procspawn's `Pool(2)`: tasks spawned, then each joined, at most [`PROCSPAWN_OUTSTANDING`]
/// outstanding at a time; per task.
pub fn procspawn_pool_async(n: usize) -> Sample {
    let pool = warm_procspawn_pool();
    let m = Meter::start();
    let mut next = 0u64;
    while next < n as u64 {
        let end = (next + PROCSPAWN_OUTSTANDING).min(n as u64);
        let hs: Vec<_> = (next..end).map(|i| pool.spawn(i, crate::workloads::square)).collect();
        for (i, h) in (next..end).zip(hs) {
            assert_eq!(h.join().unwrap(), i * i);
        }
        next = end;
    }
    let s = m.stop(n as f64);
    pool.shutdown();
    s
}

/// procspawn's `Pool(2)`: one task spawned and joined at a time; per task.
pub fn procspawn_pool_one(n: usize) -> Sample {
    let pool = warm_procspawn_pool();
    let m = Meter::start();
    for i in 0..n as u64 {
        assert_eq!(pool.spawn(i, crate::workloads::square).join().unwrap(), i * i);
    }
    let s = m.stop(n as f64);
    pool.shutdown();
    s
}

/// ipc-channel ping-pong of a u64 with a child process (hosted by procspawn); per round trip.
pub fn ipc_channel_roundtrip(n: usize) -> Sample {
    let (to_child, child_rx) = ipc::channel::<u64>().unwrap();
    let (child_tx, from_child) = ipc::channel::<u64>().unwrap();
    let child =
        procspawn::spawn((child_rx, child_tx), |(rx, tx): (ipc::IpcReceiver<u64>, ipc::IpcSender<u64>)| {
            while let Ok(v) = rx.recv() {
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
    for i in 0..100u64 {
        to_child.send(i).unwrap();
        assert_eq!(from_child.recv().unwrap(), i);
    }
    let m = Meter::start();
    for i in 0..n as u64 {
        to_child.send(i).unwrap();
        assert_eq!(from_child.recv().unwrap(), i);
    }
    let s = m.stop(n as f64);
    drop(to_child);
    child.join().unwrap();
    s
}

/// ipc-channel: one child process sends n u64 items to the parent; per item. The clock starts
/// before the child, as in the queue workloads.
pub fn ipc_channel_small(n: usize) -> Sample {
    let m = Meter::start();
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
    m.stop(n as f64)
}

/// ipc-channel's byte channel: one child sends the same 1 MiB buffer n times; per MiB.
pub fn ipc_channel_1mb(n: usize) -> Sample {
    let m = Meter::start();
    let (tx, rx) = ipc::bytes_channel().unwrap();
    let child = procspawn::spawn((tx, n), |(tx, n): (ipc::IpcBytesSender, usize)| {
        let blob = vec![b'x'; 1 << 20];
        for _ in 0..n {
            tx.send(&blob).unwrap();
        }
    });
    for _ in 0..n {
        assert_eq!(rx.recv().unwrap().len(), 1 << 20);
    }
    child.join().unwrap();
    m.stop(n as f64)
}

/// ipc-channel's `IpcSharedMemory`: one child sends n 1 MiB shared-memory regions (made with
/// `from_bytes`, the copy in) over a channel; the parent reads each through its mapping; per MiB.
pub fn ipc_shared_memory_1mb(n: usize) -> Sample {
    let m = Meter::start();
    let (tx, rx) = ipc::channel::<ipc::IpcSharedMemory>().unwrap();
    let child = procspawn::spawn((tx, n), |(tx, n): (ipc::IpcSender<ipc::IpcSharedMemory>, usize)| {
        let blob = vec![b'x'; 1 << 20];
        for _ in 0..n {
            tx.send(ipc::IpcSharedMemory::from_bytes(&blob)).unwrap();
        }
    });
    let mut sum = 0u64;
    for _ in 0..n {
        let shm = rx.recv().unwrap();
        assert_eq!(shm.len(), 1 << 20);
        sum += shm[shm.len() - 1] as u64;
    }
    assert_eq!(sum, n as u64 * b'x' as u64);
    child.join().unwrap();
    m.stop(n as f64)
}

#[cfg(feature = "iceoryx2")]
pub mod iceoryx2_rr {
    //! iceoryx2 request-response between two processes, both polling (iceoryx2 is a
    //! zero-copy, polling transport: the spinning round-trip peer). The poll loops yield to the
    //! scheduler after 64 empty polls so that on one core the other side can run.
    use crate::host::{Meter, Sample};
    use iceoryx2::prelude::*;

    fn service_name() -> String {
        format!("mp-bench/rr/{}", std::process::id())
    }

    fn poll_wait(i: &mut u32) {
        *i += 1;
        if *i == 64 {
            *i = 0;
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    fn server(name: String) {
        set_log_level(LogLevel::Error); // no notice that the default config is in use
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let service = node
            .service_builder(&name.as_str().try_into().unwrap())
            .request_response::<u64, u64>()
            .open_or_create()
            .unwrap();
        let server = service.server_builder().create().unwrap();
        let mut idle = 0;
        loop {
            match server.receive().unwrap() {
                Some(req) => {
                    let v = *req.payload();
                    if v == u64::MAX {
                        return;
                    }
                    let _ = req.send_copy(v); // the client may have dropped a resent request
                    idle = 0;
                }
                None => poll_wait(&mut idle),
            }
        }
    }

    /// Per round trip.
    pub fn roundtrip(n: usize) -> Sample {
        set_log_level(LogLevel::Error);
        let name = service_name();
        let node = NodeBuilder::new().create::<ipc::Service>().unwrap();
        let service = node
            .service_builder(&name.as_str().try_into().unwrap())
            .request_response::<u64, u64>()
            .open_or_create()
            .unwrap();
        let client = service.client_builder().create().unwrap();
        let child = procspawn::spawn(name.clone(), server);
        let rt = |i: u64| {
            let pending = client.send_copy(i).unwrap();
            let mut spins = 0;
            loop {
                if let Some(r) = pending.receive().unwrap() {
                    assert_eq!(*r.payload(), i);
                    return;
                }
                poll_wait(&mut spins);
            }
        };
        // A request sent before the server is up is lost: resend until one is answered.
        'up: loop {
            let pending = client.send_copy(0).unwrap();
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_millis(20) {
                if pending.receive().unwrap().is_some() {
                    break 'up;
                }
                std::thread::yield_now();
            }
        }
        for i in 0..100 {
            rt(i);
        }
        let m = Meter::start();
        for i in 0..n as u64 {
            rt(i);
        }
        let s = m.stop(n as f64);
        drop(client.send_copy(u64::MAX).unwrap());
        child.join().unwrap();
        s
    }
}
