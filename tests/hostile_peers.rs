//! Hostile or careless peers on the same host against the servers this library starts (a
//! `connection::Listener` and a manager's server), over loopback with raw sockets: a slow drip of
//! handshake bytes, many idle unauthenticated peers, the descriptor limit reached, a stalled large
//! authenticated header, a thousand concurrent clients, and what a serialized proxy carries.
//!
//! Each server runs in a child process of its own, so its `/proc/<pid>` figures (resident memory,
//! threads, CPU time) are its alone. Each test checks that a legitimate client is still served
//! within [`SERVED_WITHIN`] and that those figures stay bounded.

use multiproc::connection::{Address, Client, Listener};
use multiproc::manager::ListProxy;
use multiproc::{Connection, Error, Manager, Pipe, Process, StartMethod};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

const KEY: &[u8] = b"hostile-peers-test-key";

/// How soon a legitimate client must be served while the server is under attack (generous: a
/// loopback handshake and round trip take well under a millisecond).
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// The tests of this file run one at a time: each measures a server's CPU and timings, which a
/// thousand clients of another test would distort.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Upper bound of the servers' handshake deadline (the documented limit plus slack).
const HANDSHAKE_DEADLINE_BOUND: Duration = Duration::from_secs(16);

// ---------------------------------------------------------------------------------------------
// Measuring a server process.

#[derive(Debug, Clone, Copy)]
struct Figures {
    rss_kib: u64,
    threads: u64,
}

fn figures(pid: i32) -> Figures {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    Figures { rss_kib: field("VmRSS:"), threads: field("Threads:") }
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The fraction of one CPU a process used over `window`.
fn cpu_share_over(pid: i32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_time(pid), Instant::now());
    // Watching a process's CPU use over a window is the measurement itself, not synchronisation.
    std::thread::sleep(window);
    (cpu_time(pid) - c0).as_secs_f64() / t0.elapsed().as_secs_f64()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn assert_bounded(pid: i32, base: Figures, what: &str) {
    let now = figures(pid);
    assert!(
        now.threads <= base.threads + 8,
        "{what}: server threads grew from {} to {}",
        base.threads,
        now.threads
    );
    assert!(
        now.rss_kib <= base.rss_kib + 64 * 1024,
        "{what}: server RSS grew from {} KiB to {} KiB",
        base.rss_kib,
        now.rss_kib
    );
}

fn tcp_addr(a: &Address) -> SocketAddr {
    match a {
        Address::Tcp(sa) => *sa,
        other => panic!("not TCP: {other}"),
    }
}

/// Runs `f` on a thread and waits at most `within` for its result.
fn within<R: Send + 'static>(within: Duration, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within).ok()
}

/// Reads one handshake frame (`[len u32][nfds u32][payload]`) from a raw socket.
fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 8];
    s.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// Opens a raw TCP connection and reads the server's challenge (so the server has accepted it and
/// started the handshake); the peer then says nothing.
fn idle_peer(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SERVED_WITHIN * 5)).unwrap();
    let challenge = read_frame(&mut s).unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#"));
    s
}

// ---------------------------------------------------------------------------------------------
// The servers under test, each in a process of its own.

/// A `Listener` that echoes one string per connection, on the accepting thread.
fn listener_server(report: Connection) {
    let listener = Listener::bind(Address::tcp("127.0.0.1:0").unwrap(), Some(KEY)).unwrap();
    report.send(listener.address()).unwrap();
    loop {
        match listener.accept() {
            Ok(c) => {
                if let Ok(s) = c.recv::<String>() {
                    let _ = c.send(&s);
                }
            }
            Err(Error::Closed(_)) => return,
            Err(_) => continue,
        }
    }
}

struct Child {
    process: Process,
    pid: i32,
    address: Address,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.join();
    }
}

fn start_listener_server() -> Child {
    let (rx, tx) = Pipe::one_way().unwrap();
    let process = Process::builder(listener_server, (tx,)).start_method(StartMethod::Spawn).start().unwrap();
    let address: Address = rx.recv().unwrap();
    let pid = process.pid().unwrap();
    Child { process, pid, address }
}

/// A manager served in this child, its descriptors limited to those it has open now plus
/// `headroom` when that is given.
fn manager_server(headroom: Option<u64>, report: Connection) {
    if let Some(headroom) = headroom {
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let lim = libc::rlimit { rlim_cur: open + headroom, rlim_max: open + headroom };
        // SAFETY: setrlimit reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
    Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(KEY)
        .serve_forever(|a| report.send(a).unwrap())
        .unwrap();
}

fn start_manager_server(headroom: Option<u64>) -> Child {
    let (rx, tx) = Pipe::one_way().unwrap();
    let process =
        Process::builder(manager_server, (headroom, tx)).start_method(StartMethod::Spawn).start().unwrap();
    let address: Address = rx.recv().unwrap();
    let pid = process.pid().unwrap();
    Child { process, pid, address }
}

fn echo(address: &Address) -> String {
    let c = Client::connect(address, Some(KEY)).unwrap();
    c.send(&"ping".to_string()).unwrap();
    c.recv::<String>().unwrap()
}

/// A legitimate manager client: connects, authenticates, and uses a list.
fn use_manager(address: &Address) -> usize {
    let m = Manager::connect(address.clone(), KEY).unwrap();
    let l: ListProxy<u32> = m.list([1, 2, 3]).unwrap();
    l.append(4).unwrap();
    l.len().unwrap()
}

fn assert_listener_serves(server: &Child, what: &str) {
    let address = server.address.clone();
    let t = Instant::now();
    let got = within(SERVED_WITHIN, move || echo(&address));
    assert_eq!(got.as_deref(), Some("ping"), "{what}: no echo after {:?}", t.elapsed());
}

fn assert_manager_serves(server: &Child, what: &str) {
    let address = server.address.clone();
    let t = Instant::now();
    let got = within(SERVED_WITHIN, move || use_manager(&address));
    assert_eq!(got, Some(4), "{what}: not served after {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 1. A slow drip of handshake bytes.

/// A peer that reads the challenge, then sends a well-formed answer one byte every 400 ms;
/// returns how long the server let it go on, and whether it got to send every byte.
fn drip(addr: SocketAddr) -> (Duration, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    read_frame(&mut s).unwrap();
    let mut answer = vec![32u8, 0, 0, 0, 0, 0, 0, 0];
    answer.extend_from_slice(&[7u8; 32]);
    let t = Instant::now();
    for b in &answer {
        if s.write_all(&[*b]).is_err() {
            return (t.elapsed(), false);
        }
        let mut probe = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
        match s.read(&mut probe) {
            Ok(0) => return (t.elapsed(), false),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return (t.elapsed(), false),
            Ok(_) => return (t.elapsed(), true), // a verdict: the server read it all
        }
    }
    (t.elapsed(), true)
}

fn slow_drip(manager: bool) {
    let server = if manager { start_manager_server(None) } else { start_listener_server() };
    let what = if manager { "manager" } else { "listener" };
    if manager {
        assert_manager_serves(&server, what);
    } else {
        assert_listener_serves(&server, what);
    }
    let base = figures(server.pid);
    let addr = tcp_addr(&server.address);
    let drippers: Vec<_> = (0..4).map(|_| std::thread::spawn(move || drip(addr))).collect();
    // Each dripper is inside the handshake once it has read the challenge; give them a few
    // drops in.
    let cpu = cpu_share_over(server.pid, Duration::from_millis(1500));
    if manager {
        assert_manager_serves(&server, what);
    } else {
        assert_listener_serves(&server, what);
    }
    assert!(cpu < 0.5, "{what}: the server used {:.0}% of a CPU", cpu * 100.0);
    assert_bounded(server.pid, base, what);
    for d in drippers {
        let (lasted, finished) = d.join().unwrap();
        assert!(!finished, "{what}: a dripping peer was let finish its handshake after {lasted:?}");
        assert!(lasted < HANDSHAKE_DEADLINE_BOUND, "{what}: a dripping peer lasted {lasted:?}");
    }
}

#[test]
fn a_slow_drip_of_handshake_bytes_delays_no_one_and_is_cut_off_listener() {
    let _serial = serial();
    slow_drip(false);
}

#[test]
fn a_slow_drip_of_handshake_bytes_delays_no_one_and_is_cut_off_manager() {
    let _serial = serial();
    slow_drip(true);
}

// ---------------------------------------------------------------------------------------------
// 2. Many idle unauthenticated peers; the descriptor limit reached.

fn idle_peers(manager: bool) {
    let server = if manager { start_manager_server(None) } else { start_listener_server() };
    let what = if manager { "manager" } else { "listener" };
    let addr = tcp_addr(&server.address);
    let base = figures(server.pid);
    let idle: Vec<TcpStream> = (0..300).map(|_| idle_peer(addr)).collect();
    let cpu = cpu_share_over(server.pid, Duration::from_millis(500));
    if manager {
        assert_manager_serves(&server, what);
    } else {
        assert_listener_serves(&server, what);
    }
    assert!(cpu < 0.5, "{what}: the server used {:.0}% of a CPU", cpu * 100.0);
    assert_bounded(server.pid, base, what);
    drop(idle);
}

#[test]
fn many_idle_unauthenticated_peers_cost_no_threads_and_delay_no_one_listener() {
    let _serial = serial();
    idle_peers(false);
}

#[test]
fn many_idle_unauthenticated_peers_cost_no_threads_and_delay_no_one_manager() {
    let _serial = serial();
    idle_peers(true);
}

#[test]
fn a_manager_out_of_descriptors_neither_spins_nor_stays_stuck() {
    let _serial = serial();
    let server = start_manager_server(Some(24));
    let addr = tcp_addr(&server.address);
    assert_manager_serves(&server, "before");
    let base = figures(server.pid);
    // SAFETY: getrlimit writes the struct we pass.
    let limit = {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", server.pid)).unwrap();
        let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
        line.split_whitespace().nth(3).unwrap().parse::<usize>().unwrap()
    };
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(addr).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(server.pid) < limit {
        assert!(
            Instant::now() < deadline,
            "the server holds {} of {limit} descriptors",
            open_fds(server.pid)
        );
        std::thread::yield_now();
    }
    let cpu = cpu_share_over(server.pid, Duration::from_secs(1));
    assert!(cpu < 0.25, "out of descriptors, the server used {:.0}% of a CPU", cpu * 100.0);
    assert_bounded(server.pid, base, "out of descriptors");
    drop(idle);
    assert_manager_serves(&server, "once descriptors are free");
}

// ---------------------------------------------------------------------------------------------
// 3. A stalled large authenticated header.

#[test]
fn a_stalled_large_header_costs_no_memory() {
    let _serial = serial();
    let server = start_manager_server(None);
    assert_manager_serves(&server, "before");
    let base = figures(server.pid);
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let conn = Client::connect(&server.address, Some(KEY)).unwrap();
            // SAFETY: dup returns a new descriptor that the TcpStream then owns.
            let mut s = unsafe { TcpStream::from_raw_fd(libc::dup(conn.fileno())) };
            drop(conn);
            let mut header = ((256u32 << 20) - 64).to_le_bytes().to_vec();
            header.extend_from_slice(&[0, 0, 0, 0, 1]);
            s.write_all(&header).unwrap();
            s
        })
        .collect();
    assert_manager_serves(&server, "with stalled headers");
    // Watch the server for a while: memory must not follow what the headers announce.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_bounded(server.pid, base, "stalled headers");
        std::thread::yield_now();
    }
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// 4. A burst of a thousand concurrent clients.

/// A TCP socket whose `connect` to `addr` has started (non-blocking).
fn start_connect(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else { panic!("IPv4 only") };
    // SAFETY: plain system calls; the descriptor is handed to the TcpStream, which owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS));
        TcpStream::from_raw_fd(fd)
    }
}

// A burst of a thousand connections, all started within a few milliseconds: each is accepted
// and gets the server's challenge at once (none waits for the kernel to retry a dropped SYN),
// and they cost the server no thread.
fn burst(manager: bool) {
    const BURST: usize = 1000;
    let server = if manager { start_manager_server(None) } else { start_listener_server() };
    let what = if manager { "manager" } else { "listener" };
    let addr = tcp_addr(&server.address);
    let base = figures(server.pid);
    let t = Instant::now();
    let socks: Vec<TcpStream> = (0..BURST).map(|_| start_connect(addr)).collect();
    let mut waiting: Vec<usize> = (0..BURST).collect();
    let deadline = t + SERVED_WITHIN;
    while !waiting.is_empty() {
        let now = Instant::now();
        assert!(
            now < deadline,
            "{what}: {} of {BURST} connections heard nothing in {:?}",
            waiting.len(),
            t.elapsed()
        );
        let mut pfds: Vec<libc::pollfd> = waiting
            .iter()
            .map(|&i| libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&socks[i]),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll reads and writes the array we pass.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        let mut still = Vec::new();
        for (&i, p) in waiting.iter().zip(&pfds) {
            if p.revents & libc::POLLIN == 0 {
                still.push(i);
            }
        }
        waiting = still;
    }
    assert!(t.elapsed() < SERVED_WITHIN, "{what}: the burst took {:?}", t.elapsed());
    assert_bounded(server.pid, base, what);
    drop(socks);
    if manager {
        assert_manager_serves(&server, what);
    } else {
        assert_listener_serves(&server, what);
    }
}

#[test]
fn a_burst_of_a_thousand_connections_is_accepted_at_once_listener() {
    let _serial = serial();
    burst(false);
}

#[test]
fn a_burst_of_a_thousand_connections_is_accepted_at_once_manager() {
    let _serial = serial();
    burst(true);
}

#[test]
fn a_thousand_concurrent_clients_are_all_served() {
    let _serial = serial();
    const CLIENTS: usize = 1000;
    let server = start_manager_server(None);
    assert_manager_serves(&server, "before");
    let base = figures(server.pid);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (b, a) = (barrier.clone(), server.address.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    b.wait();
                    Manager::connect(a, KEY).map(|_| ()).map_err(|e| e.to_string())
                })
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = threads.into_iter().filter_map(|t| t.join().unwrap().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert_manager_serves(&server, "after the burst");
    // Authenticated connections cost a thread each while they last; all have ended now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while figures(server.pid).threads > base.threads + 8 {
        assert!(Instant::now() < deadline, "server threads stay at {}", figures(server.pid).threads);
        std::thread::yield_now();
    }
}

#[test]
fn a_connect_nobody_accepts_is_a_connect_error_not_an_authentication_error() {
    let _serial = serial();
    // A bound socket that never listens refuses connections.
    let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    let e = Client::connect(&Address::Tcp(addr), Some(KEY)).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    // A listener whose owner never accepts: the kernel completes the connection, nobody answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    let e = Client::connect(&Address::Tcp(silent.local_addr().unwrap()), Some(KEY)).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("connect"), "{e}");
    assert!(t.elapsed() < HANDSHAKE_DEADLINE_BOUND, "the client waited {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 5. What a serialized proxy carries.

#[test]
fn a_serialized_proxy_carries_no_authkey_and_decoding_it_opens_no_connection() {
    let _serial = serial();
    let key = b"a-very-distinctive-manager-secret";
    let m = Manager::builder().authkey(key).start().unwrap();
    let l: ListProxy<u32> = m.list([1, 2]).unwrap();
    let bytes = postcard::to_stdvec(&l).unwrap();
    assert!(!bytes.windows(key.len()).any(|w| w == key), "the encoded proxy holds the authkey");
    // Decoding connects to nothing: it works even when the server is gone, and the first use
    // reports the error.
    let again: ListProxy<u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(again.len().unwrap(), 2);
    let late = postcard::to_stdvec(&l).unwrap();
    m.shutdown().unwrap();
    let decoded: ListProxy<u32> = postcard::from_bytes(&late).expect("decoding opens no connection");
    assert!(decoded.len().is_err());
}

fn use_received(conn: Connection) -> usize {
    let l: ListProxy<u32> = conn.recv().unwrap();
    l.append(7).unwrap();
    l.len().unwrap()
}

// A child started before the manager existed still uses proxies sent to it later: it holds the
// process tree's authkey, as Python's children hold `current_process().authkey`.
#[test]
fn a_proxy_sent_to_an_older_child_still_works_under_each_start_method() {
    let _serial = serial();
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver] {
        let (rx, tx) = Pipe::one_way().unwrap();
        let child = multiproc::get_context(Some(method)).spawn(use_received, (rx,)).unwrap();
        let m = Manager::builder().start_method(method).start().unwrap();
        let l = m.list([1u32]).unwrap();
        tx.send(&l).unwrap();
        assert_eq!(child.join().unwrap(), 2, "{method}");
        assert_eq!(l.to_vec().unwrap(), vec![1, 7], "{method}");
    }
}

fn use_without_the_key(conn: Connection) -> String {
    let l: ListProxy<u32> = conn.recv().expect("a proxy decodes anywhere: it connects to nothing");
    match l.len() {
        Err(Error::Authentication(_)) => "refused".into(),
        other => format!("{other:?}"),
    }
}

// A proxy that reaches a process which never held its manager's key (here a child started
// before a manager with a key of its own) cannot be used there: the key did not travel with it.
#[test]
fn a_proxy_sent_to_a_process_without_its_key_is_refused_on_first_use() {
    let _serial = serial();
    let (rx, tx) = Pipe::one_way().unwrap();
    let child = multiproc::get_context(Some(StartMethod::Spawn)).spawn(use_without_the_key, (rx,)).unwrap();
    let m = Manager::builder().authkey(b"a key the child never saw").start().unwrap();
    let l = m.list([1u32]).unwrap();
    tx.send(&l).unwrap();
    assert_eq!(child.join().unwrap(), "refused");
    assert_eq!(l.len().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// 6. Unclaimed references expire.

#[test]
fn an_unclaimed_serialized_proxy_expires() {
    let _serial = serial();
    let m = Manager::builder().unclaimed_reference_expiry(Duration::from_millis(300)).start().unwrap();
    let before = m.number_of_objects().unwrap();
    let l: ListProxy<u32> = m.list([1]).unwrap();
    let never_claimed = postcard::to_stdvec(&l).unwrap();
    drop(l);
    assert_eq!(m.number_of_objects().unwrap(), before + 1, "the serialized proxy holds the list");
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.number_of_objects().unwrap() != before {
        assert!(Instant::now() < deadline, "the unclaimed reference never expired");
        std::thread::yield_now();
    }
    // Claimed in time, a proxy keeps working past the expiry.
    let l: ListProxy<u32> = m.list([5]).unwrap();
    let bytes = postcard::to_stdvec(&l).unwrap();
    let claimed: ListProxy<u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(claimed.len().unwrap(), 1);
    drop(l);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(600) {
        assert_eq!(claimed.len().unwrap(), 1);
    }
    drop(never_claimed);
}

/// Sends one manager request frame (`Call { id, method }` as postcard writes it, then `args`)
/// on an authenticated raw connection and returns the reply's status byte (0 ok, 1 error).
fn raw_call(s: &mut TcpStream, id: u64, method: &str, args: &[u8]) -> u8 {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut payload = vec![0u8]; // Request::Call
    varint(&mut payload, id);
    varint(&mut payload, method.len() as u64);
    payload.extend_from_slice(method.as_bytes());
    payload.extend_from_slice(args);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&payload);
    s.write_all(&frame).unwrap();
    let reply = read_frame(s).unwrap();
    reply[0]
}

// Arguments with bytes a proxy would never write after them are refused (the server checks
// what it can decode: an index, a length-prefixed item, a sequence), and the list is unchanged.
#[test]
fn arguments_with_trailing_garbage_are_refused_and_store_nothing() {
    let _serial = serial();
    use multiproc::manager::Proxy;
    let m = Manager::builder().address(Address::tcp("127.0.0.1:0").unwrap()).authkey(KEY).start().unwrap();
    let l: ListProxy<u8> = m.list([1, 2]).unwrap();
    let id = l.base().id();
    let conn = Client::connect(m.address(), Some(KEY)).unwrap();
    // SAFETY: dup returns a new descriptor that the TcpStream then owns.
    let mut s = unsafe { TcpStream::from_raw_fd(libc::dup(conn.fileno())) };
    drop(conn);
    // set(0, 5): index 0, then the item as a byte string of length 1.
    assert_eq!(raw_call(&mut s, id, "set", &[0, 1, 5]), 0);
    assert_eq!(raw_call(&mut s, id, "set", &[1, 1, 6, 0xde, 0xad]), 1, "set with garbage after it");
    // extend([7]): one item of one byte.
    assert_eq!(raw_call(&mut s, id, "extend", &[1, 1, 7]), 0);
    assert_eq!(raw_call(&mut s, id, "extend", &[1, 1, 8, 0xbe, 0xef]), 1, "extend with garbage after it");
    assert_eq!(raw_call(&mut s, id, "insert", &[0, 1, 9, 0xff]), 1, "insert with garbage after it");
    assert_eq!(l.to_vec().unwrap(), vec![5, 2, 7]);
}
