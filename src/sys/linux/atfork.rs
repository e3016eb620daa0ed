//! A cached process id that forked children refresh (`pthread_atfork`), for hot paths that must
//! tell whether state was inherited from a parent: `getpid(2)` is a real system call.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

static CACHED_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forget_pid_in_child() {
    CACHED_PID.store(0, Ordering::Relaxed);
}

/// This process's id, without a system call after the first use. Correct in children made by
/// `fork(3)` (the handler clears the cache) and by exec (a fresh process). Children made by a raw
/// `clone` skip `atfork` handlers: the fork server, which makes them, never calls this.
pub(crate) fn cached_pid() -> i32 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a child handler that only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    match CACHED_PID.load(Ordering::Relaxed) {
        0 => {
            let pid = super::getpid();
            CACHED_PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}
