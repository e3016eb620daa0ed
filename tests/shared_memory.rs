//! Named shared memory across processes (CPython's `_TestSharedMemory`).

use multiproc::{get_context, SharedMemory, StartMethod};
use std::path::Path;

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

fn exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm/{name}")).exists()
}

fn read_and_write(name: String) -> Vec<u8> {
    let shm = SharedMemory::attach(&name).unwrap();
    let mut buf = vec![0u8; 5];
    shm.read(0, &mut buf).unwrap();
    shm.write(5, b"world").unwrap();
    buf
}

fn through_argument(shm: SharedMemory) -> usize {
    shm.write(0, b"X").unwrap();
    shm.size()
}

#[test]
fn visible_across_processes_by_name_and_as_an_argument() {
    // test_shared_memory_basics, test_shared_memory_across_processes
    for m in METHODS {
        let shm = SharedMemory::create(None, 64).unwrap();
        assert!(shm.name().starts_with("mp-"));
        shm.write(0, b"hello").unwrap();
        let seen =
            get_context(Some(m)).spawn(read_and_write, (shm.name().to_string(),)).unwrap().join().unwrap();
        assert_eq!(seen, b"hello", "{m}");
        let mut buf = [0u8; 5];
        shm.read(5, &mut buf).unwrap();
        assert_eq!(&buf, b"world");

        let other = SharedMemory::attach(shm.name()).unwrap();
        let size = get_context(Some(m)).spawn(through_argument, (other,)).unwrap().join().unwrap();
        assert_eq!(size, 64);
        shm.read(0, &mut buf[..1]).unwrap();
        assert_eq!(buf[0], b'X');
    }
}

#[test]
fn the_creator_unlinks_on_drop_and_attachers_keep_their_mapping() {
    let shm = SharedMemory::create(None, 10).unwrap();
    let name = shm.name().to_string();
    assert!(exists(&name));
    let attached = SharedMemory::attach(&name).unwrap();
    drop(shm);
    assert!(!exists(&name), "nothing left in /dev/shm");
    attached.write(0, b"still mapped").unwrap_err(); // 12 bytes do not fit in 10
    attached.write(0, b"mapped").unwrap();
    assert!(SharedMemory::attach(&name).is_err());
}

#[test]
fn misuse_is_an_error() {
    // test_shared_memory_cleaned_after_process_termination (names), invalid sizes
    assert!(SharedMemory::create(None, 0).is_err());
    let shm = SharedMemory::create(None, 8).unwrap();
    assert!(SharedMemory::create(Some(shm.name()), 8).is_err(), "the name exists");
    assert!(shm.write(4, &[0; 8]).is_err());
    assert!(shm.read(usize::MAX, &mut [0; 2]).is_err());
    shm.unlink().unwrap();
    shm.unlink().unwrap();
    assert!(SharedMemory::attach("mp-no-such-block").is_err());
}

fn create_and_report(conn: multiproc::Connection) {
    let shm = SharedMemory::create(None, 32).unwrap();
    conn.send(&shm.name().to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_killed_creators_block_is_swept_by_the_next_create() {
    for m in METHODS {
        let (parent, child) = multiproc::Pipe::duplex().unwrap();
        let p = multiproc::Process::builder(create_and_report, (child,)).start_method(m).start().unwrap();
        let name: String = parent.recv().unwrap();
        assert!(exists(&name));
        p.kill().unwrap();
        p.join().unwrap();
        // No assertion that the orphan is still there: any create in this test binary or another
        // process may sweep it from here on, which is the behaviour under test.
        drop(SharedMemory::create(None, 8).unwrap());
        assert!(!exists(&name), "{m}: the next create sweeps the orphan");
    }
}

fn fill_stripe(a: multiproc::RawArray<u64>, v: multiproc::RawValue<u32>, k: usize) {
    for i in (k..a.len()).step_by(3) {
        a.set(i, i as u64 * 7).unwrap();
    }
    if k == 0 {
        v.set(99);
    }
}

#[test]
fn raw_array_and_raw_value_are_shared_with_children() {
    // test_sharedctypes (RawValue / RawArray)
    for m in METHODS {
        let a = multiproc::RawArray::<u64>::zeroed(30).unwrap();
        let v = multiproc::RawValue::new(1u32).unwrap();
        let ps: Vec<_> = (0..3)
            .map(|k| {
                multiproc::Process::builder(fill_stripe, (a.clone(), v.clone(), k)).start_method(m).start()
            })
            .collect::<Result<_, _>>()
            .unwrap();
        for p in ps {
            assert_eq!(p.join().unwrap().exitcode(), 0, "{m}");
        }
        assert_eq!(a.to_vec(), (0..30).map(|i| i * 7).collect::<Vec<u64>>(), "{m}");
        assert_eq!(v.get(), 99, "{m}");
    }
}

#[test]
fn raw_forms_check_bounds_lengths_and_types() {
    let a = multiproc::RawArray::from_slice(&[1i32, 2, 3]).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a.get(2), Some(3));
    assert_eq!(a.get(3), None);
    assert!(a.set(3, 0).is_err(), "index out of range");
    assert!(a.copy_from_slice(&[1, 2]).is_err(), "length mismatch");
    a.copy_from_slice(&[4, 5, 6]).unwrap();
    assert_eq!(format!("{a:?}"), "RawArray([4, 5, 6])");
    assert!(multiproc::RawArray::<u8>::zeroed(0).unwrap().is_empty());

    // A handle arriving as another element type is refused.
    let (x, y) = multiproc::Pipe::duplex().unwrap();
    x.send(&multiproc::RawValue::new(5u64).unwrap()).unwrap();
    assert!(y.recv::<multiproc::RawArray<u32>>().is_err());
}

#[test]
fn get_obj_is_the_same_memory_without_the_lock() {
    let v = multiproc::Value::new(3i64).unwrap();
    let raw = v.get_obj();
    let _held = v.get_lock().acquire().unwrap();
    raw.set(4); // does not wait for the lock held above
    drop(_held);
    assert_eq!(v.get(), 4);
    let arr = multiproc::Array::from_slice(&[1u8, 2]).unwrap();
    arr.get_obj().set(1, 9).unwrap();
    assert_eq!(arr.to_vec(), vec![1, 9]);
}

fn increment_holding_get_lock(v: multiproc::Value<i64>, a: multiproc::Array<u32>, n: u32) {
    for _ in 0..n {
        // Python: `with v.get_lock(): v.value += 1`, and the same for an element of an Array.
        let held = v.get_lock().acquire().unwrap();
        v.set(v.get() + 1);
        drop(held);
        let held = a.get_lock().acquire().unwrap();
        a.set(1, a.get(1).unwrap() + 1).unwrap();
        assert_eq!(a.to_vec().len(), 3);
        drop(held);
    }
}

#[test]
fn reading_and_writing_while_holding_get_lock_neither_hangs_nor_loses_counts() {
    // test_value, test_array (synchronized): the lock that get_lock() hands out is an RLock, so
    // the holder's own reads and writes go through.
    for m in METHODS {
        let v = multiproc::Value::new(0i64).unwrap();
        let a = multiproc::Array::new(3, 0u32).unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                get_context(Some(m))
                    .spawn(increment_holding_get_lock, (v.clone(), a.clone(), 10_000))
                    .unwrap()
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut hung = Vec::new();
        for h in hs {
            match h.join_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(r) => r.unwrap(),
                Err(h) => {
                    h.process().kill().unwrap();
                    hung.push(h.pid());
                }
            }
        }
        assert!(hung.is_empty(), "{m}: processes {hung:?} hung holding get_lock()");
        assert_eq!(v.get(), 40_000, "{m}");
        assert_eq!(a.to_vec(), vec![0, 40_000, 0], "{m}");
    }
}

fn increment_through_guards(v: multiproc::Value<i64>, a: multiproc::Array<u32>, n: u32) {
    for _ in 0..n {
        *v.lock() += 1;
        let mut xs = a.lock();
        xs[2] += 1;
    }
}

#[test]
fn guards_give_the_value_by_reference_across_processes() {
    for m in METHODS {
        let v = multiproc::Value::new(0i64).unwrap();
        let a = multiproc::Array::new(3, 0u32).unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                get_context(Some(m)).spawn(increment_through_guards, (v.clone(), a.clone(), 5000)).unwrap()
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*v.lock(), 20_000, "{m}");
        assert_eq!(&*a.lock(), &[0, 0, 20_000], "{m}");
    }
}
