//! Per-process bookkeeping: who this process is, and the children it started.
//!
//! A forked child inherits a copy of all of it. The fork path holds every lock here across
//! `fork` ([`lock_for_fork`]), so the child finds each in a known state and resets it
//! ([`ForkLocks::reset_in_child`]) before any other code runs.

use super::{Process, StartMethod};
use crate::sys;
use std::sync::{Mutex, MutexGuard};

/// Who the current process is, as `current_process()` reports it.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// Python's `_identity`: this process's position in the tree (`[]` for the main process,
    /// `[3]` for its third child, `[3, 1]` for that child's first child).
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(i32, String)>,
}

pub(crate) struct State {
    pub(crate) identity: Identity,
    /// Number of `Process` objects created so far here (the `N` in `Process-N`).
    pub(crate) counter: u32,
    /// Started children not yet reaped.
    pub(crate) children: Vec<Process>,
    pub(crate) exit_hook_for: Option<i32>,
}

static STATE: Mutex<State> = Mutex::new(State {
    identity: Identity { name: String::new(), ident: Vec::new(), daemon: false, parent: None },
    counter: 0,
    children: Vec::new(),
    exit_hook_for: None,
});

/// The forkserver client of this process, if one was started.
pub(crate) static FORKSERVER: Mutex<Option<super::forkserver::Client>> = Mutex::new(None);

/// The process-wide start method, once fixed.
pub(crate) static START_METHOD: Mutex<Option<StartMethod>> = Mutex::new(None);

pub(crate) fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's identity ("MainProcess" until the child bootstrap sets another).
pub(crate) fn identity() -> Identity {
    let st = lock();
    let mut id = st.identity.clone();
    if id.name.is_empty() {
        id.name = "MainProcess".to_string();
    }
    id
}

pub(crate) fn set_identity(identity: Identity) {
    lock().identity = identity;
}

/// Every lock of this module, held across a `fork`.
pub(crate) struct ForkLocks {
    forkserver: MutexGuard<'static, Option<super::forkserver::Client>>,
    launcher: MutexGuard<'static, Option<super::launcher::Launcher>>,
    state: MutexGuard<'static, State>,
    connections: MutexGuard<'static, Option<std::collections::HashSet<std::os::fd::RawFd>>>,
    _start_method: MutexGuard<'static, Option<StartMethod>>,
    last_panic: MutexGuard<'static, Option<(String, Option<String>)>>,
    /// The locks of the rooms that registered a `sys::life` hook, taken last.
    hooks: Vec<Box<dyn sys::life::HeldAcrossFork>>,
}

/// Takes every lock a forked child will need, in the crate's one lock order.
pub(crate) fn lock_for_fork() -> ForkLocks {
    let forkserver = FORKSERVER.lock().unwrap_or_else(|p| p.into_inner());
    let launcher = super::launcher::lock();
    let state = lock();
    let connections = crate::connection::lock_registry();
    let start_method = START_METHOD.lock().unwrap_or_else(|p| p.into_inner());
    let last_panic = super::child::LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner());
    let hooks = sys::life::LIFE_HOOKS.iter().map(|h| (h.lock_for_fork)()).collect();
    ForkLocks { forkserver, launcher, state, connections, _start_method: start_method, last_panic, hooks }
}

impl ForkLocks {
    /// In a freshly forked child: forget the parent's children, fork server and launcher thread,
    /// none of which belong to this process.
    ///
    /// Only memory and descriptors are touched here, never a lock that another thread of the
    /// parent may have held at the fork: the launcher's channel is leaked rather than dropped,
    /// since dropping its last sender would take the channel's internal lock.
    pub(crate) fn reset_in_child(mut self, identity: Identity) {
        self.forkserver.take();
        std::mem::forget(self.launcher.take());
        self.state.children.clear();
        self.state.counter = 0;
        self.state.exit_hook_for = None;
        self.state.identity = identity;
        self.last_panic.take();
        for hook in std::mem::take(&mut self.hooks) {
            hook.reset_in_child();
        }
        crate::connection::close_inherited_connections(self.connections);
    }
}

/// Records a started child, reaping finished children whose handles were dropped, and makes
/// sure the exit hook runs in this process.
pub(crate) fn register_child(p: Process) {
    let mut st = lock();
    st.children.retain(|c| c.is_alive());
    st.children.push(p);
    let me = sys::getpid();
    if st.exit_hook_for != Some(me) {
        st.exit_hook_for = Some(me);
        sys::at_exit(exit_hook);
    }
}

/// Drops a child that has been joined from the list of children.
pub(crate) fn forget_child(child: &std::sync::Arc<super::Inner>) {
    lock().children.retain(|c| !std::sync::Arc::ptr_eq(&c.inner, child));
}

/// Started children that are still running, reaping those that finished (Python's
/// `active_children`).
pub(crate) fn active_children() -> Vec<Process> {
    let mut st = lock();
    st.children.retain(|c| c.is_alive());
    st.children.clone()
}

/// What Python's `_exit_function` does: terminate daemonic children, then join the rest.
pub(crate) fn finish_children() {
    let children = std::mem::take(&mut lock().children);
    for c in children.iter().filter(|c| c.daemon() && c.is_alive()) {
        let _ = c.terminate();
    }
    for c in &children {
        let _ = c.join();
    }
}

extern "C" fn exit_hook() {
    let me = sys::getpid();
    if lock().exit_hook_for != Some(me) {
        return;
    }
    finish_children();
    super::forkserver::shutdown();
}
