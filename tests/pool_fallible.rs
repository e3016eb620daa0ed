//! `Pool::try_imap` / `try_imap_unordered` over an input that can fail, under every start method:
//! the input's error surfaces at its position (ordered) or as an item (unordered), nothing past it
//! is read, items before it are all computed, the pool stays usable, and read-ahead stays within
//! the documented `(4 × processes + 16) × chunksize`.

use multiproc::{Error, ImapError, Pool, StartMethod};
use std::cell::Cell;
use std::rc::Rc;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];
const PROCESSES: usize = 2;

fn pool(method: StartMethod) -> Pool {
    Pool::builder().processes(PROCESSES).start_method(method).build().unwrap()
}

fn triple(x: u64) -> u64 {
    x * 3
}

fn triple_but_panic_on_5(x: u64) -> u64 {
    assert_ne!(x, 5, "task 5 panics");
    x * 3
}

/// `0..` with an `Err` at `bad`; reading past the error panics, so a test that passes never did.
fn failing_at(bad: u64) -> impl Iterator<Item = Result<u64, String>> {
    (0u64..).map(move |i| match i {
        i if i < bad => Ok(i),
        i if i == bad => Err(format!("bad item {i}")),
        i => panic!("item {i} was read past the input's error"),
    })
}

fn ordered_error_at_its_position(p: &Pool, m: StartMethod) {
    for chunksize in [1, 4] {
        let got: Vec<_> = p.try_imap(triple, failing_at(13)).chunksize(chunksize).submit().unwrap().collect();
        assert_eq!(got.len(), 14, "{m} chunksize {chunksize}");
        for (i, r) in got[..13].iter().enumerate() {
            assert_eq!(r.as_ref().ok(), Some(&(3 * i as u64)), "{m} chunksize {chunksize} item {i}");
        }
        match &got[13] {
            Err(ImapError::Input(e)) => assert_eq!(e, "bad item 13"),
            other => panic!("{m}: expected the input's error last, got {other:?}"),
        }
    }
    // The first item failing: nothing is computed, the error alone comes back.
    let got: Vec<_> = p.try_imap(triple, failing_at(0)).submit().unwrap().collect();
    assert!(matches!(got.as_slice(), [Err(ImapError::Input(e))] if e == "bad item 0"), "{m}: {got:?}");
    // No error at all: the same values as imap.
    let got: Vec<u64> = p
        .try_imap(triple, (0..50u64).map(Ok::<_, String>))
        .submit()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, (0..50).map(|x| x * 3).collect::<Vec<_>>(), "{m}");
}

fn unordered_error_as_an_item(p: &Pool, m: StartMethod) {
    for chunksize in [1, 3] {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for r in p.try_imap_unordered(triple, failing_at(10)).chunksize(chunksize).submit().unwrap() {
            match r {
                Ok(v) => values.push(v),
                Err(e) => errors.push(e.into_input().expect("an input error, not a task's")),
            }
        }
        values.sort();
        assert_eq!(values, (0..10).map(|x| x * 3).collect::<Vec<_>>(), "{m} chunksize {chunksize}");
        assert_eq!(errors, vec!["bad item 10".to_string()], "{m} chunksize {chunksize}");
    }
}

fn task_errors_and_input_errors_keep_their_places(p: &Pool, m: StartMethod) {
    let got: Vec<_> = p.try_imap(triple_but_panic_on_5, failing_at(8)).submit().unwrap().collect();
    assert_eq!(got.len(), 9, "{m}");
    for (i, r) in got.iter().enumerate() {
        match (i, r) {
            (5, Err(ImapError::Pool(Error::Task(e)))) => {
                assert!(e.to_string().contains("task 5 panics"), "{m}: {e}")
            }
            (8, Err(ImapError::Input(e))) => assert_eq!(e, "bad item 8"),
            (i, Ok(v)) if i != 5 && i != 8 => assert_eq!(*v, 3 * i as u64),
            (i, other) => panic!("{m}: item {i}: {other:?}"),
        }
    }
}

fn read_ahead_is_bounded(p: &Pool, m: StartMethod) {
    for chunksize in [1usize, 5] {
        let bound = (4 * PROCESSES + 16) * chunksize;
        let read = Rc::new(Cell::new(0usize));
        let counter = read.clone();
        let endless = (0u64..).map(move |i| {
            counter.set(counter.get() + 1);
            Ok::<_, String>(i)
        });
        let mut it = p.try_imap(triple, endless).chunksize(chunksize).submit().unwrap();
        assert!(read.get() <= bound, "{m}: {} read before any result", read.get());
        for yielded in 1..=200usize {
            assert_eq!(it.next().unwrap().unwrap(), 3 * (yielded as u64 - 1));
            assert!(
                read.get() <= yielded + bound,
                "{m} chunksize {chunksize}: {} read after {yielded} results (bound {bound})",
                read.get()
            );
        }
        drop(it);
        // Unordered reads ahead no further.
        let read = Rc::new(Cell::new(0usize));
        let counter = read.clone();
        let endless = (0u64..).map(move |i| {
            counter.set(counter.get() + 1);
            Ok::<_, String>(i)
        });
        let it = p.try_imap_unordered(triple, endless).chunksize(chunksize).submit().unwrap();
        for (yielded, r) in it.take(200).enumerate() {
            r.unwrap();
            assert!(read.get() <= yielded + 1 + bound, "{m}: unordered read {} ahead", read.get());
        }
    }
}

#[test]
fn fallible_imap_under_every_start_method() {
    for m in METHODS {
        let p = pool(m);
        ordered_error_at_its_position(&p, m);
        unordered_error_as_an_item(&p, m);
        task_errors_and_input_errors_keep_their_places(&p, m);
        read_ahead_is_bounded(&p, m);
        // The pool is still usable, and closes and joins with no iterator left open.
        assert_eq!(p.map(triple, 0..10u64).get().unwrap(), (0..10).map(|x| x * 3).collect::<Vec<_>>(), "{m}");
        p.close();
        p.join().unwrap();
    }
}

#[test]
fn an_iterator_dropped_after_the_error_leaves_the_pool_joinable() {
    let p = pool(StartMethod::Forkserver);
    let mut it = p.try_imap(triple, failing_at(30)).submit().unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    drop(it);
    let mut it = p.try_imap_unordered(triple, failing_at(3)).submit().unwrap();
    let first = it.next().unwrap();
    assert!(first.is_ok() || matches!(first, Err(ImapError::Input(_))));
    drop(it);
    assert_eq!(p.apply(triple, (7,)).unwrap(), 21);
    p.close();
    p.join().unwrap();
}

#[test]
fn bad_chunksize_is_refused_without_reading_the_input() {
    let p = pool(StartMethod::Fork);
    let read = Rc::new(Cell::new(0usize));
    let counter = read.clone();
    let input = (0..5u64).map(move |i| {
        counter.set(counter.get() + 1);
        Ok::<_, String>(i)
    });
    assert!(matches!(p.try_imap(triple, input).chunksize(0).submit(), Err(Error::InvalidState(_))));
    assert_eq!(read.get(), 0);
}
