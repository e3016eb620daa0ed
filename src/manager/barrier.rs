//! `Barrier` kept in a manager's server: [`BarrierProxy`] (Python's `manager.Barrier(parties)`).
//!
//! As `threading.Barrier`: a wait that times out, an `abort`, or a `reset` while clients wait
//! breaks the barrier for the current waiters. Unlike Python, a waiting client that disconnects
//! breaks it too, so the others are told instead of waiting for a party that will never come.

use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::BaseProxy;
use super::registry::{deadline, Builtin, Call, Reply, Served};
use crate::error::Result;
use crate::sync::lock;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct BarrierState {
    /// Clients waiting in the current round.
    count: u64,
    /// Rounds completed or reset so far; a waiter's round is over when this moves on.
    generation: u64,
    /// Rounds ended by `reset` rather than by all parties arriving (the last few).
    reset_rounds: Vec<u64>,
    broken: bool,
}

/// The server side of a barrier.
pub(crate) struct ServedBarrier {
    state: Mutex<BarrierState>,
    cv: Condvar,
    parties: u64,
    timeout: Option<f64>,
}

impl ServedBarrier {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let (parties, timeout): (u64, Option<f64>) = decode(args)?;
        if parties == 0 {
            return Err(RemoteError::new(RemoteErrorKind::Value, "parties must be > 0"));
        }
        let state = BarrierState { count: 0, generation: 0, reset_rounds: Vec::new(), broken: false };
        Ok(Arc::new(ServedBarrier { state: Mutex::new(state), cv: Condvar::new(), parties, timeout }))
    }
}

fn broken() -> RemoteError {
    RemoteError::new(RemoteErrorKind::BrokenBarrier, "the barrier is broken")
}

methods! {
    enum BarrierMethod for ServedBarrier as "Barrier" { wait, reset, abort, parties, n_waiting, broken }
}

impl Builtin<BarrierMethod> for ServedBarrier {
    fn serve(&self, method: BarrierMethod, Call { cx, args, out, .. }: Call<'_, '_>) -> Reply {
        let mut st = lock(&self.state);
        match method {
            BarrierMethod::wait => {
                let timeout: Option<f64> = decode(args)?;
                if st.broken {
                    return Err(broken());
                }
                let index = st.count;
                st.count += 1;
                if st.count == self.parties {
                    st.count = 0;
                    st.generation += 1;
                    self.cv.notify_all();
                    return encode_into(&index, out);
                }
                let round = st.generation;
                let waited = cx.wait_until(&self.cv, st, deadline(timeout.or(self.timeout)), |s| {
                    s.generation != round || s.broken
                });
                let (mut st, done) = match waited {
                    Ok(r) => r,
                    Err(e) => {
                        // The client left: nobody can complete this round.
                        let mut st = lock(&self.state);
                        if st.generation == round {
                            st.broken = true;
                            st.count = st.count.saturating_sub(1);
                            self.cv.notify_all();
                        }
                        return Err(e);
                    }
                };
                if st.generation != round && !st.reset_rounds.contains(&round) {
                    return encode_into(&index, out);
                }
                if !done && st.generation == round {
                    st.broken = true; // timed out: break it for everyone, as Python does
                    self.cv.notify_all();
                }
                if st.generation == round {
                    st.count = st.count.saturating_sub(1);
                }
                return Err(broken());
            }
            BarrierMethod::reset => {
                if st.count > 0 {
                    let round = st.generation;
                    st.reset_rounds.push(round);
                    if st.reset_rounds.len() > 64 {
                        st.reset_rounds.remove(0);
                    }
                    st.generation += 1;
                }
                st.count = 0;
                st.broken = false;
                self.cv.notify_all();
            }
            BarrierMethod::abort => {
                st.broken = true;
                self.cv.notify_all();
            }
            BarrierMethod::parties => encode_into(&self.parties, out)?,
            BarrierMethod::n_waiting => encode_into(&st.count, out)?,
            BarrierMethod::broken => encode_into(&st.broken, out)?,
        }
        Ok(())
    }
}

/// A proxy to a barrier in a manager's server (Python's `manager.Barrier(parties)`).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let b = manager.barrier(1)?;
/// assert_eq!(b.wait()?, 0); // one party: passes at once
/// assert_eq!(b.parties()?, 1);
/// b.abort()?;
/// assert!(b.wait().is_err()); // BrokenBarrierError
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct BarrierProxy {
    base: BaseProxy,
    _t: PhantomData<()>,
}

impl BarrierProxy {
    /// Waits until all parties have called `wait` (Python's `wait()`); returns this caller's
    /// arrival index, `0..parties`. A `BrokenBarrier` error if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<usize> {
        self.base.call::<_, u64>(BarrierMethod::wait.name(), &None::<f64>).map(|i| i as usize)
    }

    /// As [`wait`](Self::wait), breaking the barrier if the others do not come within
    /// `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.base.call::<_, u64>(BarrierMethod::wait.name(), &Some(timeout.as_secs_f64())).map(|i| i as usize)
    }

    /// Returns the barrier to its empty, unbroken state; current waiters get `BrokenBarrier`
    /// (Python's `reset`).
    pub fn reset(&self) -> Result<()> {
        self.base.call(BarrierMethod::reset.name(), &())
    }

    /// Breaks the barrier (Python's `abort`).
    pub fn abort(&self) -> Result<()> {
        self.base.call(BarrierMethod::abort.name(), &())
    }

    /// The number of parties (Python's `parties`).
    pub fn parties(&self) -> Result<usize> {
        self.base.call::<_, u64>(BarrierMethod::parties.name(), &()).map(|n| n as usize)
    }

    /// How many clients wait now (Python's `n_waiting`).
    pub fn n_waiting(&self) -> Result<usize> {
        self.base.call::<_, u64>(BarrierMethod::n_waiting.name(), &()).map(|n| n as usize)
    }

    /// Whether the barrier is broken (Python's `broken`).
    pub fn broken(&self) -> Result<bool> {
        self.base.call(BarrierMethod::broken.name(), &())
    }
}

proxy_impls!(BarrierProxy, "BarrierProxy", "Barrier");
