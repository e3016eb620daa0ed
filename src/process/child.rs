//! What runs in a child: the bootstrap before `main`, the target, and the exit.
//!
//! A child created by `spawn` (or the fork server itself) is this same binary, exec'd with
//! [`BOOT_ENV`] naming the descriptor of its boot socket. A constructor in this crate runs before
//! `main`, sees the variable, reads the boot message and never returns to `main`: so plain
//! binaries, examples, test harnesses and doctests need no call in `main`.
//!
//! Children always leave through [`exit`]: it waits for the backlogs of its queues' feeders
//! (as Python joins the feeder threads), does what Python's `_exit_function` does for this
//! process's own children, flushes stdout, and calls `_exit` (never the parent's `atexit`
//! handlers, which a forked child has copies of).

use super::entries::Outcome;
use super::state::{self, Identity};
use super::StartMethod;
use crate::sys;
use crate::target::{ChildStart, EntryOffset};
use crate::wire::{self, frame};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

/// Environment variable that marks a re-exec'd child; its value is the boot socket's fd.
pub(crate) const BOOT_ENV: &str = "MULTIPROCESSING_BOOT_FD";

/// The descriptor number the boot socket is moved to before `exec`.
pub(crate) const BOOT_FD: RawFd = 3;

/// First message on a boot socket.
#[derive(Serialize, Deserialize)]
pub(crate) enum Boot {
    /// Run a target; the encoded arguments follow the encoded `Boot` in the same frame.
    Run(RunRequest),
    /// Become the fork server of the process with this pid.
    Forkserver { parent_pid: i32 },
}

/// Everything a child needs to become `Process-N` and run its target.
#[derive(Serialize, Deserialize)]
pub(crate) struct RunRequest {
    pub(crate) entry: EntryOffset,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) start_method: StartMethod,
    /// How many of the frame's descriptors belong to the arguments; one more, if
    /// `has_result`, is the result socket.
    pub(crate) n_arg_fds: u32,
    pub(crate) has_result: bool,
    /// The parent's authkeys (Python's inherited `authkey`), installed before the arguments
    /// are decoded: proxies travel without them.
    pub(crate) authkeys: crate::connection::keyring::Keyring,
    /// Whether a start gate (see `sys::wait_gate`) follows the result socket: the fork
    /// server's children wait at it until the owner holds their pidfd.
    pub(crate) has_gate: bool,
}

#[ctor::ctor]
unsafe fn boot_if_child() {
    let Some(value) = std::env::var_os(BOOT_ENV) else { return };
    // SAFETY: constructors run before `main`, while the process has a single thread, so nothing
    // can read the environment concurrently.
    unsafe { std::env::remove_var(BOOT_ENV) };
    let fd: RawFd = match value.to_str().and_then(|v| v.parse().ok()) {
        Some(fd) => fd,
        None => return,
    };
    // SAFETY: the parent placed the boot socket at this descriptor and nothing else in this
    // fresh process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    boot(sock)
}

/// Reads the boot message and becomes what it says. Never returns.
fn boot(sock: OwnedFd) -> ! {
    sys::ignore_sigpipe();
    let (bytes, mut fds) = match frame::recv(sock.as_fd(), usize::MAX) {
        Ok(msg) => msg,
        Err(crate::Error::Eof) => sys::exit_now(0),
        Err(e) => fail(&format!("cannot read the boot message: {e}")),
    };
    let (boot, payload) = match crate::wire::take::<Boot>(&bytes) {
        Ok(v) => v,
        Err(e) => fail(&format!("cannot decode the boot message: {e}")),
    };
    match boot {
        Boot::Forkserver { parent_pid } => {
            drop(fds);
            super::forkserver::serve(sock, parent_pid)
        }
        Boot::Run(req) => {
            drop(sock);
            let result = if req.has_result { fds.pop() } else { None };
            run(req, payload.to_vec(), fds, result)
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("multiproc: {msg}");
    sys::exit_now(1)
}

/// Runs the target of `req` in this (child) process and exits with its code.
pub(crate) fn run(mut req: RunRequest, payload: Vec<u8>, fds: Vec<OwnedFd>, result: Option<OwnedFd>) -> ! {
    state::set_identity(identity_of(&req));
    super::set_child_start_method(req.start_method);
    FORKED.store(req.start_method == StartMethod::Fork, Ordering::Relaxed);
    crate::connection::keyring::install(std::mem::take(&mut req.authkeys));
    // A no-op in a `Fork` child, whose parent installed it before the fork.
    install_panic_capture();
    CAPTURING.store(true, Ordering::Relaxed);
    if let Some(r) = &result {
        RESULT_FD.store(std::os::fd::AsRawFd::as_raw_fd(r), Ordering::Relaxed);
    }
    let entry = match req.entry.resolve() {
        Ok(e) => e,
        Err(e) => fail(&e.to_string()),
    };
    let code = entry(ChildStart { payload, fds, result });
    exit(code)
}

pub(crate) fn identity_of(req: &RunRequest) -> Identity {
    Identity {
        name: req.name.clone(),
        ident: req.ident.clone(),
        daemon: req.daemon,
        parent: Some((req.parent_pid, req.parent_name.clone())),
    }
}

/// Leaves a child process: the rooms' exit work (queue backlogs written out), finish its own children, flush, `_exit`.
pub(crate) fn exit(code: i32) -> ! {
    sys::life::run_exit_hooks();
    state::finish_children();
    super::forkserver::shutdown();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::flush_c_stdio();
    sys::exit_now(code)
}

/// The result socket of this child, which its own forked children must not keep open.
static RESULT_FD: AtomicI32 = AtomicI32::new(-1);

/// In a child forked from this process: closes the copy of this process's result socket, so the
/// parent sees end-of-file when this process exits, whatever its children do.
pub(crate) fn close_inherited_result_fd() {
    let fd = RESULT_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: `fd` is this process's copy of the result socket, which nothing in the new
        // child uses; taking ownership here closes it exactly once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// The message and backtrace of the last panic captured in this child. Held across a `Fork`
/// (see `state::lock_for_fork`), so the child finds it free.
pub(crate) static LAST_PANIC: Mutex<Option<(String, Option<String>)>> = Mutex::new(None);

/// Whether the capturing hook records panics here: set only in a child, before its target.
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// Whether a panic in this child is also printed to stderr (it always is recorded).
static PRINT_PANICS: AtomicBool = AtomicBool::new(true);

/// Whether panics come with a backtrace (`RUST_LIB_BACKTRACE`/`RUST_BACKTRACE`), read when the
/// hook is installed so that a panicking `Fork` child never reads the environment (whose lock
/// another thread of the parent may have held at the fork).
static BACKTRACES: AtomicBool = AtomicBool::new(false);

static HOOK_INSTALLED: std::sync::Once = std::sync::Once::new();

/// Whether this process is a `Fork` child: it then takes no lock of std's in its panic hook
/// (the backtrace lock and stderr's may be held for ever by threads of the parent that were
/// capturing or printing at the fork), so it records no backtrace and prints the message with
/// plain writes.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Turns printing of panics off (a pool worker hands the message to the caller instead, as
/// Python's pool workers do with exceptions) or back on.
pub(crate) fn print_panics(on: bool) {
    PRINT_PANICS.store(on, Ordering::Relaxed);
}

fn backtraces_wanted() -> bool {
    let var = std::env::var_os("RUST_LIB_BACKTRACE").or_else(|| std::env::var_os("RUST_BACKTRACE"));
    var.is_some_and(|v| v != "0")
}

/// Installs, once per process, the panic hook that records the message and backtrace of a
/// panic in a child's target and then hands the panic to the hook that was there before
/// (outside a child it only hands on).
///
/// It must be in place *before* a `Fork` child is created: setting a hook takes std's hook
/// lock, which a thread of the parent that was panicking at the fork holds for ever in the
/// child. So the parent installs it before every fork (a no-op after the first), and a child
/// only ever calls this when it is single-threaded and freshly exec'd or forked from the
/// single-threaded fork server.
pub(crate) fn install_panic_capture() {
    HOOK_INSTALLED.call_once(|| {
        BACKTRACES.store(backtraces_wanted(), Ordering::Relaxed);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CAPTURING.load(Ordering::Relaxed) {
                return previous(info);
            }
            let message = match info.location() {
                Some(loc) => format!("{} (at {loc})", payload_text(info.payload())),
                None => payload_text(info.payload()),
            };
            let forked = FORKED.load(Ordering::Relaxed);
            let backtrace = (BACKTRACES.load(Ordering::Relaxed) && !forked)
                .then(|| std::backtrace::Backtrace::force_capture().to_string());
            let printed = PRINT_PANICS.load(Ordering::Relaxed).then(|| match info.location() {
                Some(loc) => format!("thread panicked at {loc}:\n{}\n", payload_text(info.payload())),
                None => format!("thread panicked:\n{}\n", payload_text(info.payload())),
            });
            *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some((message, backtrace));
            match printed {
                Some(text) if forked => sys::pipe::write_stderr(text.as_bytes()),
                Some(_) => previous(info),
                None => {}
            }
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// The message and backtrace of the last panic captured in this child. When none was captured
/// (the target replaced the panic hook), the message comes from the panic's payload.
pub(crate) fn last_panic_of(payload: Option<&(dyn std::any::Any + Send)>) -> (String, Option<String>) {
    let taken = LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
    taken.unwrap_or_else(|| (payload.map_or_else(|| "panicked".to_string(), payload_text), None))
}

/// As [`last_panic_of`] without the payload.
pub(crate) fn last_panic() -> (String, Option<String>) {
    last_panic_of(None)
}

/// Sends the outcome (and, for `Returned`, the encoded value) on the result socket.
pub(crate) fn send_outcome(sock: &OwnedFd, outcome: &Outcome, value: &[u8]) {
    let mut buf = frame::start_frame();
    if wire::encode(outcome, &mut buf).is_err() {
        return;
    }
    buf.extend_from_slice(value);
    // End-of-file means the parent dropped its `JoinHandle`: nobody wants the value.
    if let Err(e @ (crate::Error::Io { .. } | crate::Error::Encode(_))) =
        frame::send(sock.as_fd(), &mut buf, &[])
    {
        eprintln!("multiproc: cannot send the result to the parent: {e}");
    }
}
