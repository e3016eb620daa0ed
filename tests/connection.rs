//! Pipes and connections, in one process and across processes under every start method.
//! Test names mention the CPython test they port where one exists (`_TestConnection`).

use multiproc::{Connection, Error, Pipe, Process, StartMethod};
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

#[test]
fn values_and_bytes_round_trip() {
    // test_connection (send/recv, send_bytes/recv_bytes)
    let (a, b) = Pipe::duplex().unwrap();
    a.send(&vec![1u32, 2, 3]).unwrap();
    assert_eq!(b.recv::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    b.send(&("x".to_string(), -4i64)).unwrap();
    assert_eq!(a.recv::<(String, i64)>().unwrap(), ("x".to_string(), -4));
    a.send_bytes(b"hello").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"hello");
    a.send_bytes(&[]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
}

#[test]
fn recv_bytes_into_a_short_buffer_hands_the_message_back() {
    // test_connection (BufferTooShort)
    let (a, b) = Pipe::duplex().unwrap();
    a.send_bytes(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    match b.recv_bytes_into(&mut small) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"0123456789"),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    a.send_bytes(b"abc").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");
}

#[test]
fn poll_waits_for_the_timeout_and_sees_data() {
    // test_connection (poll)
    let (a, b) = Pipe::duplex().unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    let t = Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert!(t.elapsed() < Duration::from_secs(2));
    a.send(&1u8).unwrap();
    assert!(b.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 1);
}

#[test]
fn a_closed_peer_is_end_of_file() {
    // test_connection (EOFError)
    let (a, b) = Pipe::duplex().unwrap();
    a.send(&5u8).unwrap();
    drop(a);
    assert_eq!(b.recv::<u8>().unwrap(), 5, "queued messages are still delivered");
    assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
    assert!(b.poll(Some(Duration::ZERO)).unwrap(), "end-of-file polls ready, as in Python");
    assert!(matches!(b.send(&1u8), Err(Error::Eof)));
}

#[test]
fn a_one_way_pipe_refuses_the_wrong_direction() {
    // test_duplex_false
    let (reader, writer) = Pipe::one_way().unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(writer.writable() && !writer.readable());
    assert!(matches!(reader.send(&1u8), Err(Error::InvalidState(_))));
    assert!(matches!(writer.recv::<u8>(), Err(Error::InvalidState(_))));
    writer.send(&"one way").unwrap();
    assert_eq!(reader.recv::<String>().unwrap(), "one way");
}

#[test]
fn a_closed_connection_reports_closed() {
    // test_closed_connection
    let (a, _b) = Pipe::duplex().unwrap();
    a.close();
    assert!(a.closed());
    assert!(matches!(a.send(&1u8), Err(Error::Closed(_))));
    assert!(matches!(a.recv::<u8>(), Err(Error::Closed(_))));
    assert!(matches!(a.poll(None), Err(Error::Closed(_))));
    a.close();
}

#[test]
fn an_oversized_message_is_refused_and_the_next_arrives() {
    let (a, b) = Pipe::duplex().unwrap();
    b.set_max_message_size(1024);
    let big = vec![7u8; 100_000];
    let sender = std::thread::spawn(move || {
        a.send_bytes(&big).unwrap();
        a.send(&"after").unwrap();
        a
    });
    match b.recv_bytes() {
        Err(Error::MessageTooLarge { len, max }) => assert_eq!((len, max), (100_000, 1024)),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(b.recv::<String>().unwrap(), "after");
    drop(sender.join().unwrap());
}

#[test]
fn a_value_of_the_wrong_type_is_a_decode_error() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send(&"not a number at all").unwrap();
    assert!(matches!(b.recv::<(u64, u64, u64, u64)>(), Err(Error::Decode(_))));
    a.send(&3u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 3, "the connection stays usable");
}

fn echo_until_eof(conn: Connection) {
    while let Ok(bytes) = conn.recv_bytes() {
        conn.send_bytes(&bytes).unwrap();
    }
}

#[test]
fn large_messages_cross_processes_both_ways() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(echo_until_eof, (child,)).start_method(m).start().unwrap();
        let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let sender = std::thread::scope(|s| {
            let h = s.spawn(|| parent.send_bytes(&big));
            let back = parent.recv_bytes().unwrap();
            assert!(back == big, "{m}: 8 MiB echoed intact");
            h.join().unwrap()
        });
        sender.unwrap();
        drop(parent);
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

fn exit_at_once(_conn: Connection) {}

#[test]
fn a_child_that_exits_is_end_of_file_not_a_hang() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(exit_at_once, (child,)).start_method(m).start().unwrap();
        let t = Instant::now();
        assert!(matches!(parent.recv::<u8>(), Err(Error::Eof)), "{m}");
        assert!(t.elapsed() < Duration::from_secs(5));
        p.join().unwrap();
    }
}

fn receive_a_connection(carrier: Connection) {
    let inner: Connection = carrier.recv().unwrap();
    inner.send(&"through a connection").unwrap();
}

#[test]
fn a_connection_travels_through_a_connection() {
    // test_fd_transfer
    for m in METHODS {
        let (carrier_parent, carrier_child) = Pipe::duplex().unwrap();
        let p = Process::builder(receive_a_connection, (carrier_child,)).start_method(m).start().unwrap();
        let (mine, theirs) = Pipe::duplex().unwrap();
        carrier_parent.send(&theirs).unwrap();
        drop(theirs);
        assert_eq!(mine.recv::<String>().unwrap(), "through a connection", "{m}");
        p.join().unwrap();
    }
}

#[test]
fn handles_cannot_be_serialized_by_other_serializers() {
    let (a, _b) = Pipe::duplex().unwrap();
    let err = postcard::to_allocvec(&a).unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[test]
fn wait_returns_the_ready_connections() {
    // test_wait
    let (a, b) = Pipe::duplex().unwrap();
    let (c, d) = Pipe::duplex().unwrap();
    let t = Instant::now();
    assert!(multiproc::connection::wait(&[&a, &c], Some(Duration::from_millis(100))).unwrap().is_empty());
    assert!(t.elapsed() >= Duration::from_millis(100));
    d.send(&1u8).unwrap();
    assert_eq!(multiproc::connection::wait(&[&a, &c], None).unwrap(), vec![1]);
    b.send(&1u8).unwrap();
    assert_eq!(multiproc::connection::wait(&[&a, &c], None).unwrap(), vec![0, 1]);
}

#[test]
fn close_from_another_thread_wakes_a_blocked_recv() {
    let (a, _b) = Pipe::duplex().unwrap();
    let a = std::sync::Arc::new(a);
    let a2 = a.clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        a2.recv::<u8>()
    });
    started_rx.recv().unwrap();
    // The receiver may not be inside recv yet: retry the close until the thread has returned.
    let t = Instant::now();
    while !h.is_finished() {
        a.close();
        assert!(t.elapsed() < Duration::from_secs(5), "close did not wake the receiver");
        std::thread::yield_now();
    }
    assert!(matches!(h.join().unwrap(), Err(Error::Eof) | Err(Error::Closed(_))));
}

// ---- the shared-memory transport of a pipe -----------------------------------------------------

/// A message whose size and contents follow from its number: small ones travel in shared
/// memory, large ones (over 32 KiB) through the socket.
fn numbered(i: u64) -> Vec<u8> {
    let len = match i % 7 {
        0 => 0,
        1 => 8,
        2 => 1000,
        3 => 32 * 1024,
        4 => 32 * 1024 + 1,
        5 => 200_000,
        _ => (i * 7919 % 20_000) as usize,
    };
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn echo_numbered(conn: Connection, n: u64) {
    for _ in 0..n {
        let (i, bytes): (u64, multiproc::Bytes) = conn.recv().unwrap();
        assert_eq!(bytes.0, numbered(i), "message {i} intact");
        conn.send(&(i, bytes)).unwrap();
    }
}

#[test]
fn mixed_sizes_keep_their_order_through_ring_and_socket() {
    // Small messages go through the ring, large ones through the socket: the order must hold
    // across both, with the ring wrapping many times and the sender waiting for room.
    let n = 600;
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(echo_numbered, (child, n)).start_method(m).start().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..n {
                    parent.send(&(i, multiproc::Bytes(numbered(i)))).unwrap();
                }
            });
            for i in 0..n {
                let (j, bytes): (u64, multiproc::Bytes) = parent.recv().unwrap();
                assert_eq!(j, i, "{m}: in order");
                assert!(bytes.0 == numbered(i), "{m}: message {i} intact");
            }
        });
        assert_eq!(p.join().unwrap().exitcode(), 0, "{m}");
    }
}

fn send_handles_between_values(conn: Connection) {
    for i in 0..20u32 {
        conn.send(&i).unwrap();
        let (x, y) = Pipe::duplex().unwrap();
        x.send(&(i * 10)).unwrap();
        conn.send(&y).unwrap();
    }
}

#[test]
fn handles_and_values_arrive_in_the_order_sent() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(send_handles_between_values, (child,)).start_method(m).start().unwrap();
        for i in 0..20u32 {
            assert_eq!(parent.recv::<u32>().unwrap(), i, "{m}");
            let inner: Connection = parent.recv().unwrap();
            assert_eq!(inner.recv::<u32>().unwrap(), i * 10, "{m}");
        }
        assert!(matches!(parent.recv::<u32>(), Err(Error::Eof)), "{m}");
        assert_eq!(p.join().unwrap().exitcode(), 0);
    }
}

fn take_one_then_hang(conn: Connection) {
    let _: u8 = conn.recv().unwrap();
    conn.send(&1u8).unwrap();
    // Stays alive, not reading, until killed.
    let (_r, _w) = Pipe::duplex().unwrap();
    let _ = _r.recv::<u8>();
}

#[test]
fn a_sender_learns_that_a_killed_receiver_is_gone() {
    // The killed receiver was last seen reading, so no doorbell is rung: the sender fills the
    // ring and must then notice the dead peer instead of waiting for room forever.
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(take_one_then_hang, (child,)).start_method(m).start().unwrap();
        parent.send(&0u8).unwrap();
        assert_eq!(parent.recv::<u8>().unwrap(), 1);
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        let chunk = vec![0u8; 1000];
        let err = loop {
            if let Err(e) = parent.send_bytes(&chunk) {
                break e;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "{m}: send to a dead peer kept succeeding");
        };
        assert!(matches!(err, Error::Eof), "{m}: {err:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{m}: took {:?}", t.elapsed());
    }
}

#[test]
fn a_consumed_message_leaves_no_stale_readiness() {
    // The receiver was not reading when the message came, so the sender rang the doorbell;
    // receiving the message must also take the doorbell, or poll and wait would report a
    // message that is not there.
    let (a, b) = Pipe::duplex().unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    for i in 0..5u32 {
        a.send(&i).unwrap();
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv::<u32>().unwrap(), i);
        assert!(!b.poll(Some(Duration::from_millis(20))).unwrap(), "round {i}");
        assert!(multiproc::connection::wait(&[&b], Some(Duration::from_millis(20))).unwrap().is_empty());
    }
}

/// A second handle on the same end (its descriptors duplicated by passing it through a pipe).
fn copy_of(conn: &Connection) -> Connection {
    let (a, b) = Pipe::duplex().unwrap();
    a.send(conn).unwrap();
    b.recv().unwrap()
}

fn receive_until_none(conn: Connection) -> Vec<u64> {
    let mut got = Vec::new();
    while let Some(i) = conn.recv::<Option<u64>>().unwrap() {
        got.push(i);
    }
    got
}

#[test]
fn two_processes_sharing_one_end_each_get_whole_messages() {
    // Python warns that two readers of one end may interleave; here each message still goes
    // whole to exactly one of them.
    for m in METHODS {
        let (reading, writing) = Pipe::one_way().unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| multiproc::get_context(Some(m)).spawn(receive_until_none, (copy_of(&reading),)))
            .collect();
        drop(reading);
        let n = 3000u64;
        for i in 0..n {
            writing.send(&Some(i)).unwrap();
        }
        writing.send(&None::<u64>).unwrap();
        writing.send(&None::<u64>).unwrap();
        let mut all: Vec<u64> = readers.into_iter().flat_map(|h| h.unwrap().join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "{m}: each message exactly once");
    }
}

fn send_then_exit_without_closing(conn: Connection) {
    conn.send(&7u8).unwrap();
    std::mem::forget(conn);
    std::process::exit(0);
}

/// A receiver asleep on its lane learns that a peer which exited without closing (no `Drop`
/// ran) is gone from the socket, within a bound.
#[test]
fn a_peer_that_exits_without_closing_is_end_of_file_soon() {
    for m in METHODS {
        let (parent, child) = Pipe::duplex().unwrap();
        let p = Process::builder(send_then_exit_without_closing, (child,)).start_method(m).start().unwrap();
        assert_eq!(parent.recv::<u8>().unwrap(), 7, "{m}");
        let t = Instant::now();
        assert!(matches!(parent.recv::<u8>(), Err(Error::Eof)), "{m}");
        assert!(t.elapsed() < Duration::from_millis(1000), "{m}: {:?}", t.elapsed());
        p.join().unwrap();
    }
}

fn echo_n(conn: Connection, n: u32) {
    for _ in 0..n {
        let v: u32 = conn.recv().unwrap();
        conn.send(&v).unwrap();
    }
}

/// Pins this thread to the first CPU it may run on; returns the mask to put back with
/// [`restore_affinity`]. Children started meanwhile inherit the one-CPU mask.
fn pin_to_one_cpu() -> libc::cpu_set_t {
    // SAFETY: plain affinity calls on this thread, with cpu_set_t values we own.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        let first = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &old)).unwrap();
        libc::CPU_SET(first, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
        old
    }
}

fn restore_affinity(old: &libc::cpu_set_t) {
    // SAFETY: as in `pin_to_one_cpu`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
}

/// Both ends on one CPU (where the wait core never spins: every message wakes a parked
/// receiver) and on all CPUs: a ping-pong where a lost wake-up would stall a side for a whole
/// sleep slice. 20,000 round trips take well under a second here; the bound allows for a busy
/// machine, not for lost wake-ups by the hundred.
#[test]
fn a_ping_pong_loses_no_wake_up_on_one_cpu_or_many() {
    for one_cpu in [true, false] {
        let old = one_cpu.then(pin_to_one_cpu);
        let took = round_trips(20_000);
        if let Some(old) = &old {
            restore_affinity(old);
        }
        assert!(took < Duration::from_secs(20), "one cpu: {one_cpu}: {took:?}");
    }
}

/// Spins until killed: other work on the CPU.
fn busy_loop() {
    loop {
        std::hint::spin_loop();
    }
}

/// Starts an echo child and times `n` round trips with it. Spawn: the child works out its
/// usable CPUs afresh, under the mask it inherits.
fn round_trips(n: u32) -> Duration {
    let (a, b) = Pipe::duplex().unwrap();
    let p = Process::builder(echo_n, (b, n)).start_method(StartMethod::Spawn).start().unwrap();
    let t = Instant::now();
    for i in 0..n {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u32>().unwrap(), i);
    }
    let took = t.elapsed();
    p.join().unwrap();
    took
}

/// [`round_trips`] in a child of its own; sends the milliseconds back.
fn time_round_trips(report: Connection, n: u32) {
    report.send(&(round_trips(n).as_millis() as u64)).unwrap();
}

/// Both ends of a ping-pong on one CPU that a busy loop shares (a container limited to one
/// CPU on a busy host). A waiter that yields the CPU hands it to the busy loop for its whole
/// time slice, and the scheduler then stops letting the pair's wake-ups preempt it: every
/// round trip lasts milliseconds (under 1,000 a second here). Sleeping at once, the pair does
/// tens of thousands a second; the bound allows for a busy machine.
#[test]
fn a_ping_pong_on_one_cpu_shared_with_a_busy_loop_is_not_held_up_by_it() {
    let old = pin_to_one_cpu();
    // Spawn: each child works out its usable CPUs afresh, under the mask it inherits.
    let busy = Process::builder(busy_loop, ()).start_method(StartMethod::Spawn).start().unwrap();
    let (results, report) = Pipe::one_way().unwrap();
    let n = 5_000;
    let timer = Process::builder(time_round_trips, (report, n)).start_method(StartMethod::Spawn).start();
    restore_affinity(&old);
    let timer = timer.unwrap();
    let took_ms = results.recv::<u64>();
    timer.join().unwrap();
    busy.kill().unwrap();
    busy.join().unwrap();
    let took_ms = took_ms.unwrap();
    assert!(took_ms < 2_500, "{n} round trips beside a busy loop took {took_ms} ms");
}

fn echo_bytes_n(conn: Connection, n: u32) {
    for _ in 0..n {
        let v = conn.recv_bytes().unwrap();
        conn.send_bytes(&v).unwrap();
    }
}

/// A message too large for the lane goes through the socket behind a marker in the lane: a
/// receiver parked on the lane must be woken for it at once, not when its sleep slice ends.
/// Both ends on one CPU, where receivers park on the lane (a receiver's yield before parking
/// often finds the message first; the bound catches a marker that never wakes a parked one).
#[test]
fn a_parked_receiver_is_woken_for_a_large_message() {
    let old = pin_to_one_cpu();
    let n = 300;
    let took = {
        let (a, b) = Pipe::duplex().unwrap();
        // Spawn: the child works out its usable CPUs afresh, under the mask it inherits.
        let p = Process::builder(echo_bytes_n, (b, n)).start_method(StartMethod::Spawn).start().unwrap();
        let msg = vec![0x5a; 40 << 10];
        a.send_bytes(&msg).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), msg);
        let t = Instant::now();
        for _ in 1..n {
            a.send_bytes(&msg).unwrap();
            assert_eq!(a.recv_bytes().unwrap().len(), msg.len());
        }
        let took = t.elapsed();
        p.join().unwrap();
        took
    };
    restore_affinity(&old);
    // Well under a millisecond a round trip; a receiver left asleep until its first 1 ms slice
    // ends takes longer than that each way.
    assert!(took < Duration::from_millis(450), "{n} round trips of 40 KiB took {took:?}");
}

/// A message whose length and bytes follow from its number, so that a receiver can tell a torn
/// or misplaced one: most travel in the shared ring, every fifth through the socket.
fn checked(i: u64) -> Vec<u8> {
    let len = match i % 5 {
        0 => 0,
        1 => 16,
        2 => 300,
        3 => 5000,
        _ => 40_000,
    };
    (0..len).map(|k| (i.wrapping_mul(131) as usize).wrapping_add(k * 7) as u8).collect()
}

/// Polls (with `poll` and `connection::wait` in turn, with short timeouts so that it often finds
/// the ring empty while another process is receiving) and receives until the end; returns the
/// numbers received and how many messages were torn or unreadable.
fn poll_then_receive(conn: Connection) -> (Vec<u64>, u32) {
    let (mut got, mut bad) = (Vec::new(), 0u32);
    for round in 0u64.. {
        let ready = if round % 2 == 0 {
            conn.poll(Some(Duration::from_millis(1)))
        } else {
            multiproc::connection::wait(&[&conn], Some(Duration::from_millis(1))).map(|r| !r.is_empty())
        };
        match ready {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => {
                bad += 1;
                break;
            }
        }
        match conn.recv::<Option<(u64, multiproc::Bytes)>>() {
            Ok(Some((i, bytes))) => {
                if bytes.0 != checked(i) {
                    bad += 1;
                }
                got.push(i);
            }
            Ok(None) | Err(Error::Eof) => break,
            Err(_) => {
                bad += 1;
                break;
            }
        }
    }
    (got, bad)
}

#[test]
fn three_processes_polling_one_shared_end_each_get_every_message_once_whole() {
    // A poll or wait that found another process receiving must leave that receiver's lock alone:
    // otherwise a third process receives alongside it, and messages arrive twice or torn.
    let n = 6000u64;
    for m in METHODS {
        for run in 0..2 {
            let (reading, writing) = Pipe::one_way().unwrap();
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    multiproc::get_context(Some(m)).spawn(poll_then_receive, (copy_of(&reading),)).unwrap()
                })
                .collect();
            drop(reading);
            // The writer runs beside: if the readers wedge, it ends once they are killed.
            let writer = std::thread::spawn(move || {
                let sent = (0..n).try_for_each(|i| writing.send(&Some((i, multiproc::Bytes(checked(i))))));
                let ends = (0..3).try_for_each(|_| writing.send(&None::<(u64, multiproc::Bytes)>));
                sent.and(ends).is_ok()
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut all, mut bad, mut hung) = (Vec::new(), 0, 0);
            for h in readers {
                match h.join_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(r) => {
                        let (got, b) = r.unwrap();
                        all.extend(got);
                        bad += b;
                    }
                    Err(h) => {
                        h.process().kill().unwrap();
                        let _ = h.process().join();
                        hung += 1;
                    }
                }
            }
            let wrote_all = writer.join().unwrap();
            assert_eq!(hung, 0, "{m} run {run}: {hung} readers wedged ({} messages received)", all.len());
            assert!(wrote_all, "{m} run {run}");
            let received = all.len();
            all.sort_unstable();
            all.dedup();
            assert_eq!(bad, 0, "{m} run {run}: {bad} torn or unreadable messages");
            assert_eq!(received as u64, n, "{m} run {run}: {received} messages received for {n} sent");
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "{m} run {run}: each message exactly once");
        }
    }
}
