//! A broker pool across network namespaces, as across hosts: the Redis server in a namespace of
//! its own, two workers (this test binary run with `MP_REDIS_WORKER`) in another, the client in
//! this one; each reaches the server only over its own veth link, by the server's address on
//! that link, with a password. Needs root, `ip` and `redis-server`; skipped, saying why, without
//! them. Everything it creates (namespaces, links, processes) is its own and removed at the end.
#![cfg(feature = "redis")]

use multiproc::redis::{PoolBuilder, AUTHKEY_ENV, WORKER_ENV};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY_HEX: &str = "6e65746e732074657374"; // "netns test"

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The namespaces and links of one run, removed when dropped (with the processes in them).
struct Net {
    server_ns: String,
    worker_ns: String,
    client_link: String,
    children: Vec<Child>,
}

impl Net {
    /// `(server address seen from here, server address seen from the workers' namespace)`.
    fn build(&mut self, octet: u8) -> Result<(String, String), String> {
        let (s, w, c) = (self.server_ns.clone(), self.worker_ns.clone(), self.client_link.clone());
        let pid = std::process::id();
        let (sc, st, wt) = (format!("mps{pid}"), format!("mpt{pid}"), format!("mpw{pid}"));
        ip(&["netns", "add", &s])?;
        ip(&["netns", "add", &w])?;
        // Client <-> server: 10.213.O.1 here, 10.213.O.2 in the server's namespace.
        ip(&["link", "add", &c, "type", "veth", "peer", "name", &sc])?;
        ip(&["link", "set", &sc, "netns", &s])?;
        // Server <-> workers: 10.214.O.1 in the server's namespace, 10.214.O.2 in the workers'.
        ip(&["link", "add", &st, "type", "veth", "peer", "name", &wt])?;
        ip(&["link", "set", &st, "netns", &s])?;
        ip(&["link", "set", &wt, "netns", &w])?;
        let (a1, a2, b1, b2) = (
            format!("10.213.{octet}.1"),
            format!("10.213.{octet}.2"),
            format!("10.214.{octet}.1"),
            format!("10.214.{octet}.2"),
        );
        ip(&["addr", "add", &format!("{a1}/30"), "dev", &c])?;
        ip(&["link", "set", &c, "up"])?;
        for (ns, dev, addr) in [(&s, &sc, &a2), (&s, &st, &b1), (&w, &wt, &b2)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok((a2, b1))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill(); // our own child, by pid
            let _ = c.wait();
        }
        // Deleting a namespace deletes the veth ends in it, and with them their peers.
        let _ = ip(&["netns", "del", &self.server_ns]);
        let _ = ip(&["netns", "del", &self.worker_ns]);
        let _ = ip(&["link", "del", &self.client_link]);
    }
}

fn reachable(addr: &str, port: u16) -> bool {
    let a: std::net::SocketAddr = format!("{addr}:{port}").parse().unwrap();
    std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
}

/// The value and the pid of the broker worker (the task process's parent) that ran it.
fn square_where(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(20));
    (x * x, std::os::unix::process::parent_id())
}

#[test]
fn server_and_workers_in_separate_network_namespaces() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipping the network-namespace test (it creates namespaces and veth links)");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("`ip` (iproute2) not found: skipping the network-namespace test");
        return;
    }
    if Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("redis-server not found: skipping the network-namespace test");
        return;
    }
    let pid = std::process::id();
    let mut net = Net {
        server_ns: format!("mp-redis-s-{pid}"),
        worker_ns: format!("mp-redis-w-{pid}"),
        client_link: format!("mpc{pid}"),
        children: Vec::new(),
    };
    let (server_here, server_there) = match net.build((pid % 250) as u8 + 1) {
        Ok(a) => a,
        Err(e) if e.contains("Operation not permitted") || e.contains("Permission denied") => {
            eprintln!("cannot create network namespaces here ({e}): skipping");
            return;
        }
        Err(e) => panic!("setting up the namespaces: {e}"),
    };
    let server = Command::new("ip")
        .args(["netns", "exec", &net.server_ns, "redis-server", "--port", "6379", "--bind", "0.0.0.0"])
        .args(["--requirepass", "netns-pw", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    net.children.push(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reachable(&server_here, 6379) {
        assert!(Instant::now() < deadline, "redis-server in {} did not start", net.server_ns);
        // Waiting for the server to listen: it has no readiness signal.
        std::thread::sleep(Duration::from_millis(50));
    }

    let name = format!("netns-{pid}");
    let pool = PoolBuilder::new(&format!("redis://:netns-pw@{server_here}:6379/0"))
        .name(&name)
        .authkey(b"netns test")
        .build()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let w = Command::new("ip")
            .args(["netns", "exec", &net.worker_ns])
            .arg(&exe)
            .env(WORKER_ENV, format!("redis://:netns-pw@{server_there}:6379/0#{name}"))
            .env(AUTHKEY_ENV, KEY_HEX)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // `ip netns exec` becomes the program: the child's pid is the worker's.
        workers.push(w.id());
        net.children.push(w);
    }
    let got = pool.map(square_where, 0..40u64).chunksize(1).get().unwrap();
    assert_eq!(got.iter().map(|v| v.0).collect::<Vec<_>>(), (0..40u64).map(|x| x * x).collect::<Vec<_>>());
    let ran_on: std::collections::HashSet<u32> = got.iter().map(|v| v.1).collect();
    assert_eq!(ran_on, workers.iter().copied().collect(), "tasks should run on both workers");
    pool.close();
    pool.join().unwrap();
    // The workers leave once the pool is finished.
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in net.children.iter_mut().skip(1) {
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "a worker should leave cleanly when its pool finishes");
                break;
            }
            assert!(Instant::now() < deadline, "worker pid {} did not leave", c.id());
            // Polling a child's exit status (std has no wait with a timeout).
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
