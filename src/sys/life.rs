//! Hooks into a process's life, for the rooms that keep process-wide state: a `fork` must not
//! find their locks held by another thread, a forked child must forget what is its parent's, and
//! a child must finish their work before it exits. The process room runs them
//! (`process::state`); the rooms register them here, below both, so neither imports the other
//! (as `pthread_atfork` sits below the libraries that register with it).

/// How a room takes part in its process's life without the process room importing it:
/// before a `fork` it takes its lock (the guard is held across the fork), in the child it
/// resets what belongs to the parent, and before a child exits it finishes its work (a queue
/// writes out its backlog). Rooms register one with `linkme::distributed_slice(LIFE_HOOKS)`.
pub(crate) struct LifeHook {
    /// Takes the room's lock before a fork.
    pub(crate) lock_for_fork: fn() -> Box<dyn HeldAcrossFork>,
    /// Runs as a child process leaves, before its own children are finished.
    pub(crate) at_child_exit: fn(),
}

/// A room's lock, held across a fork by the process room (`process::state::ForkLocks`).
pub(crate) trait HeldAcrossFork {
    /// In the freshly forked child: forget what is the parent's (memory only, no locks).
    fn reset_in_child(self: Box<Self>);
}

/// Every [`LifeHook`] in this binary.
#[linkme::distributed_slice]
pub(crate) static LIFE_HOOKS: [LifeHook];

/// Runs every room's exit work (see [`LifeHook::at_child_exit`]).
pub(crate) fn run_exit_hooks() {
    for hook in LIFE_HOOKS {
        (hook.at_child_exit)();
    }
}
