//! Async `Lock`, `Semaphore`, `Event`, `Condition` and `Barrier` (feature `tokio`) across real
//! processes, under each start method: exclusion, wake-ups from other processes, cancellation
//! leaving nothing held or registered, a dead holder taken over.
#![cfg(feature = "tokio")]

use multiproc::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, Process, RawValue, Semaphore, StartMethod,
};
use std::time::Duration;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Adds to a shared counter under the lock, with async acquires, from several tasks.
fn add_async(lock: Lock, counter: RawValue<u64>, n: u64) {
    multi().block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..n {
                        let _g = lock.acquire_async().await.unwrap();
                        let v = counter.get();
                        tokio::task::yield_now().await;
                        counter.set(v + 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    })
}

fn add_blocking(lock: Lock, counter: RawValue<u64>, n: u64) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        let v = counter.get();
        std::thread::yield_now();
        counter.set(v + 1);
    }
}

#[test]
fn async_and_blocking_lock_holders_exclude_each_other_across_processes() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let a = Process::builder(add_async, (lock.clone(), counter.clone(), 200))
            .start_method(method)
            .start()
            .unwrap();
        let b = Process::builder(add_blocking, (lock.clone(), counter.clone(), 400))
            .start_method(method)
            .start()
            .unwrap();
        add_async(lock.clone(), counter.clone(), 200);
        assert_eq!(a.join().unwrap().exitcode(), 0);
        assert_eq!(b.join().unwrap().exitcode(), 0);
        assert_eq!(counter.get(), 4 * 200 * 2 + 400, "{method}: no lost update");
        assert!(!lock.is_locked());
    }
}

fn hold_and_die(lock: Lock, ev: Event) {
    let g = lock.acquire().unwrap();
    ev.set();
    std::mem::forget(g);
    std::process::exit(3);
}

#[test]
fn a_cancelled_acquire_holds_nothing_and_a_dead_holder_is_taken_over() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let ev = Event::new().unwrap();
        current().block_on(async {
            let g = lock.acquire_async().await.unwrap();
            // Cancelled while waiting (held by this process): nothing taken.
            for _ in 0..20 {
                assert!(tokio::time::timeout(Duration::from_millis(2), lock.acquire_async()).await.is_err());
            }
            drop(g);
            assert!(!lock.is_locked(), "a cancelled acquire left nothing held");
            let p = Process::builder(hold_and_die, (lock.clone(), ev.clone()))
                .start_method(method)
                .start()
                .unwrap();
            tokio::time::timeout(Duration::from_secs(60), ev.wait_async()).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(60), lock.acquire_async()).await.unwrap();
            let died = got.expect_err("the holder died holding it");
            assert_eq!(died.pid(), p.pid().unwrap());
            drop(died.into_inner());
            assert_eq!(p.join_async().await.unwrap().exitcode(), 3);
        });
    }
}

fn release_later(sem: Semaphore, n: u32) {
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(2));
        sem.release().unwrap();
    }
}

#[test]
fn semaphore_permits_released_in_other_processes_wake_async_acquirers() {
    for method in METHODS {
        let sem = Semaphore::new(0).unwrap();
        let p = Process::builder(release_later, (sem.clone(), 40)).start_method(method).start().unwrap();
        multi().block_on(async {
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let sem = sem.clone();
                    tokio::spawn(async move {
                        if i % 4 == 0 {
                            // Some are cancelled first: a wake they consumed must reach another.
                            let _ = tokio::time::timeout(Duration::from_millis(1), sem.acquire_async()).await;
                        }
                        tokio::time::timeout(Duration::from_secs(60), sem.acquire_async())
                            .await
                            .unwrap()
                            .forget();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(sem.get_value(), 0, "{method}: every permit taken exactly once");
        assert_eq!(p.join().unwrap().exitcode(), 0);
        let b = BoundedSemaphore::new(1).unwrap();
        current().block_on(async {
            let g = b.acquire_async().await;
            assert!(tokio::time::timeout(Duration::from_millis(5), b.acquire_async()).await.is_err());
            drop(g);
            drop(b.acquire_async().await);
        });
        assert_eq!(b.get_value(), 1);
    }
}

fn set_later(ev: Event) {
    std::thread::sleep(Duration::from_millis(20));
    ev.set();
}

fn notify_later(cond: Condition, flag: RawValue<u32>) {
    std::thread::sleep(Duration::from_millis(20));
    let _g = cond.acquire().unwrap();
    flag.set(1);
    cond.notify_all().unwrap();
}

#[test]
fn event_and_condition_waits_end_on_a_set_or_notify_from_another_process() {
    for method in METHODS {
        let ev = Event::new().unwrap();
        let p = Process::builder(set_later, (ev.clone(),)).start_method(method).start().unwrap();
        current().block_on(async {
            assert!(
                tokio::time::timeout(Duration::from_millis(1), ev.wait_async()).await.is_err() || ev.is_set()
            );
            tokio::time::timeout(Duration::from_secs(60), ev.wait_async()).await.unwrap();
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);

        let cond = Condition::new().unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let p = Process::builder(notify_later, (cond.clone(), flag.clone()))
            .start_method(method)
            .start()
            .unwrap();
        multi().block_on(async {
            let mut g = cond.acquire().unwrap();
            while flag.get() == 0 {
                g = tokio::time::timeout(Duration::from_secs(60), cond.wait_async(g)).await.unwrap();
            }
            drop(g);
        });
        assert_eq!(p.join().unwrap().exitcode(), 0);
        assert!(!cond.get_lock().is_locked());
    }
}

fn party(b: Barrier) -> u32 {
    b.wait().unwrap()
}

#[test]
fn barrier_wait_async_with_parties_in_other_processes_and_cancellation_breaks_it() {
    for method in METHODS {
        let b = Barrier::new(3).unwrap();
        let ctx = multiproc::get_context(Some(method));
        let hs: Vec<_> = (0..2).map(|_| ctx.spawn(party, (b.clone(),)).unwrap()).collect();
        let mine = current().block_on(async {
            tokio::time::timeout(Duration::from_secs(60), b.wait_async()).await.unwrap().unwrap()
        });
        let mut idx: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        idx.push(mine);
        idx.sort();
        assert_eq!(idx, [0, 1, 2], "{method}");

        let b = Barrier::new(2).unwrap();
        current().block_on(async {
            assert!(tokio::time::timeout(Duration::from_millis(10), b.wait_async()).await.is_err());
        });
        assert!(b.broken(), "a party that left breaks the barrier");
    }
}
