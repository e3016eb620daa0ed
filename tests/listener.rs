//! `connection::Listener` and `Client` with an authkey, over unix sockets and TCP (ports
//! CPython's `_TestListener`, `_TestListenerClient`, `_TestConnection.test_auth` and
//! `test_deliver_challenge` / `test_answer_challenge` in `_test_multiprocessing.py`).

use multiproc::connection::{Address, Client, Listener};
use multiproc::{get_context, Connection, Error, Pipe, StartMethod};
use std::io::{Read, Write};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn echo_client(address: Address, key: Vec<u8>) -> String {
    let conn = Client::connect(&address, Some(&key)).unwrap();
    conn.send(&"ping".to_string()).unwrap();
    conn.recv::<String>().unwrap()
}

// CPython: _TestListenerClient.test_listener_client (both families, each start method).
#[test]
fn a_child_connects_with_the_authkey_under_each_start_method() {
    for method in METHODS {
        for address in [Address::local(), Address::tcp("127.0.0.1:0").unwrap()] {
            let listener = Listener::bind(address, Some(b"key")).unwrap();
            let h = get_context(Some(method))
                .spawn(echo_client, (listener.address().clone(), b"key".to_vec()))
                .unwrap();
            let conn = listener.accept().unwrap();
            let msg: String = conn.recv().unwrap();
            conn.send(&format!("{msg}-pong")).unwrap();
            assert_eq!(h.join().unwrap(), "ping-pong", "{method}");
        }
    }
}

fn connect_with(address: Address, key: Vec<u8>) -> bool {
    match Client::connect(&address, Some(&key)) {
        Ok(c) => c.recv::<u8>().is_ok(),
        Err(Error::Authentication(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

// CPython: test_auth / AuthenticationError; the listener keeps accepting after a refusal.
#[test]
fn a_wrong_authkey_is_refused_both_ways_and_the_listener_keeps_serving() {
    let listener = Listener::bind(Address::tcp("127.0.0.1:0").unwrap(), Some(b"right")).unwrap();
    let addr = listener.address().clone();
    let bad = multiproc::spawn(connect_with, (addr.clone(), b"wrong".to_vec())).unwrap();
    assert!(matches!(listener.accept(), Err(Error::Authentication(_))));
    assert!(!bad.join().unwrap());
    let good = multiproc::spawn(connect_with, (addr, b"right".to_vec())).unwrap();
    let conn = listener.accept().unwrap();
    conn.send(&1u8).unwrap();
    assert!(good.join().unwrap());
}

// Hostile peers during the handshake: garbage, a 4 GiB length, a truncated frame. Each is refused
// without the listener allocating for it, and the next client is served.
#[test]
fn garbage_and_oversized_handshakes_are_refused() {
    let listener = Listener::bind(Address::tcp("127.0.0.1:0").unwrap(), Some(b"key")).unwrap();
    let Address::Tcp(sa) = listener.address().clone() else { unreachable!() };
    for bytes in [
        &b"\x05\0\0\0\0\0\0\0hello"[..],
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..],
        &[40, 0, 0, 0, 0, 0, 0, 0, 1][..],
    ] {
        let mut s = std::net::TcpStream::connect(sa).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(listener.accept().is_err());
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the listener hung up
    }
    let address = listener.address().clone();
    let h = std::thread::spawn(move || echo_client(address, b"key".to_vec()));
    let conn = listener.accept().unwrap();
    let _: String = conn.recv().unwrap();
    conn.send(&"ok".to_string()).unwrap();
    assert_eq!(h.join().unwrap(), "ok");
}

// SCM_RIGHTS is unix-only: a handle sent over TCP is a clear error; over a unix listener it works.
#[test]
fn handles_travel_over_unix_listeners_but_not_tcp() {
    for (address, ok) in [(Address::tcp("127.0.0.1:0").unwrap(), false), (Address::local(), true)] {
        let listener = Listener::bind(address, None).unwrap();
        let client = Client::connect(listener.address(), None).unwrap();
        let server = listener.accept().unwrap();
        let (a, b) = Pipe::duplex().unwrap();
        let r = client.send(&a);
        assert_eq!(r.is_ok(), ok, "{r:?}");
        if ok {
            let a2: Connection = server.recv().unwrap();
            a2.send(&5u8).unwrap();
            assert_eq!(b.recv::<u8>().unwrap(), 5);
        } else {
            assert!(r.unwrap_err().to_string().contains("TCP"));
            client.send(&7u8).unwrap(); // the connection is still usable
            assert_eq!(server.recv::<u8>().unwrap(), 7);
        }
    }
}

// CPython: test_listener_address / unix path listeners remove their socket file on close.
#[test]
fn unix_path_listener_removes_its_file_and_close_wakes_accept() {
    let dir = std::env::temp_dir().join(format!("mp-listener-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let listener = std::sync::Arc::new(Listener::bind(path.clone(), Some(b"k")).unwrap());
    assert_eq!(listener.address(), &Address::Unix(path.clone()));
    assert!(path.exists());
    let l2 = listener.clone();
    let t = std::thread::spawn(move || l2.accept().map(|_| ()));
    std::thread::sleep(Duration::from_millis(50));
    listener.close();
    assert!(matches!(t.join().unwrap(), Err(Error::Closed(_))));
    assert!(!path.exists());
    std::fs::remove_dir(&dir).unwrap();
    assert!(Client::connect(&Address::Unix(path), Some(b"k")).is_err());
}

#[test]
fn addresses_parse_and_display() {
    assert_eq!("127.0.0.1:80".parse::<Address>().unwrap(), Address::Tcp("127.0.0.1:80".parse().unwrap()));
    assert_eq!("@name".parse::<Address>().unwrap(), Address::Abstract(b"name".to_vec()));
    assert_eq!("/tmp/x".parse::<Address>().unwrap(), Address::Unix("/tmp/x".into()));
    assert_eq!(Address::Abstract(b"n".to_vec()).to_string(), "@n");
    assert!(Address::local().is_unix());
}
