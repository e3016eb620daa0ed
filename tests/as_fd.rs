//! `AsFd` on handles: the descriptor a `JoinHandle` lends is its child's pidfd, usable with plain
//! `poll(2)` and duplicable with `BorrowedFd::try_clone_to_owned`, under every start method.

use multiproc::{get_context, Connection, Pipe, StartMethod};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

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
