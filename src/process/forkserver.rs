//! The fork server: a single-threaded process, started by re-exec, that forks children on request.
//!
//! Forking from it is cheap (a small, quiet address space) and safe (one thread, no locks held by
//! others). Each child is created with `CLONE_PARENT`, so it is a child of the *user's* process,
//! not of the server: the user's process reaps it, opens its pidfd and reads its exit status
//! directly, as for any other start method. The server exits when its control socket closes
//! (the owner dropped it or died) and, failing that, by `PR_SET_PDEATHSIG`.
//!
//! Protocol on the control socket, one exchange at a time: the owner sends a frame holding
//! `Boot::Run` + encoded arguments, with the argument descriptors (and the result socket)
//! attached; the server answers with a frame holding `Result<pid, error text>`.

use super::child::{self, Boot};
use super::state::FORKSERVER;
use crate::error::{Error, Result};
use crate::sys::{self, Forked};
use crate::wire::frame;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The owner's side of a running fork server.
pub(crate) struct Client {
    sock: OwnedFd,
    pidfd: OwnedFd,
    owner: i32,
}

impl Client {
    fn start() -> Result<Client> {
        let (ours, theirs) = sys::socketpair().map_err(Error::io("creating the fork server socket"))?;
        let started = super::launch::exec_child(theirs)?;
        let mut msg = frame::start_frame();
        crate::wire::encode(&Boot::Forkserver { parent_pid: sys::getpid() }, &mut msg)?;
        frame::send(ours.as_fd(), &mut msg, &[])?;
        Ok(Client { sock: ours, pidfd: started.pidfd, owner: sys::getpid() })
    }

    fn round_trip(&self, msg: &mut [u8], fds: &[RawFd]) -> Result<i32> {
        frame::send(self.sock.as_fd(), msg, fds)?;
        let (reply, _) = frame::recv(self.sock.as_fd(), 4096)?;
        let reply: std::result::Result<i32, String> =
            postcard::from_bytes(&reply).map_err(|e| Error::Decode(e.to_string()))?;
        reply.map_err(|e| Error::invalid(format!("the fork server could not fork: {e}")))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if sys::getpid() != self.owner {
            // A forked child's copy. It shares the socket with the owner, so it must only close
            // its descriptor: a shutdown would end the owner's connection to the server too.
            return;
        }
        let _ = sys::shutdown_write(self.sock.as_fd());
        let deadline = Some(Instant::now() + Duration::from_secs(1));
        if let Ok(None) = sys::poll_readable(&[self.pidfd.as_fd()], deadline) {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        }
        let _ = sys::waitid_pidfd(self.pidfd.as_fd(), true);
    }
}

/// Asks this process's fork server (starting it on first use, restarting it once if it died)
/// to fork a child for `msg`; returns the child's pid.
pub(crate) fn request(msg: &mut [u8], fds: &[RawFd]) -> Result<i32> {
    for attempt in 0..2 {
        let mut guard = FORKSERVER.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // Never hold the lock while waiting for the launcher thread (see launcher.rs).
            drop(guard);
            let client = super::launcher::on_stable_thread(Client::start)?;
            guard = FORKSERVER.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(client);
            }
        }
        let client = guard.as_ref().expect("fork server present");
        match client.round_trip(msg, fds) {
            Ok(pid) => return Ok(pid),
            Err(Error::Eof) | Err(Error::Io { .. }) if attempt == 0 => {
                log::warn!("multiprocessing: the fork server died; starting a new one");
                guard.take();
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

/// Stops this process's fork server, if any (at exit). Never blocks on a busy lock.
pub(crate) fn shutdown() {
    if let Ok(mut guard) = FORKSERVER.try_lock() {
        guard.take();
    }
}

/// The server loop. Never returns.
pub(crate) fn serve(sock: OwnedFd, parent_pid: i32) -> ! {
    sys::die_with_parent(parent_pid);
    loop {
        let (bytes, mut fds) = match frame::recv(sock.as_fd(), usize::MAX) {
            Ok(msg) => msg,
            Err(_) => sys::exit_now(0),
        };
        let (req, payload) = match postcard::take_from_bytes::<Boot>(&bytes) {
            Ok((Boot::Run(req), payload)) => (req, payload),
            _ => sys::exit_now(1),
        };
        let reply: std::result::Result<i32, String> = match sys::fork_as_sibling() {
            Ok(Forked::Child) => {
                drop(sock);
                sys::die_with_parent(req.parent_pid);
                let result = if req.has_result { fds.pop() } else { None };
                child::run(req, payload.to_vec(), fds, result)
            }
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(e) => Err(e.to_string()),
        };
        drop(fds);
        let mut out = frame::start_frame();
        if crate::wire::encode(&reply, &mut out).is_err() || frame::send(sock.as_fd(), &mut out, &[]).is_err()
        {
            sys::exit_now(0);
        }
    }
}
