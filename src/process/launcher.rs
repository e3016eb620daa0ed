//! The stable thread that children are created from.
//!
//! Linux sends the `PR_SET_PDEATHSIG` signal when the *thread* that created a child exits, not
//! the process. A child forked from a short-lived thread (a test thread, a worker) would be
//! killed when that thread returns. So children are always created from a thread that lives as
//! long as the process: the main thread when the caller is on it, else this launcher thread,
//! started on first use.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Launcher {
    jobs: mpsc::Sender<Job>,
}

static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);

pub(crate) fn lock() -> MutexGuard<'static, Option<Launcher>> {
    LAUNCHER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` on a thread that outlives every child it creates, and returns its result.
pub(crate) fn on_stable_thread<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> R {
    if crate::sys::is_main_thread() {
        return job();
    }
    let sender = {
        let mut guard = lock();
        let launcher = guard.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("multiproc-launcher".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .expect("cannot start the multiproc launcher thread");
            Launcher { jobs: tx }
        });
        launcher.jobs.clone()
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    sender
        .send(Box::new(move || {
            let _ = done_tx.send(job());
        }))
        .expect("the multiproc launcher thread is gone");
    done_rx.recv().expect("the multiproc launcher thread dropped a job")
}
