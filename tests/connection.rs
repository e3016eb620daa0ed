//! Pipes and connections, in one process and across processes under every start method.
//! Test names mention the CPython test they port where one exists (`_TestConnection`).

use multiprocessing::{Connection, Error, Pipe, Process, StartMethod};
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

#[test]
fn values_and_bytes_round_trip() {
    // test_connection (send/recv, send_bytes/recv_bytes)
    let (a, b) = Pipe::new(true).unwrap();
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
    let (a, b) = Pipe::new(true).unwrap();
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
    let (a, b) = Pipe::new(true).unwrap();
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
    let (a, b) = Pipe::new(true).unwrap();
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
    let (reader, writer) = Pipe::new(false).unwrap();
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
    let (a, _b) = Pipe::new(true).unwrap();
    a.close();
    assert!(a.closed());
    assert!(matches!(a.send(&1u8), Err(Error::Closed(_))));
    assert!(matches!(a.recv::<u8>(), Err(Error::Closed(_))));
    assert!(matches!(a.poll(None), Err(Error::Closed(_))));
    a.close();
}

#[test]
fn an_oversized_message_is_refused_and_the_next_arrives() {
    let (a, b) = Pipe::new(true).unwrap();
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
    let (a, b) = Pipe::new(true).unwrap();
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
        let (parent, child) = Pipe::new(true).unwrap();
        let p = Process::new(echo_until_eof, (child,)).start_method(m).start().unwrap();
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
        let (parent, child) = Pipe::new(true).unwrap();
        let p = Process::new(exit_at_once, (child,)).start_method(m).start().unwrap();
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
        let (carrier_parent, carrier_child) = Pipe::new(true).unwrap();
        let p = Process::new(receive_a_connection, (carrier_child,)).start_method(m).start().unwrap();
        let (mine, theirs) = Pipe::new(true).unwrap();
        carrier_parent.send(&theirs).unwrap();
        drop(theirs);
        assert_eq!(mine.recv::<String>().unwrap(), "through a connection", "{m}");
        p.join().unwrap();
    }
}

#[test]
fn handles_cannot_be_serialized_by_other_serializers() {
    let (a, _b) = Pipe::new(true).unwrap();
    let err = postcard::to_allocvec(&a).unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[test]
fn wait_returns_the_ready_connections() {
    // test_wait
    let (a, b) = Pipe::new(true).unwrap();
    let (c, d) = Pipe::new(true).unwrap();
    let t = Instant::now();
    assert!(multiprocessing::connection::wait(&[&a, &c], Some(Duration::from_millis(100)))
        .unwrap()
        .is_empty());
    assert!(t.elapsed() >= Duration::from_millis(100));
    d.send(&1u8).unwrap();
    assert_eq!(multiprocessing::connection::wait(&[&a, &c], None).unwrap(), vec![1]);
    b.send(&1u8).unwrap();
    assert_eq!(multiprocessing::connection::wait(&[&a, &c], None).unwrap(), vec![0, 1]);
}

#[test]
fn close_from_another_thread_wakes_a_blocked_recv() {
    let (a, _b) = Pipe::new(true).unwrap();
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
