//! The process-wide waker thread: async waits on futex words.
//!
//! Every wait of this crate ends with a futex wake on a word in shared memory (a lock word, a
//! queue's sequence word, an event's flag), issued by whichever process changed it. A future
//! cannot sleep in `futex(2)`, so it registers the word and the value it saw here, and one
//! thread per process sleeps in `futex_waitv(2)` on all registered words at once (up to 127
//! distinct words per call, beside the thread's own control word). A wake on a word, or a word
//! found changed, wakes every future registered on it; each re-checks its own condition and
//! registers again if it must wait on. So:
//!
//! - **At most one thread per process**, started by the first async wait that has to sleep,
//!   whatever the number of awaiting futures, objects or runtimes; 1000 futures waiting on one
//!   queue are one futex word to the thread.
//! - **No polling**: the thread sleeps until a wake or a change of the words it sleeps on.
//!   Only beyond 127 distinct words does it rotate through them, waking the ones it could not
//!   sleep on every millisecond (they re-check and register again).
//! - **Nothing changes for the blocking API**: senders wake the words as they always do; the
//!   thread is one more futex sleeper among the blocking ones of any process.
//!
//! A wake-one (a lock's release wakes one sleeper) that reaches this thread when no future
//! here still wants it is passed on (`FUTEX_WAKE` of one more sleeper), and a future dropped
//! after its wake did the same, so the wake reaches a waiter in another process.
//!
//! The thread never reads a registered word itself: only the kernel does, in `futex_waitv`,
//! which reports a word that no longer holds its value (`EAGAIN`) without saying which; every
//! registered future is then woken to re-check (this happens only when a word changed between
//! a future's check and the thread's sleep). So a word may be unmapped while the thread sleeps
//! on it: the futures that registered it deregister before the mapping can go.

use crate::sys::{self, futex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often, beyond 127 distinct words, the words the thread could not sleep on are woken.
const OVERFLOW_TICK: Duration = Duration::from_millis(1);

struct Entry {
    addr: usize,
    expected: u32,
    waker: Waker,
    fired: bool,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// What the thread sleeps on now (address to value), so that a registration it already
    /// covers need not interrupt it. An address leaves it with its last registration: the
    /// kernel keys a sleep on the mapping that was there when the thread went to sleep, and
    /// once no future borrows that mapping, another may take its address.
    listed: HashMap<usize, u32>,
    /// Per address: registrations, and how many of them are for wake-one words (whose wakes
    /// are passed on when nobody here wants them).
    per_addr: HashMap<usize, (usize, usize)>,
    started: bool,
    /// Where the next round starts when there are more words than one call takes.
    rotate: usize,
}

pub(crate) struct Core {
    pid: i32,
    /// Bumped (and woken) when the thread must rebuild the set of words it sleeps on.
    ctl: AtomicU32,
    reg: Mutex<Registry>,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interrupt(&self) {
        self.ctl.fetch_add(1, SeqCst);
        futex::wake_all(&self.ctl);
    }
}

/// This process's core (a forked child gets its own; the parent's thread does not run there).
fn core() -> Arc<Core> {
    static CORE: Mutex<Option<Arc<Core>>> = Mutex::new(None);
    let me = sys::getpid();
    let mut c = CORE.lock().unwrap_or_else(|p| p.into_inner());
    match &*c {
        Some(core) if core.pid == me => core.clone(),
        _ => {
            let core =
                Arc::new(Core { pid: me, ctl: AtomicU32::new(0), reg: Mutex::new(Registry::default()) });
            *c = Some(core.clone());
            core
        }
    }
}

fn run(core: Arc<Core>) {
    let mut list: Vec<futex::WaitV> = Vec::with_capacity(futex::WAITV_MAX);
    // Each slot's address, and whether its wakes are wake-ones.
    let mut addrs: Vec<(usize, bool)> = Vec::with_capacity(futex::WAITV_MAX);
    loop {
        let ctl_seen;
        let overflow;
        {
            let mut r = core.lock();
            ctl_seen = core.ctl.load(SeqCst);
            list.clear();
            addrs.clear();
            list.push(futex::WaitV::new(core.ctl.as_ptr() as usize, ctl_seen));
            addrs.push((0, false));
            let mut words: Vec<(usize, u32)> = Vec::new();
            let mut seen: HashMap<usize, u32> = HashMap::new();
            for e in r.entries.values().filter(|e| !e.fired) {
                if seen.insert(e.addr, e.expected).is_none() {
                    words.push((e.addr, e.expected));
                }
            }
            // Two futures saw different values of one word: it changed since one of them looked.
            let mut stale = Vec::new();
            for (id, e) in r.entries.iter().filter(|(_, e)| !e.fired) {
                if seen.get(&e.addr) != Some(&e.expected) {
                    stale.push(*id);
                }
            }
            for id in stale {
                fire(&mut r, id);
            }
            words.sort_unstable();
            overflow = words.len() > futex::WAITV_MAX - 1;
            let start = if overflow { r.rotate % words.len() } else { 0 };
            r.rotate = r.rotate.wrapping_add(futex::WAITV_MAX - 1);
            r.listed.clear();
            for k in 0..words.len().min(futex::WAITV_MAX - 1) {
                let (addr, val) = words[(start + k) % words.len()];
                list.push(futex::WaitV::new(addr, val));
                addrs.push((addr, r.per_addr.get(&addr).is_some_and(|n| n.1 > 0)));
                r.listed.insert(addr, val);
            }
        }
        let deadline = overflow.then(|| Instant::now() + OVERFLOW_TICK);
        let outcome = futex::wait_any(&list, deadline).unwrap_or(futex::WaitAny::Mismatch);
        let mut r = core.lock();
        match outcome {
            futex::WaitAny::Woken(0) | futex::WaitAny::Interrupted => {}
            futex::WaitAny::Woken(i) => {
                let (addr, wake_one) = addrs[i];
                r.listed.remove(&addr);
                let ids: Vec<u64> =
                    r.entries.iter().filter(|(_, e)| e.addr == addr && !e.fired).map(|(id, _)| *id).collect();
                if ids.is_empty() && wake_one {
                    futex::wake_addr(addr, 1);
                }
                for id in ids {
                    fire(&mut r, id);
                }
            }
            futex::WaitAny::Mismatch if core.ctl.load(SeqCst) != ctl_seen => {}
            futex::WaitAny::Mismatch => fire_all(&mut r, |_| true),
            futex::WaitAny::TimedOut => {
                let listed = std::mem::take(&mut r.listed);
                fire_all(&mut r, |e| !listed.contains_key(&e.addr));
                r.listed = listed;
            }
        }
    }
}

fn fire(r: &mut Registry, id: u64) {
    if let Some(e) = r.entries.get_mut(&id) {
        e.fired = true;
        e.waker.wake_by_ref();
    }
}

fn fire_all(r: &mut Registry, which: impl Fn(&Entry) -> bool) {
    for e in r.entries.values_mut().filter(|e| !e.fired && which(e)) {
        e.fired = true;
        e.waker.wake_by_ref();
    }
}

/// One future's registration of one word at a time: dropping it deregisters.
pub(crate) struct WordWait {
    core: Arc<Core>,
    id: Option<u64>,
    /// The word's wakes are wake-ones (a lock word): one consumed by a future that then went
    /// away is passed on.
    wake_one: bool,
}

impl WordWait {
    /// A registration for words woken with wake-all (sequence words, flags).
    pub(crate) fn new() -> WordWait {
        WordWait { core: core(), id: None, wake_one: false }
    }

    /// A registration for a lock word, whose release wakes one sleeper.
    pub(crate) fn wake_one() -> WordWait {
        WordWait { core: core(), id: None, wake_one: true }
    }

    /// Ready once `word` no longer holds `expected`, or once a wake reached it after this
    /// registered (spuriously, at times: the caller re-checks its condition and calls again).
    pub(crate) fn poll_changed(&mut self, cx: &mut Context<'_>, word: &AtomicU32, expected: u32) -> Poll<()> {
        let addr = word.as_ptr() as usize;
        let core = self.core.clone();
        let mut r = core.lock();
        if let Some(id) = self.id {
            match r.entries.get_mut(&id) {
                Some(e) if e.fired => {
                    self.remove(&mut r, id);
                    return Poll::Ready(());
                }
                Some(e) if e.addr == addr && e.expected == expected => {
                    if word.load(SeqCst) != expected {
                        self.remove(&mut r, id);
                        return Poll::Ready(());
                    }
                    if !e.waker.will_wake(cx.waker()) {
                        e.waker = cx.waker().clone();
                    }
                    return Poll::Pending;
                }
                _ => {
                    self.remove(&mut r, id);
                }
            }
        }
        // Checked under the registry's lock: a wake the thread takes from now on finds us.
        if word.load(SeqCst) != expected {
            return Poll::Ready(());
        }
        let id = r.next_id;
        r.next_id += 1;
        r.entries.insert(id, Entry { addr, expected, waker: cx.waker().clone(), fired: false });
        let n = r.per_addr.entry(addr).or_insert((0, 0));
        n.0 += 1;
        n.1 += self.wake_one as usize;
        self.id = Some(id);
        let covered = r.listed.get(&addr) == Some(&expected);
        if !r.started {
            r.started = true;
            let core = self.core.clone();
            std::thread::Builder::new()
                .name("mp-async-waker".into())
                .spawn(move || run(core))
                .expect("starting the async waker thread");
        } else if !covered {
            drop(r);
            core.interrupt();
        }
        Poll::Pending
    }

    fn remove(&mut self, r: &mut Registry, id: u64) -> Option<Entry> {
        self.id = None;
        let e = r.entries.remove(&id)?;
        if let Some(n) = r.per_addr.get_mut(&e.addr) {
            n.0 -= 1;
            n.1 -= self.wake_one as usize;
            if n.0 == 0 {
                r.per_addr.remove(&e.addr);
                r.listed.remove(&e.addr);
            }
        }
        Some(e)
    }

    /// Deregisters now (as dropping does), without passing on a wake.
    pub(crate) fn clear(&mut self) {
        if let Some(id) = self.id {
            let core = self.core.clone();
            let mut r = core.lock();
            self.remove(&mut r, id);
        }
    }
}

impl Drop for WordWait {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let core = self.core.clone();
        let mut r = core.lock();
        if let Some(e) = self.remove(&mut r, id) {
            if e.fired && self.wake_one {
                // Woken for a lock we now will not take: let another sleeper have the wake.
                futex::wake_addr(e.addr, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn more_words_than_one_call_takes_are_all_woken() {
        // 300 distinct words: the thread sleeps on 127 at a time and rotates through the rest.
        let words: Arc<Vec<AtomicU32>> = Arc::new((0..300).map(|_| AtomicU32::new(0)).collect());
        runtime().block_on(async {
            let tasks: Vec<_> = (0..300)
                .map(|i| {
                    let words = words.clone();
                    tokio::spawn(async move {
                        crate::sync::aio::until_word(&words[i], None, false, |v| v == 1).await
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            for w in words.iter() {
                w.store(1, SeqCst);
                futex::wake_all(w);
            }
            let all = async {
                for t in tasks {
                    t.await.unwrap();
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(20), all)
                .await
                .expect("every word's waiter woke");
        });
        let core = core();
        let r = core.lock();
        assert!(r.entries.is_empty() && r.per_addr.is_empty(), "every registration removed");
    }
}
