//! Managers and proxies across real processes (ports CPython's `_TestManager*`,
//! `_TestList`, `_TestDict`, `_TestNamespace`, `_TestMyManager`, `_TestRemoteManager` and the
//! proxy parts of `_TestQueue`, `_TestLock`, `_TestEvent`, `_TestBarrier` in
//! `_test_multiprocessing.py`).

use multiproc::connection::{Address, Client};
use multiproc::manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy,
    NamespaceProxy, QueueProxy, RLockProxy, RemoteErrorKind, SemaphoreProxy, ValueProxy,
};
use multiproc::{get_context, Connection, Manager, Pipe, Process, StartMethod};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

/// A user type served by the manager (CPython's `_TestMyManager` with `FooBar`).
pub struct Tally {
    items: Vec<String>,
    total: i64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

#[multiproc::register]
impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Tally { items: Vec::new(), total: 0 }
    }
    /// A tally starting from `total`.
    pub fn starting_at(total: i64) -> Self {
        Tally { items: Vec::new(), total }
    }
    /// Records `name` with `amount`; returns the new total.
    pub fn record(&mut self, name: &str, amount: i64) -> i64 {
        self.items.push(name.to_string());
        self.total += amount;
        self.total
    }
    /// The total so far.
    pub fn total(&self) -> i64 {
        self.total
    }
    /// The names recorded, in order.
    pub fn names(&self) -> Vec<String> {
        self.items.clone()
    }
    /// Panics in the server (the object must survive it).
    pub fn explode(&self) {
        panic!("boom")
    }
    fn _private(&self) {}
}

fn manager_with(method: StartMethod) -> Manager {
    Manager::builder().start_method(method).start().expect("manager starts")
}

// CPython: _TestContainers.test_list (and the tutorial's example 9).
#[test]
fn list_proxy_behaves_like_a_list() {
    let m = Manager::start().unwrap();
    let l = m.list((0..10u64).map(|i| i * i)).unwrap();
    assert_eq!(l.to_string(), "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
    let repr = format!("{l:?}");
    assert!(repr.starts_with("<ListProxy object, typeid 'list' at 0x"), "{repr}");
    assert_eq!(l.get(4).unwrap(), 16);
    assert_eq!(l.slice(2..5).unwrap(), vec![4, 9, 16]);
    assert_eq!(l.slice(8..100).unwrap(), vec![64, 81]);
    assert_eq!(l.get(10).unwrap_err().remote_kind(), Some(RemoteErrorKind::Index));
    l.append(100).unwrap();
    l.extend([5u64, 5]).unwrap();
    l.insert(0, 7).unwrap();
    assert_eq!(l.len().unwrap(), 14);
    assert_eq!(l.count(5).unwrap(), 2);
    assert_eq!(l.index(16).unwrap(), 5);
    assert!(l.contains(81).unwrap());
    l.remove(5).unwrap();
    assert_eq!(l.remove(12345).unwrap_err().remote_kind(), Some(RemoteErrorKind::Value));
    assert_eq!(l.pop().unwrap(), 5);
    assert_eq!(l.pop_at(0).unwrap(), 7);
    l.set(0, 42).unwrap();
    l.delete(1).unwrap();
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![4, 9, 16, 25, 36, 42, 49, 64, 81, 100]);
    l.sort_by_key(|x| std::cmp::Reverse(*x)).unwrap();
    assert_eq!(l.get(0).unwrap(), 100);
    l.reverse().unwrap();
    assert_eq!(l.get(0).unwrap(), 4);
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    assert_eq!(l.pop().unwrap_err().remote_kind(), Some(RemoteErrorKind::Index));

    let words = m.list::<String>([]).unwrap();
    words.append("b".to_string()).unwrap();
    let a = "a".to_string();
    words.append(&a).unwrap(); // by reference works too
    words.sort().unwrap();
    assert_eq!(words.to_string(), r#"["a", "b"]"#);
}

// CPython: _TestContainers.test_dict, test_namespace; _TestManagerValue / array.
#[test]
fn dict_namespace_value_and_array() {
    let m = Manager::start().unwrap();
    let d: DictProxy<String, Vec<u8>> = m.dict().unwrap();
    assert_eq!(d.insert("x".to_string(), vec![1]).unwrap(), None);
    assert_eq!(d.insert("x".to_string(), vec![2]).unwrap(), Some(vec![1]));
    d.update([("y".to_string(), vec![3]), ("z".to_string(), vec![])]).unwrap();
    assert_eq!(d.keys().unwrap(), ["x", "y", "z"]);
    assert_eq!(d.values().unwrap(), vec![vec![2], vec![3], vec![]]);
    assert_eq!(d.len().unwrap(), 3);
    assert!(d.contains_key("y".to_string()).unwrap());
    assert_eq!(d.remove("y".to_string()).unwrap(), Some(vec![3]));
    assert_eq!(d.get("y".to_string()).unwrap(), None);
    assert_eq!(d.setdefault("w".to_string(), vec![9]).unwrap(), vec![9]);
    assert_eq!(d.setdefault("w".to_string(), vec![0]).unwrap(), vec![9]);
    assert_eq!(d.popitem().unwrap(), Some(("w".to_string(), vec![9])));
    assert_eq!(d.to_string(), r#"{"x": [2], "z": []}"#);
    assert!(format!("{d:?}").starts_with("<DictProxy object, typeid 'dict' at 0x"));
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    let d2 = m.dict_from::<u32, f64, _, _>([(1, 0.5), (2, 1.5)]).unwrap();
    assert_eq!(d2.items().unwrap(), vec![(1, 0.5), (2, 1.5)]);

    let ns = m.namespace().unwrap();
    ns.set("name", "Bob").unwrap();
    ns.set("age", &31u32).unwrap();
    assert_eq!(ns.get::<String>("name").unwrap(), "Bob");
    assert_eq!(ns.get::<u32>("age").unwrap(), 31);
    assert_eq!(ns.names().unwrap(), ["name", "age"]);
    ns.remove("age").unwrap();
    assert!(!ns.contains("age").unwrap());
    assert_eq!(ns.get::<u32>("age").unwrap_err().remote_kind(), Some(RemoteErrorKind::Attribute));

    let v = m.value(1.5f64).unwrap();
    v.set(2.5).unwrap();
    assert_eq!(v.swap(3.0).unwrap(), 2.5);
    assert_eq!(v.get().unwrap(), 3.0);
    let a = m.array([1i32, 2, 3]).unwrap();
    a.set(1, -2).unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![1, -2, 3]);
    assert_eq!(a.slice(1..).unwrap(), vec![-2, 3]);
    assert_eq!(a.set(3, 0).unwrap_err().remote_kind(), Some(RemoteErrorKind::Index));
}

fn mutate_shared(
    l: ListProxy<u32>,
    d: DictProxy<u32, u32>,
    counter: ValueProxy<u64>,
    lock: LockProxy,
    worker: u32,
) -> multiproc::Result<()> {
    for i in 0..25 {
        l.append(worker * 100 + i)?;
        d.insert(worker * 100 + i, worker)?;
        let _held = lock.lock()?;
        let v = counter.get()?;
        counter.set(v + 1)?;
    }
    Ok(())
}

// The issue's "proxies mutated from 4 processes give the right final state", under each start
// method (CPython: _TestManagerRestart / test_list_proxy_in_list run across processes).
#[test]
fn proxies_mutated_from_four_processes_under_each_start_method() {
    for method in METHODS {
        let m = manager_with(method);
        let l = m.list::<u32>([]).unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        let counter = m.value(0u64).unwrap();
        let lock = m.lock().unwrap();
        let ctx = get_context(Some(method));
        let children: Vec<Process> = (0..4)
            .map(|w| {
                ctx.process(mutate_shared, (l.clone(), d.clone(), counter.clone(), lock.clone(), w))
                    .start()
                    .unwrap()
            })
            .collect();
        for c in children {
            assert!(c.join().unwrap().success(), "{method}");
        }
        let mut items = l.to_vec().unwrap();
        items.sort();
        let mut expected: Vec<u32> = (0..4).flat_map(|w| (0..25).map(move |i| w * 100 + i)).collect();
        expected.sort();
        assert_eq!(items, expected, "{method}");
        assert_eq!(d.len().unwrap(), 100, "{method}");
        assert_eq!(d.get(307).unwrap(), Some(3));
        assert_eq!(counter.get().unwrap(), 100, "{method}: the lock serialized the increments");
    }
}

fn use_tally(t: TallyProxy, who: String) -> i64 {
    t.record(&who, 10).expect("record")
}

// CPython: _TestMyManager.test_mymanager (a registered type used from a child).
#[test]
fn registered_type_works_through_its_proxy_from_a_child() {
    for method in METHODS {
        let m = manager_with(method);
        let t = TallyProxy::starting_at(&m, 5).unwrap();
        let r = get_context(Some(method))
            .spawn(use_tally, (t.clone(), "child".to_string()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, 15, "{method}");
        assert_eq!(t.record("parent", 1).unwrap(), 16);
        assert_eq!(t.names().unwrap(), ["child", "parent"]);
        assert!(format!("{t:?}").starts_with("<TallyProxy object, typeid 'Tally' at 0x"));
        let e = t.explode().unwrap_err();
        assert_eq!(e.remote_kind(), Some(RemoteErrorKind::Panicked), "{e}");
        assert_eq!(t.total().unwrap(), 16, "the object survives a panic in a method");
        let fresh = TallyProxy::new(&m).unwrap();
        assert_eq!(fresh.total().unwrap(), 0);
    }
}

// CPython: _TestQueue against manager queues (put/get, timeouts, Empty/Full, JoinableQueue).
#[test]
fn queue_proxies() {
    let m = Manager::start().unwrap();
    let q: QueueProxy<(u8, String)> = m.queue(2).unwrap();
    q.put((1, "a".into())).unwrap();
    q.put_nowait((2, "b".into())).unwrap();
    assert!(q.full().unwrap());
    assert_eq!(q.put_nowait((3, "c".into())).unwrap_err().remote_kind(), Some(RemoteErrorKind::Full));
    let t = Instant::now();
    let e = q.put_timeout((3, "c".into()), Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.remote_kind(), Some(RemoteErrorKind::Full));
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), (1, "a".to_string()));
    assert_eq!(q.get_nowait().unwrap(), (2, "b".to_string()));
    assert!(q.empty().unwrap());
    assert_eq!(q.get_nowait().unwrap_err().remote_kind(), Some(RemoteErrorKind::Empty));
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(Duration::from_millis(100)).unwrap_err().remote_kind(),
        Some(RemoteErrorKind::Empty)
    );
    assert!(t.elapsed() >= Duration::from_millis(90) && t.elapsed() < Duration::from_secs(5));

    let jq: JoinableQueueProxy<u32> = m.joinable_queue(0).unwrap();
    jq.put(1).unwrap();
    jq.put(2).unwrap();
    assert!(!jq.join_timeout(Duration::from_millis(10)).unwrap());
    jq.get().unwrap();
    jq.get().unwrap();
    jq.task_done().unwrap();
    jq.task_done().unwrap();
    jq.join().unwrap();
    assert_eq!(jq.task_done().unwrap_err().remote_kind(), Some(RemoteErrorKind::Value));
}

fn blocked_getter(q: QueueProxy<u32>, started: Connection) -> u32 {
    started.send(&()).unwrap();
    q.get().unwrap()
}

// A blocking call holds up only its caller: a child blocked in `get` while the parent keeps using
// the manager (Python's thread per connection).
#[test]
fn a_blocking_call_does_not_block_other_clients() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u32>(0).unwrap();
    let l = m.list::<u32>([]).unwrap();
    let (rx, tx) = Pipe::one_way().unwrap();
    let h = multiproc::spawn(blocked_getter, (q.clone(), tx)).unwrap();
    rx.recv::<()>().unwrap();
    for i in 0..100 {
        l.append(i).unwrap();
    }
    assert_eq!(l.len().unwrap(), 100);
    q.put(7).unwrap();
    assert_eq!(h.join().unwrap(), 7);
}

fn hold_lock_then_wait(lock: LockProxy, rlock: RLockProxy, held: Connection) {
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    held.send(&()).unwrap();
    std::thread::sleep(Duration::from_secs(60)); // killed by the test long before
}

// Better than Python: a lock whose holder process dies is released instead of blocking forever.
#[test]
fn locks_held_by_a_killed_process_are_released() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let rlock = m.rlock().unwrap();
    let (rx, tx) = Pipe::one_way().unwrap();
    let p = Process::new(hold_lock_then_wait, (lock.clone(), rlock.clone(), tx)).start().unwrap();
    rx.recv::<()>().unwrap();
    assert!(!lock.try_acquire().unwrap());
    assert!(!rlock.acquire_timeout(Duration::from_millis(50)).unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    assert!(lock.acquire_timeout(Duration::from_secs(10)).unwrap());
    assert!(rlock.acquire_timeout(Duration::from_secs(10)).unwrap());
    lock.release().unwrap();
    rlock.release().unwrap();
    assert_eq!(lock.release().unwrap_err().remote_kind(), Some(RemoteErrorKind::Runtime));
}

fn wait_then_report(
    e: EventProxy,
    b: BarrierProxy,
    c: ConditionProxy,
    s: SemaphoreProxy,
    ns: NamespaceProxy,
) -> usize {
    e.wait().unwrap();
    let i = b.wait().unwrap();
    s.acquire().unwrap();
    let _held = c.lock().unwrap();
    let n = ns.get::<u32>("n").unwrap_or(0);
    ns.set("n", &(n + 1)).unwrap();
    c.notify_all().unwrap();
    i
}

// CPython: _TestEvent, _TestBarrier, _TestCondition, _TestSemaphore with manager proxies.
#[test]
fn event_barrier_condition_semaphore_across_processes() {
    let m = Manager::start().unwrap();
    let e = m.event().unwrap();
    let b = m.barrier(3).unwrap();
    let c = m.condition().unwrap();
    let s = m.semaphore(2).unwrap();
    let ns = m.namespace().unwrap();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            multiproc::spawn(wait_then_report, (e.clone(), b.clone(), c.clone(), s.clone(), ns.clone()))
                .unwrap()
        })
        .collect();
    assert!(!e.is_set().unwrap());
    e.set().unwrap();
    let mine = b.wait().unwrap();
    {
        let _held = c.lock().unwrap();
        assert!(c.wait_for(|| ns.get::<u32>("n").unwrap_or(0) == 2, Some(Duration::from_secs(30))).unwrap());
    }
    let mut indices: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    indices.push(mine);
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(s.get_value().unwrap(), 0);
    assert!(!s.try_acquire().unwrap());
    s.release_n(2).unwrap();

    let bs = m.bounded_semaphore(1).unwrap();
    assert_eq!(bs.release().unwrap_err().remote_kind(), Some(RemoteErrorKind::Value));
    let b2 = m.barrier(2).unwrap();
    let t = Instant::now();
    assert_eq!(
        b2.wait_timeout(Duration::from_millis(50)).unwrap_err().remote_kind(),
        Some(RemoteErrorKind::BrokenBarrier)
    );
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert!(b2.broken().unwrap());
    b2.reset().unwrap();
    assert!(!b2.broken().unwrap());
    assert_eq!(b2.n_waiting().unwrap(), 0);
}

fn receive_and_use(conn: Connection) -> u64 {
    let l: ListProxy<u64> = conn.recv().unwrap();
    l.append(9).unwrap();
    l.len().unwrap() as u64
}

// Proxies travel through pipes too, and keep the object alive even when the sender drops its own
// proxy before the receiver has decoded it (CPython: test_pickling of proxies / incref).
#[test]
fn proxies_pass_through_pipes_and_references_are_counted() {
    for method in METHODS {
        let m = manager_with(method);
        let before = m.number_of_objects().unwrap();
        let (a, b) = Pipe::duplex().unwrap();
        {
            let l = m.list([1u64, 2]).unwrap();
            a.send(&l).unwrap();
        } // the only local proxy is gone; the one in the pipe keeps the list alive
        assert_eq!(m.number_of_objects().unwrap(), before + 1, "{method}");
        let h = get_context(Some(method)).spawn(receive_and_use, (b,)).unwrap();
        assert_eq!(h.join().unwrap(), 3, "{method}");
        assert_eq!(m.number_of_objects().unwrap(), before, "{method}: the child's drop released the list");
        let l = m.list([0u8]).unwrap();
        let l2 = l.clone();
        drop(l);
        assert_eq!(m.number_of_objects().unwrap(), before + 1);
        drop(l2);
        assert_eq!(m.number_of_objects().unwrap(), before);
    }
}

// CPython: test_remote (TCP, an authkey, objects shared by name) and the wrong-key case.
#[test]
fn remote_manager_over_tcp_refuses_a_wrong_authkey_and_keeps_serving() {
    let server = Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(b"right key")
        .start()
        .unwrap();
    let jobs = server.queue::<String>(0).unwrap();
    server.publish("jobs", &jobs).unwrap();
    let refused = Manager::connect(server.address().clone(), b"wrong key").unwrap_err();
    assert!(matches!(refused, multiproc::Error::Authentication(_)), "{refused}");
    let remote = Manager::connect(server.address().clone(), b"right key").unwrap();
    let q = remote.lookup::<QueueProxy<String>>("jobs").unwrap();
    q.put("from the remote side".to_string()).unwrap();
    assert_eq!(jobs.get().unwrap(), "from the remote side");
    assert!(remote.lookup::<LockProxy>("jobs").is_err(), "wrong proxy type");
    assert_eq!(
        remote.lookup::<LockProxy>("nothing").unwrap_err().remote_kind(),
        Some(RemoteErrorKind::NoSuchName)
    );
}

fn raw_tcp(address: &Address) -> std::net::TcpStream {
    match address {
        Address::Tcp(sa) => std::net::TcpStream::connect(sa).unwrap(),
        other => panic!("not TCP: {other}"),
    }
}

fn expect_disconnect(mut s: impl Read) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => assert!(Instant::now() < deadline, "the server kept talking"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{e}"),
        }
    }
}

// The issue's hostile-client cases: garbage, a truncated frame and a 4 GiB length, before and
// after authentication, each end in a disconnect and the server goes on serving others.
#[test]
fn garbage_truncated_and_huge_frames_are_disconnected_and_the_server_keeps_serving() {
    let key = b"k3y";
    let m = Manager::builder().address(Address::tcp("127.0.0.1:0").unwrap()).authkey(key).start().unwrap();
    let l = m.list([1u8]).unwrap();

    // Unauthenticated: garbage instead of an answer to the challenge.
    let mut s = raw_tcp(m.address());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_disconnect(s);
    // Unauthenticated: a header announcing 4 GiB.
    let mut s = raw_tcp(m.address());
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
    expect_disconnect(s);
    // Unauthenticated: a truncated frame, then hang up.
    let mut s = raw_tcp(m.address());
    s.write_all(&[32, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect_disconnect(s);
    assert_eq!(l.len().unwrap(), 1);

    // Authenticated, then hostile.
    let authed = |bytes: &[u8]| {
        let conn = Client::connect(m.address(), Some(key)).unwrap();
        // SAFETY: dup returns a new descriptor that the TcpStream then owns.
        let mut s = unsafe { std::net::TcpStream::from_raw_fd(libc::dup(conn.fileno())) };
        drop(conn);
        s.write_all(bytes).unwrap();
        s
    };
    expect_disconnect(authed(&[5, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xff]));
    expect_disconnect(authed(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3]));
    let s = authed(&[100, 0, 0, 0, 0, 0, 0, 0, 1]);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    expect_disconnect(s);

    l.append(2).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![1, 2]);
    let other = Manager::connect(m.address().clone(), key).unwrap();
    assert_eq!(other.number_of_objects().unwrap(), m.number_of_objects().unwrap());
}

// The same hostile bytes on a local (unix socket) manager, before authentication.
#[test]
fn garbage_on_a_local_manager_is_disconnected() {
    use std::os::linux::net::SocketAddrExt;
    let m = Manager::start().unwrap();
    let l = m.list([1u8]).unwrap();
    let Address::Abstract(name) = m.address().clone() else {
        panic!("a local manager uses an abstract address")
    };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    for bytes in [
        &b"garbage garbage garbage"[..],
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..],
        &[9, 0, 0, 0, 0, 0, 0, 0, 1][..],
    ] {
        let mut s = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_disconnect(s);
    }
    l.append(2).unwrap();
    assert_eq!(l.len().unwrap(), 2);
}

fn own_a_manager(method: StartMethod, report: Connection) {
    let m = manager_with(method);
    report.send(&m.server_pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(120)); // the test kills this process
}

/// Zombie children of the process `ppid`, from /proc.
fn zombie_children(ppid: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == ppid {
            if let Some(pid) = head.split_whitespace().next().and_then(|p| p.parse().ok()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Becomes a subreaper (so the orphaned manager is reparented here and can be waited for), runs
/// an owner process that starts a manager, kills the owner with SIGKILL, and reports how long
/// the manager took to die.
fn arbiter(method: StartMethod) -> Option<u128> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (rx, tx) = Pipe::one_way().unwrap();
    let owner = get_context(Some(method)).process(own_a_manager, (method, tx)).start().unwrap();
    let server_pid: i32 = rx.recv().unwrap();
    owner.kill().unwrap();
    owner.join().unwrap();
    let t = Instant::now();
    let mut died = None;
    while t.elapsed() < Duration::from_secs(5) {
        let mut status = 0;
        // SAFETY: waitpid on a pid that is (by now) our child, with a valid status pointer.
        let r = unsafe { libc::waitpid(server_pid, &mut status, libc::WNOHANG) };
        if r == server_pid
            || (r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
        {
            // SAFETY: kill with signal 0 only checks for existence.
            let gone = unsafe { libc::kill(server_pid, 0) } == -1;
            died = gone.then(|| t.elapsed().as_millis());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reap the other orphans reparented here (the owner's fork server), leaving no zombie; the
    // arbiter's own children are left to it.
    let me = std::process::id().to_string();
    let reap_from = Instant::now();
    while reap_from.elapsed() < Duration::from_secs(2) {
        let zombies = zombie_children(&me);
        if zombies.is_empty() && reap_from.elapsed() > Duration::from_millis(300) {
            break;
        }
        for pid in zombies {
            let mut status = 0;
            // SAFETY: waitpid on a zombie child of this process, with a valid status pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    died
}

// The issue's "the manager process dies with its owner and leaves nothing behind".
#[test]
fn the_manager_dies_with_its_owner() {
    for method in METHODS {
        let ms = multiproc::spawn(arbiter, (method,)).unwrap().join().unwrap();
        let ms = ms.unwrap_or_else(|| panic!("{method}: the manager outlived its SIGKILLed owner"));
        assert!(ms < 1000, "{method}: the manager took {ms} ms to die");
    }
}

// CPython: test_manager_shutdown: proxies fail (and never hang) once the server is gone.
#[test]
fn shutdown_stops_the_server_and_proxies_fail_cleanly() {
    let m = Manager::start().unwrap();
    let l = m.list([1u8]).unwrap();
    let pid = m.server_pid().unwrap();
    m.shutdown().unwrap();
    assert!(l.len().is_err());
    assert!(!m.process().unwrap().is_alive());
    // SAFETY: kill with signal 0 only checks for existence.
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "the server process is gone");
    m.shutdown().unwrap(); // twice is fine
}

// Storing a handle that owns a descriptor in a manager object is a clear error.
#[test]
fn descriptors_cannot_be_stored_in_a_manager() {
    let m = Manager::start().unwrap();
    let l = m.list::<Connection>([]).unwrap();
    let (a, _b) = Pipe::duplex().unwrap();
    let e = l.append(a).unwrap_err();
    assert!(e.to_string().contains("cannot be stored"), "{e}");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn fd_delta_after_manager_use(method: StartMethod) -> (usize, usize) {
    let mut before = 0;
    for round in 0..4 {
        if round == 1 {
            // After a first round, which starts what lives on (a fork server).
            multiproc::active_children();
            before = open_fds();
        }
        let m = manager_with(method);
        let l = m.list([1u32]).unwrap();
        let q = m.queue::<u32>(0).unwrap();
        let h = get_context(Some(method)).spawn(receive_and_use_list, (l.clone(), q.clone())).unwrap();
        assert_eq!(h.join().unwrap(), 2);
        assert_eq!(q.get().unwrap(), 5);
        drop((l, q));
        m.shutdown().unwrap();
    }
    multiproc::active_children(); // drops the bookkeeping of children that have ended
    (before, open_fds())
}

fn receive_and_use_list(l: ListProxy<u32>, q: QueueProxy<u32>) -> usize {
    l.append(2).unwrap();
    q.put(5).unwrap();
    l.len().unwrap()
}

// Nothing leaks: a process that starts, uses and shuts down managers ends with the descriptors it
// had (checked in a fresh child, away from the other tests' threads).
#[test]
fn no_descriptor_is_leaked() {
    for method in METHODS {
        let (before, after) =
            multiproc::spawn(fd_delta_after_manager_use, (method,)).unwrap().join().unwrap();
        assert_eq!(after, before, "{method}: {before} descriptors before, {after} after");
    }
}
