//! The three start methods: how a prepared child comes to life.
//!
//! - `Fork`: fork this process on the stable thread and run the target in the copy.
//! - `Spawn`: fork + exec `/proc/self/exe` with the boot socket at fd 3; the child's bootstrap
//!   (before `main`) reads the run request from it.
//! - `Forkserver`: ask this process's fork server to fork a child (see forkserver.rs).
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)` right after the fork, and exits at once if its
//! parent is already gone.

use super::child::{self, Boot, RunRequest, BOOT_ENV, BOOT_FD};
use super::launcher::on_stable_thread;
use super::state;
use super::StartMethod;
use crate::error::{Error, Result};
use crate::sys::{self, Forked};
use crate::wire::{self, frame};
use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// A child that has been created.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
}

/// Creates a child that runs `req` with the encoded arguments.
pub(crate) fn launch(
    method: StartMethod,
    req: RunRequest,
    payload: Vec<u8>,
    arg_fds: Vec<OwnedFd>,
    result: Option<OwnedFd>,
) -> Result<Started> {
    match method {
        StartMethod::Fork => {
            // The child must find the hook in place: it may not set one (see the function).
            child::install_panic_capture();
            on_stable_thread(move || fork_and_run(req, payload, arg_fds, result))
        }
        StartMethod::Spawn => {
            // Everything that can fail comes before the child exists; the target runs only once
            // the child has the boot message.
            let (mut msg, fds) = run_message(req, &payload, &arg_fds, result.as_ref())?;
            let (ours, theirs) = sys::socketpair().map_err(Error::io("creating the boot socket"))?;
            let started = on_stable_thread(move || exec_child(theirs))?;
            if let Err(e) = frame::send(ours.as_fd(), &mut msg, sys::raw_fds(&fds)) {
                let _ = sys::pidfd_send_signal(started.pidfd.as_fd(), libc::SIGKILL);
                let _ = sys::waitid_pidfd(started.pidfd.as_fd(), true);
                return Err(Error::invalid(format!("the spawned child died before it started: {e}")));
            }
            Ok(started)
        }
        StartMethod::Forkserver => {
            let mut req = req;
            req.has_gate = true;
            let (mut msg, fds) = run_message(req, &payload, &arg_fds, result.as_ref())?;
            super::forkserver::request(&mut msg, &fds)
        }
    }
}

/// The boot frame for a run request: `Boot::Run`, then the arguments; descriptors are the
/// arguments' followed by the result socket, borrowed for as long as the frame is being sent.
fn run_message<'a>(
    req: RunRequest,
    payload: &[u8],
    arg_fds: &'a [OwnedFd],
    result: Option<&'a OwnedFd>,
) -> Result<(Vec<u8>, Vec<BorrowedFd<'a>>)> {
    let mut msg = frame::start_frame();
    wire::encode(&Boot::Run(req), &mut msg)?;
    msg.extend_from_slice(payload);
    let mut fds: Vec<BorrowedFd<'a>> = arg_fds.iter().map(AsFd::as_fd).collect();
    fds.extend(result.map(AsFd::as_fd));
    Ok((msg, fds))
}

fn flush_stdio() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::flush_c_stdio();
}

static WARNED_THREADS: AtomicBool = AtomicBool::new(false);

fn warn_if_multithreaded() {
    // The launcher thread is ours and quiet; any other extra thread may hold a lock the child
    // will need.
    let threads = sys::thread_count();
    let ours = usize::from(!sys::is_main_thread()) + 1;
    if threads > ours && !WARNED_THREADS.swap(true, Ordering::Relaxed) {
        log::warn!(
            "multiproc: this process has {threads} threads; using the Fork start method \
             may deadlock the child if another thread holds a lock. Forkserver or Spawn avoid it."
        );
    }
}

/// The `Fork` start method; runs on the stable thread.
fn fork_and_run(
    req: RunRequest,
    payload: Vec<u8>,
    arg_fds: Vec<OwnedFd>,
    result: Option<OwnedFd>,
) -> Result<Started> {
    warn_if_multithreaded();
    flush_stdio();
    let parent = sys::getpid();
    let identity = child::identity_of(&req);
    // The child waits at the gate until the parent holds its pidfd: a start that fails after
    // the fork must not have run the target.
    let (gate, child_gate) = sys::socketpair().map_err(Error::io("creating the start gate"))?;
    // Hold the std streams and every lock of ours across the fork, so the child finds them free.
    let out = std::io::stdout().lock();
    let err = std::io::stderr().lock();
    let locks = state::lock_for_fork();
    let forked = sys::fork();
    if let Ok(Forked::Child) = forked {
        drop(gate);
        if !sys::wait_gate(child_gate.as_fd()) {
            sys::exit_now(1);
        }
        drop(child_gate);
        locks.reset_in_child(identity);
        drop((out, err));
        child::close_inherited_result_fd();
        sys::die_with_parent(parent);
        child::run(req, payload, arg_fds, result)
    }
    drop(locks);
    drop((out, err));
    drop(child_gate);
    let Forked::Parent(pid) = forked.map_err(Error::io("fork"))? else {
        unreachable!("the child never returns")
    };
    let started = open_pidfd_or_reap(pid)?;
    sys::open_gate(gate.as_fd());
    Ok(started)
}

/// The pidfd of a child that was just created; when it cannot be opened (no descriptor left),
/// the child is killed and reaped, and the start fails.
pub(crate) fn open_pidfd_or_reap(pid: i32) -> Result<Started> {
    match sys::pidfd_open(pid) {
        Ok(pidfd) => Ok(Started { pid, pidfd }),
        Err(e) => {
            sys::kill_and_reap(pid);
            Err(Error::Io { context: "opening the child's pidfd", source: e })
        }
    }
}

/// Fork + exec of this binary with `boot` at [`BOOT_FD`]; runs on the stable thread. The caller
/// sends the boot message on the other end of `boot`.
pub(crate) fn exec_child(boot: OwnedFd) -> Result<Started> {
    // Everything the child needs is allocated before the fork: after it, only system calls.
    let argv0 = std::env::args_os().next().unwrap_or_else(|| OsString::from("multiproc-child"));
    let argv0 = CString::new(argv0.into_vec()).unwrap_or_else(|_| c"multiproc-child".to_owned());
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != BOOT_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    env.push(CString::new(format!("{BOOT_ENV}={BOOT_FD}")).expect("no NUL"));
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp: Vec<*const libc::c_char> =
        env.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let parent = sys::getpid();
    match sys::fork().map_err(Error::io("fork"))? {
        Forked::Child => {
            sys::die_with_parent(parent);
            if sys::prepare_fds_for_exec(boot.as_fd(), BOOT_FD).is_ok() {
                let _ = sys::exec_self(&argv, &envp);
            }
            sys::exit_now(127)
        }
        Forked::Parent(pid) => {
            drop(boot);
            // The child runs nothing of its own before it reads the boot message.
            open_pidfd_or_reap(pid)
        }
    }
}
