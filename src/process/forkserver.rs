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
use super::launch::{open_pidfd_or_reap, Started};
use super::state::FORKSERVER;
use crate::error::{Error, Result};
use crate::sys::{self, Forked};
use crate::wire::frame;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long the fork server may go without making progress on a request (taking its bytes,
/// forking, answering) before it counts as wedged (stopped, or stuck) and is replaced. A
/// healthy server answers in well under a millisecond.
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// How long a child that a replaced server may have forked gets to say who it is.
const ORPHAN_LIMIT: Duration = Duration::from_secs(5);

/// The owner's side of a running fork server.
pub(crate) struct Client {
    sock: OwnedFd,
    pidfd: OwnedFd,
    owner: i32,
}

/// How a request went wrong.
enum Failure {
    /// The server made no progress for [`STALL_LIMIT`].
    Stalled,
    /// The connection to the server broke (it died).
    Gone(Error),
    /// The server answered that it could not fork, or sent nonsense.
    Refused(Error),
}

impl Client {
    fn start() -> Result<Client> {
        let (ours, theirs) = sys::socketpair().map_err(Error::io("creating the fork server socket"))?;
        sys::set_io_timeouts(ours.as_fd(), STALL_LIMIT)
            .map_err(Error::io("setting the fork server socket's timeouts"))?;
        let mut msg = frame::start_frame();
        crate::wire::encode(&Boot::Forkserver { parent_pid: sys::getpid() }, &mut msg)?;
        let started = super::launch::exec_child(theirs)?;
        let client = Client { sock: ours, pidfd: started.pidfd, owner: sys::getpid() };
        if let Err(e) = frame::send(client.sock.as_fd(), &mut msg, &[]) {
            client.kill();
            return Err(e);
        }
        Ok(client)
    }

    /// Sends one request and reads the answer: the pid of the forked child.
    fn round_trip(&self, msg: &mut [u8], fds: &[BorrowedFd<'_>]) -> std::result::Result<i32, Failure> {
        let broken = |e: Error| match e {
            Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::WouldBlock => {
                Failure::Stalled
            }
            Error::Eof | Error::Io { .. } => Failure::Gone(e),
            e => Failure::Refused(e),
        };
        frame::send(self.sock.as_fd(), msg, sys::raw_fds(fds)).map_err(broken)?;
        let (reply, _) = frame::recv(self.sock.as_fd(), 4096).map_err(broken)?;
        let reply: std::result::Result<i32, String> =
            crate::wire::decode(&reply, Vec::new()).map_err(Failure::Refused)?;
        reply.map_err(|e| Failure::Refused(Error::invalid(format!("the fork server could not fork: {e}"))))
    }

    /// Kills the server (a stopped one too) and reaps it.
    fn kill(self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(self.pidfd.as_fd(), true);
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

/// After a request went wrong with the server already gone: a child it forked for the request
/// (a child of this process) says its pid on the start gate and waits there; it is killed and
/// reaped without having run anything. End-of-file on the gate means there is no such child.
fn reap_orphan(gate: OwnedFd) {
    let deadline = Some(Instant::now() + ORPHAN_LIMIT);
    let mut pid = [0u8; 4];
    let mut got = 0;
    while got < pid.len() {
        match sys::poll_readable(&[gate.as_fd()], deadline) {
            Ok(Some(_)) => {}
            _ => {
                log::error!("multiproc: a child of a replaced fork server did not report; it may be left");
                return;
            }
        }
        match sys::net::recv_some(gate.as_fd(), &mut pid[got..], true) {
            Ok(0) => return,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    sys::kill_and_reap(i32::from_le_bytes(pid));
}

/// Asks this process's fork server (starting it on first use) to fork a child for `msg`.
///
/// A server that died is replaced and the request sent again, once. So is one that makes no
/// progress for [`STALL_LIMIT`] (stopped, or stuck): it is killed first. Each child waits at a
/// start gate until its pidfd is open here, so a request that fails leaves no child that ran
/// anything: one the server did fork is killed and reaped.
pub(crate) fn request(msg: &mut [u8], fds: &[BorrowedFd<'_>]) -> Result<Started> {
    for attempt in 0..2 {
        let (gate, child_gate) = sys::socketpair().map_err(Error::io("creating the start gate"))?;
        let mut all = fds.to_vec();
        all.push(child_gate.as_fd());
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
        let outcome = client.round_trip(msg, &all);
        drop(child_gate);
        let failure = match outcome {
            Ok(pid) => {
                drop(guard);
                let started = open_pidfd_or_reap(pid)?;
                sys::open_gate(gate.as_fd());
                return Ok(started);
            }
            Err(failure) => failure,
        };
        let retry = attempt == 0;
        let error = match failure {
            Failure::Refused(e) => {
                drop(guard);
                // The server is still there and closed its copy of the gate before answering:
                // end-of-file at once, unless it did fork a child after all.
                reap_orphan(gate);
                return Err(e);
            }
            Failure::Stalled => {
                log::warn!("multiproc: the fork server made no progress for {STALL_LIMIT:?}; replacing it");
                Error::invalid(format!(
                    "the fork server made no progress for {STALL_LIMIT:?} (stopped or stuck), twice"
                ))
            }
            Failure::Gone(e) => {
                if retry {
                    log::warn!("multiproc: the fork server died; starting a new one");
                }
                e
            }
        };
        // Kill the server before looking for its child: then no new child can appear, and
        // every copy of the gate but the child's own is closed.
        if let Some(old) = guard.take() {
            old.kill();
        }
        drop(guard);
        reap_orphan(gate);
        if !retry {
            return Err(error);
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
        let (req, payload) = match crate::wire::take::<Boot>(&bytes) {
            Ok((Boot::Run(req), payload)) => (req, payload),
            _ => sys::exit_now(1),
        };
        let gate = if req.has_gate { fds.pop() } else { None };
        let reply: std::result::Result<i32, String> = match sys::fork_as_sibling() {
            Ok(Forked::Child) => {
                drop(sock);
                sys::die_with_parent(req.parent_pid);
                if let Some(gate) = gate {
                    sys::report_pid(gate.as_fd());
                    if !sys::wait_gate(gate.as_fd()) {
                        sys::exit_now(1);
                    }
                }
                let result = if req.has_result { fds.pop() } else { None };
                child::run(req, payload.to_vec(), fds, result)
            }
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(e) => Err(e.to_string()),
        };
        drop(gate);
        drop(fds);
        let mut out = frame::start_frame();
        if crate::wire::encode(&reply, &mut out).is_err() || frame::send(sock.as_fd(), &mut out, &[]).is_err()
        {
            sys::exit_now(0);
        }
    }
}
