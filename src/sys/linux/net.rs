//! Listening and connecting stream sockets: unix (path or abstract name) and TCP, plus the
//! plain, descriptor-free reads and writes the manager protocol uses.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Where a unix socket lives: a filesystem path, or a name in Linux's abstract namespace
/// (no file, gone when the last descriptor closes).
pub(crate) enum UnixName<'a> {
    Path(&'a [u8]),
    Abstract(&'a [u8]),
}

fn new_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    let fd = syscall!(socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unix_sockaddr(name: &UnixName<'_>) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data for which all-zero bytes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, offset) = match name {
        UnixName::Path(p) => (*p, 0),
        UnixName::Abstract(n) => (*n, 1),
    };
    // A path needs its NUL terminator inside sun_path; an abstract name starts after a NUL.
    if bytes.len() + 1 > sa.sun_path.len() || bytes.contains(&0) && offset == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "unix socket address too long or invalid"));
    }
    for (i, b) in bytes.iter().enumerate() {
        sa.sun_path[offset + i] = *b as libc::c_char;
    }
    let base = mem::size_of::<libc::sa_family_t>();
    let len = match name {
        UnixName::Path(_) => base + bytes.len() + 1,
        UnixName::Abstract(_) => base + 1 + bytes.len(),
    };
    Ok((sa, len as libc::socklen_t))
}

fn inet_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all-zero bytes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        &value as *const libc::c_int as *const libc::c_void,
        mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

/// A listening unix stream socket bound to `name`.
pub(crate) fn unix_listen(name: &UnixName<'_>, backlog: i32) -> io::Result<OwnedFd> {
    let fd = new_socket(libc::AF_UNIX)?;
    let (sa, len) = unix_sockaddr(name)?;
    syscall!(bind(fd.as_raw_fd(), &sa as *const libc::sockaddr_un as *const libc::sockaddr, len))?;
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(fd)
}

/// A unix stream socket connected to `name`.
pub(crate) fn unix_connect(name: &UnixName<'_>) -> io::Result<OwnedFd> {
    let fd = new_socket(libc::AF_UNIX)?;
    let (sa, len) = unix_sockaddr(name)?;
    connect_retrying(fd.as_fd(), &sa as *const libc::sockaddr_un as *const libc::sockaddr, len)?;
    Ok(fd)
}

fn connect_retrying(fd: BorrowedFd<'_>, sa: *const libc::sockaddr, len: libc::socklen_t) -> io::Result<()> {
    match syscall!(connect(fd.as_raw_fd(), sa, len)) {
        Ok(_) => Ok(()),
        // An interrupted connect goes on in the background; wait until it completes.
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            loop {
                match syscall!(poll(&mut pfd, 1, -1)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                    Ok(_) => break,
                }
            }
            let mut err: libc::c_int = 0;
            let mut l = mem::size_of::<libc::c_int>() as libc::socklen_t;
            syscall!(getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut l
            ))?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A listening TCP socket bound to `addr` (with `SO_REUSEADDR`, as Python's `Listener` sets).
pub(crate) fn tcp_listen(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = new_socket(domain)?;
    set_int_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let (sa, len) = inet_sockaddr(addr);
    syscall!(bind(fd.as_raw_fd(), &sa as *const libc::sockaddr_storage as *const libc::sockaddr, len))?;
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(fd)
}

/// A TCP socket connected to `addr`, with Nagle's algorithm off (messages are small and
/// request/reply).
pub(crate) fn tcp_connect(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = new_socket(domain)?;
    let (sa, len) = inet_sockaddr(addr);
    connect_retrying(fd.as_fd(), &sa as *const libc::sockaddr_storage as *const libc::sockaddr, len)?;
    set_int_option(fd.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(fd)
}

/// Turns Nagle's algorithm off on an accepted TCP socket; a no-op on other sockets.
pub(crate) fn set_nodelay_if_tcp(fd: BorrowedFd<'_>) {
    if !is_unix_socket(fd) {
        let _ = set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
}

/// The address a TCP socket is bound to (for a port chosen by the kernel).
pub(crate) fn tcp_local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data for which all-zero bytes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(
        fd.as_raw_fd(),
        &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr,
        &mut len
    ))?;
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, as ss_family says.
            let sin = unsafe { *(&storage as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6, as ss_family says.
            let sin6 = unsafe { *(&storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    }
}

/// Accepts one connection (close-on-exec). Retries on `EINTR` and on errors that concern only
/// the connection being accepted (the peer reset it before we took it).
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        let r = syscall!(accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC
        ));
        match r {
            Ok(fd) => {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                _ => return Err(e),
            },
        }
    }
}

/// Shuts a socket down in both directions: a thread blocked in `accept` or `recv` on it wakes.
pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) {
    // SAFETY: plain system call on a descriptor we borrow; failure (not connected) is harmless.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Whether `fd` is a unix-domain socket (one that can carry descriptors).
pub(crate) fn is_unix_socket(fd: BorrowedFd<'_>) -> bool {
    let mut domain: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    let r = syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_DOMAIN,
        &mut domain as *mut libc::c_int as *mut libc::c_void,
        &mut len
    ));
    r.is_ok() && domain == libc::AF_UNIX
}

/// One `recv(2)` into `buf`: `Ok(0)` at end-of-file. With `nonblocking`, `WouldBlock` when
/// nothing is there yet. Retries on `EINTR`.
pub(crate) fn recv_some(fd: BorrowedFd<'_>, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
    let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    loop {
        match syscall!(recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// One `send(2)` of `buf` (a closed peer is `EPIPE`, never SIGPIPE): how many bytes went. With
/// `nonblocking`, `WouldBlock` when the socket buffer is full. Retries on `EINTR`.
pub(crate) fn send_some(fd: BorrowedFd<'_>, buf: &[u8], nonblocking: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    loop {
        match syscall!(send(fd.as_raw_fd(), buf.as_ptr() as *const libc::c_void, buf.len(), flags)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => return Ok(n as usize),
        }
    }
}

/// `poll(2)` on `fds` for at most `timeout` (`None`: no limit); how many have events. An
/// interrupted wait returns 0 (the caller looks at its clock and waits again).
pub(crate) fn poll_fds(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up, so a wait for less than a millisecond does not spin.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    match syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms)) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Makes a listening socket non-blocking, so that `accept` after a `poll` that a reset
/// connection woke returns `WouldBlock` instead of waiting for the next peer. (Accepted sockets
/// do not inherit the flag.)
pub(crate) fn set_listener_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    Ok(())
}

/// The largest listen backlog this system allows (`/proc/sys/net/core/somaxconn`; the kernel
/// also clamps any larger value to it).
pub(crate) fn max_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(libc::SOMAXCONN)
}

/// Whether an `accept` error means this process (or the system) is out of descriptors or
/// memory: the pending connection stays queued, and trying again at once would spin.
pub(crate) fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Writes all of `buf`; a closed peer is `EPIPE`, never SIGPIPE. Retries on `EINTR`.
pub(crate) fn send_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match syscall!(send(
            fd.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL
        )) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

/// Whether the peer of a connected socket has closed or sent something (a client that waits for
/// a reply sends nothing, so either way the wait on its behalf is over).
pub(crate) fn peer_gone_or_talking(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    matches!(syscall!(poll(&mut pfd, 1, 0)), Ok(n) if n > 0)
}

/// Ignores SIGINT in this process (a manager's server must outlive a Ctrl-C aimed at its owner,
/// which then shuts it down in order, as Python's manager does).
pub(crate) fn ignore_sigint() {
    // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Fills `buf` with random bytes from the kernel.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
}
