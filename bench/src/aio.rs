//! The async rows (bench feature `tokio`): this library's async forms on the small-item queue
//! and the pipe round trip, each placed right after its blocking row, with the async peers:
//! ipc-channel's async receiver (`IpcReceiver::to_stream`, feature `async`: a router thread
//! feeding a futures channel) and crossmist's tokio channels (see [`Word`] for why its items
//! are a newtype and its children hosted by procspawn). Every side's parent runs a
//! current-thread tokio runtime made outside the timed region; the children are the blocking
//! ones of the blocking rows (a producer, an echo), so the rows differ from the blocking ones
//! only in how the parent waits.

use crate::host::{Meter, Sample};
use crate::{Kind, Measure, Workload};
use ipc_channel::ipc;
use multiproc::{Connection, Pipe, Process, Queue, Stream};
use std::future::poll_fn;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn measure(f: fn(usize) -> Sample) -> Measure {
    Box::new(move |n| Some(f(n)))
}

/// The async rows, each with the name of the blocking row it goes after.
fn rows() -> Vec<(&'static str, Workload)> {
    let row =
        |name: &str, unit, n0, ours: fn(usize) -> Sample, peers: Vec<(&'static str, Measure)>, floor| {
            Workload {
                name: name.to_string(),
                unit,
                kind: Kind::Rate,
                n0,
                ours: measure(ours),
                python: false,
                peers,
                floor: Some(floor),
            }
        };
    vec![
        (
            "queue_small",
            row(
                "queue_small_async",
                "items/s",
                20_000,
                queue_small_async,
                vec![
                    ("ipc-channel to_stream", measure(ipc_channel_small_stream)),
                    ("crossmist tokio Receiver", measure(crossmist_small_tokio)),
                ],
                crate::FloorOf::SmallItems,
            ),
        ),
        (
            "pipe_roundtrip",
            row(
                "pipe_roundtrip_async",
                "roundtrips/s",
                5_000,
                pipe_roundtrip_async,
                vec![
                    ("ipc-channel to_stream", measure(ipc_channel_roundtrip_stream)),
                    ("crossmist tokio Duplex", measure(crossmist_roundtrip_tokio)),
                ],
                crate::FloorOf::RoundTrip,
            ),
        ),
    ]
}

/// Puts the async rows into `v`, each after its blocking row.
pub fn insert_rows(v: &mut Vec<Workload>) {
    for (after, w) in rows() {
        let at = v.iter().position(|x| x.name == after).map_or(v.len(), |i| i + 1);
        v.insert(at, w);
    }
}

/// One line per async row: its figure as a fraction of its blocking row's, from the same run.
pub fn versus_blocking(rows: &[crate::RowResult]) -> Vec<String> {
    let mut out = Vec::new();
    for (after, w) in self::rows() {
        let get = |name: &str| rows.iter().find(|r| r.name == name).and_then(|r| r.ours.as_ref());
        if let (Some(a), Some(b)) = (get(&w.name), get(after)) {
            out.push(format!(
                "{}: {:.2} x {} (the blocking form), medians {} vs {} {}",
                w.name,
                a.figure.median / b.figure.median,
                after,
                crate::table::fig(a.figure.median),
                crate::table::fig(b.figure.median),
                w.unit
            ));
        }
    }
    out
}

fn produce(q: Queue<u64>, n: usize) {
    for i in 0..n as u64 {
        q.put(i).unwrap();
    }
}

/// `queue_small` with the parent's gets awaited (`get_async`); per item.
pub fn queue_small_async(n: usize) -> Sample {
    let rt = runtime();
    let q = Queue::new().unwrap();
    let m = Meter::start();
    let p = Process::new(produce, (q.clone(), n)).start().unwrap();
    rt.block_on(async {
        for i in 0..n as u64 {
            assert_eq!(q.get_async().await.unwrap(), i);
        }
    });
    p.join().unwrap();
    m.stop(n as f64)
}

/// As the blocking row's echo: stops at `u64::MAX`.
fn echo(conn: Connection) {
    while let Ok(v) = conn.recv::<u64>() {
        if v == u64::MAX || conn.send(&v).is_err() {
            break;
        }
    }
}

/// `pipe_roundtrip` with the parent's send and receive awaited; per round trip.
pub fn pipe_roundtrip_async(n: usize) -> Sample {
    let rt = runtime();
    let (a, b) = Pipe::duplex().unwrap();
    let p = Process::new(echo, (b,)).start().unwrap();
    let s = rt.block_on(async {
        for i in 0..100u64 {
            a.send_async(&i).await.unwrap();
            assert_eq!(a.recv_async::<u64>().await.unwrap(), i);
        }
        let m = Meter::start();
        for i in 0..n as u64 {
            a.send_async(&i).await.unwrap();
            assert_eq!(a.recv_async::<u64>().await.unwrap(), i);
        }
        m.stop(n as f64)
    });
    a.send(&u64::MAX).unwrap();
    p.join().unwrap();
    s
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// ipc-channel: one child (hosted by procspawn) sends n u64 items; the parent takes them from
/// the receiver's stream; per item. The clock starts before the child, as in `queue_small`.
pub fn ipc_channel_small_stream(n: usize) -> Sample {
    let rt = runtime();
    let m = Meter::start();
    let (tx, rx) = ipc::channel::<u64>().unwrap();
    let child = procspawn::spawn((tx, n), |(tx, n): (ipc::IpcSender<u64>, usize)| {
        for i in 0..n as u64 {
            tx.send(i).unwrap();
        }
    });
    rt.block_on(async {
        let mut items = rx.to_stream();
        for i in 0..n as u64 {
            assert_eq!(next(&mut items).await.unwrap().unwrap(), i);
        }
    });
    child.join().unwrap();
    m.stop(n as f64)
}

/// ipc-channel ping-pong of a u64 with an echo child: the parent sends (ipc-channel's send does
/// not wait) and takes the reply from the reply receiver's stream; per round trip.
pub fn ipc_channel_roundtrip_stream(n: usize) -> Sample {
    let rt = runtime();
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
    let s = rt.block_on(async {
        let mut replies = from_child.to_stream();
        for i in 0..100u64 {
            to_child.send(i).unwrap();
            assert_eq!(next(&mut replies).await.unwrap().unwrap(), i);
        }
        let m = Meter::start();
        for i in 0..n as u64 {
            to_child.send(i).unwrap();
            assert_eq!(next(&mut replies).await.unwrap().unwrap(), i);
        }
        m.stop(n as f64)
    });
    drop(to_child);
    child.join().unwrap();
    s
}

/// A u64 as crossmist carries it here. crossmist 1.1.2 tells plain-old-data types (sent as
/// their bytes) by a probe (`implements!`, a specialization of arrays' `Clone` for `Copy`
/// types) that no longer works with current compilers: every integer it serializes then
/// reaches an `unreachable!()`. So the 8 bytes go through its documented extension point for
/// custom types, `NonTrivialObject`, written as its plain-old-data path writes them.
pub struct Word(u64);

// SAFETY: deserialization reads back exactly the 8 bytes serialization wrote; no handles.
unsafe impl crossmist::NonTrivialObject for Word {
    fn serialize_self_non_trivial(&self, s: &mut crossmist::Serializer) {
        s.write(&self.0.to_ne_bytes());
    }

    unsafe fn deserialize_self_non_trivial(d: &mut crossmist::Deserializer) -> std::io::Result<Self> {
        let mut b = [0u8; 8];
        d.read(&mut b);
        Ok(Word(u64::from_ne_bytes(b)))
    }
}

/// `end`'s socket made inheritable across `exec`, for a child to take over; the parent's copy
/// is closed once the child has started. crossmist's own `spawn` cannot be used: it serializes
/// its entry with a `usize` (the probe above). The child is hosted by procspawn, as the
/// ipc-channel peers are, and takes the socket back with `from_raw_fd`, which is how crossmist
/// itself hands handles to its children.
fn inheritable(end: impl IntoRawFd) -> OwnedFd {
    let fd = end.into_raw_fd();
    // SAFETY: `fd` was just given up by its owner and is owned here from now on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD with no flags on a descriptor this function owns.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    assert_eq!(r, 0, "clearing FD_CLOEXEC");
    owned
}

/// crossmist: one child sends n u64 items over a channel; the parent receives through the
/// channel's tokio form; per item. The clock starts before the child.
pub fn crossmist_small_tokio(n: usize) -> Sample {
    let rt = runtime();
    let m = Meter::start();
    let (tx, rx) = crossmist::channel::<Word>().unwrap();
    let tx = inheritable(tx);
    let child = procspawn::spawn((tx.as_raw_fd(), n as u64), |(fd, n): (i32, u64)| {
        // SAFETY: `fd` is the channel's sending socket, inherited, and used by nothing else here.
        let mut tx = unsafe { crossmist::Sender::<Word>::from_raw_fd(fd) };
        for i in 0..n {
            tx.send(&Word(i)).unwrap();
        }
    });
    drop(tx);
    rt.block_on(async {
        let mut rx = crossmist::tokio::Receiver::try_from(rx).unwrap();
        for i in 0..n as u64 {
            assert_eq!(rx.recv().await.unwrap().unwrap().0, i);
        }
    });
    child.join().unwrap();
    m.stop(n as f64)
}

/// crossmist ping-pong of a u64 with an echo child over a duplex channel, the parent's end in
/// its tokio form; per round trip.
pub fn crossmist_roundtrip_tokio(n: usize) -> Sample {
    let rt = runtime();
    let (ours, theirs) = crossmist::duplex::<Word, Word>().unwrap();
    let theirs = inheritable(theirs);
    let child = procspawn::spawn(theirs.as_raw_fd(), |fd: i32| {
        // SAFETY: `fd` is the duplex channel's other socket, inherited, used by nothing else.
        let mut chan = unsafe { crossmist::Duplex::<Word, Word>::from_raw_fd(fd) };
        while let Ok(Some(v)) = chan.recv() {
            if chan.send(&v).is_err() {
                break;
            }
        }
    });
    drop(theirs);
    let s = rt.block_on(async {
        let mut chan = crossmist::tokio::Duplex::try_from(ours).unwrap();
        for i in 0..100u64 {
            assert_eq!(chan.request(&Word(i)).await.unwrap().0, i);
        }
        let m = Meter::start();
        for i in 0..n as u64 {
            assert_eq!(chan.request(&Word(i)).await.unwrap().0, i);
        }
        m.stop(n as f64)
        // `chan` dropped here: the child sees the end of the channel.
    });
    child.join().unwrap();
    s
}
