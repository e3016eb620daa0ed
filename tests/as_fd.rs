//! `AsFd` on handles. The descriptor a `JoinHandle` lends is its child's pidfd, usable with plain
//! `poll(2)` and duplicable with `BorrowedFd::try_clone_to_owned`, under every start method. A
//! `Connection` lends its socket and a `Listener` its listening socket; both stay valid across
//! `close(&self)`.

use multiproc::{get_context, Connection, Pipe, StartMethod};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

/// One test at a time: a `Fork` child of one test would inherit another's listening socket
/// (listeners are not closed in forked children) and keep its address taken.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `fd` polls readable within `ms` milliseconds.
fn readable(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && pfd.revents & libc::POLLIN != 0
}

fn wait_for_word(conn: Connection) -> String {
    conn.recv::<String>().unwrap()
}

#[test]
fn join_handle_fd_is_readable_exactly_when_the_child_has_ended() {
    let _g = serial();
    for m in METHODS {
        let (here, there) = Pipe::duplex().unwrap();
        let h = get_context(Some(m)).spawn(wait_for_word, (there,)).unwrap();
        assert_eq!(h.as_fd().as_raw_fd(), h.as_raw_fd(), "{m}");
        assert_eq!(h.as_raw_fd(), h.process().sentinel().unwrap().as_raw_fd(), "{m}");
        let dup = h.as_fd().try_clone_to_owned().unwrap();
        assert_ne!(dup.as_raw_fd(), h.as_raw_fd(), "{m}");
        // the child blocks on its pipe: its pidfd is not readable yet
        assert!(!readable(h.as_fd(), 0), "{m}");
        assert!(!readable(dup.as_fd(), 0), "{m}");
        here.send(&"done".to_string()).unwrap();
        assert!(readable(h.as_fd(), 10_000), "{m}: the child did not end");
        let ready = multiproc::connection::wait(&[&h], Some(std::time::Duration::ZERO)).unwrap();
        assert_eq!(ready, vec![0], "{m}");
        // the duplicate outlives the handle and still tells of the same child
        assert_eq!(h.join().unwrap(), "done", "{m}");
        assert!(readable(dup.as_fd(), 0), "{m}");
    }
}

fn send_when_told(conn: Connection) {
    let word: String = conn.recv().unwrap();
    conn.send(&format!("{word} back")).unwrap();
}

/// A pipe's end passes small messages through shared memory; once `poll` has marked it asleep
/// (`poll(Some(ZERO))` said no), its descriptor turns readable for the next message from
/// another process, as the `AsFd` doc says.
#[test]
fn connection_fd_turns_readable_for_a_message_once_poll_said_none_was_there() {
    let _g = serial();
    for m in METHODS {
        let (here, there) = Pipe::duplex().unwrap();
        let p = get_context(Some(m)).spawn(send_when_told, (there,)).unwrap();
        assert_eq!(here.as_fd().as_raw_fd(), here.fileno(), "{m}");
        assert!(!here.poll(Some(std::time::Duration::ZERO)).unwrap(), "{m}");
        assert!(!readable(here.as_fd(), 0), "{m}: nothing sent yet");
        here.send(&"ping".to_string()).unwrap();
        assert!(readable(here.as_fd(), 10_000), "{m}: the reply did not make the descriptor readable");
        assert_eq!(here.recv::<String>().unwrap(), "ping back", "{m}");
        p.join().unwrap();
        // The child is gone: end-of-file makes it readable too.
        assert!(here.poll(Some(std::time::Duration::from_secs(10))).unwrap(), "{m}");
        assert!(readable(here.as_fd(), 0), "{m}");
    }
}

/// The child's end reports end-of-file: what a peer sees when this side's socket goes.
fn sees_eof(conn: Connection) -> bool {
    matches!(conn.recv::<String>(), Err(multiproc::Error::Eof))
}

/// `close(&self)` may run while a `BorrowedFd` from `as_fd` is lent: the socket is released at
/// once (the peer, in another process, sees end-of-file while this connection still exists),
/// and the lent number stays open on a dead socket, which no other file can take, until drop.
#[test]
fn a_borrowed_fd_stays_valid_across_close_and_the_peer_sees_end_of_file() {
    let _g = serial();
    for m in METHODS {
        let (here, there) = Pipe::duplex().unwrap();
        let p = get_context(Some(m)).spawn(sees_eof, (there,)).unwrap();
        let lent = here.as_fd();
        let raw = lent.as_raw_fd();
        assert!(!readable(lent, 0), "{m}");
        here.close();
        assert!(p.join().unwrap(), "{m}: the peer did not see end-of-file");
        assert!(here.closed() && here.fileno() == -1, "{m}");
        assert_eq!(here.as_fd().as_raw_fd(), raw, "{m}: the number is the connection's until drop");
        // SAFETY: fcntl(F_GETFD) on a borrowed descriptor only reads its flags.
        let flags = unsafe { libc::fcntl(lent.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0, "{m}: the lent number is open, close-on-exec");
        assert!(readable(lent, 0), "{m}: the dead socket reads end-of-file");
        let other = std::fs::File::open("/dev/null").unwrap();
        assert_ne!(other.as_raw_fd(), raw, "{m}: nothing else took the number");
        assert!(matches!(here.recv::<String>(), Err(multiproc::Error::Closed(_))), "{m}");
        assert!(matches!(here.send(&1u8), Err(multiproc::Error::Closed(_))), "{m}");
        let dup = lent.try_clone_to_owned().unwrap();
        drop(here);
        assert!(readable(dup.as_fd(), 0), "{m}: a duplicate of the dead socket outlives the connection");
    }
}

/// A listener's descriptor is readable when a peer waits to be accepted, which also makes it a
/// `Waitable`; after `close(&self)` the address is free at once while the lent number stays
/// open on a dead socket.
#[test]
fn listener_fd_is_readable_for_a_waiting_peer_and_survives_close() {
    let _g = serial();
    use multiproc::connection::{Address, Client, Listener};
    let address = Address::local();
    let listener = Listener::bind(address.clone(), None).unwrap();
    let lent = listener.as_fd();
    let raw = listener.as_raw_fd();
    assert_eq!(lent.as_raw_fd(), raw);
    assert!(!readable(lent, 0));
    let ready = multiproc::connection::wait(&[&listener], Some(std::time::Duration::ZERO)).unwrap();
    assert!(ready.is_empty());
    let client = Client::connect(&address, None).unwrap();
    assert!(readable(lent, 10_000), "a connecting peer makes it readable");
    let ready = multiproc::connection::wait(&[&listener], Some(std::time::Duration::from_secs(10))).unwrap();
    assert_eq!(ready, vec![0]);
    let served = listener.accept().unwrap();
    client.send(&7u32).unwrap();
    assert_eq!(served.recv::<u32>().unwrap(), 7);

    listener.close();
    assert_eq!(listener.as_raw_fd(), raw);
    // SAFETY: fcntl(F_GETFD) on a borrowed descriptor only reads its flags.
    assert!(unsafe { libc::fcntl(lent.as_raw_fd(), libc::F_GETFD) } >= 0, "the lent number is open");
    assert!(readable(lent, 0), "the dead socket polls hung up");
    assert!(matches!(listener.accept(), Err(multiproc::Error::Closed(_))));
    let again = Listener::bind(address.clone(), None).expect("the address is free once closed");
    assert_ne!(again.as_raw_fd(), raw);
    drop(listener);
    let c2 = Client::connect(&address, None).unwrap();
    let s2 = again.accept().unwrap();
    c2.send(&8u32).unwrap();
    assert_eq!(s2.recv::<u32>().unwrap(), 8);
}
