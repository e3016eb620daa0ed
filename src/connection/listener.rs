//! [`Listener`] and [`Client`]: connections by address, over unix sockets or TCP, with an
//! optional `authkey` (Python's `multiprocessing.connection.Listener` and `Client`).
//!
//! With an `authkey`, both ends run the HMAC challenge-response of `auth.rs` before anything
//! else crosses the socket: a peer without the key is refused after at most a few hundred bytes,
//! and never reaches the code that parses messages. Handshakes run concurrently and off the path
//! of the others: [`Listener::accept`] drives up to 1024 of them at once from the
//! accepting thread (non-blocking, no thread per peer), each within a total deadline, and hands
//! out connections in the order their handshakes finish, so a slow or silent peer delays no one.
//! A unix-socket [`Connection`] carries handles
//! (descriptors) as a [`Pipe`](crate::Pipe) does; a TCP one cannot, and sending a handle over it
//! is an error.

use super::auth::{self, Handshake, Role, Wants};
use super::Connection;
use crate::error::{Error, Result};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a [`Listener`] listens and a [`Client`] connects (Python's `address` with its
/// `family`): a unix socket path, a name in Linux's abstract socket namespace (no file, nothing
/// to clean up), or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A unix socket at a filesystem path (`AF_UNIX`).
    Unix(PathBuf),
    /// A unix socket in the abstract namespace; displayed with a leading `@`.
    Abstract(Vec<u8>),
    /// A TCP address (`AF_INET` / `AF_INET6`).
    Tcp(SocketAddr),
}

impl Address {
    /// A fresh, unique abstract unix address (Python's default: `arbitrary_address('AF_UNIX')`).
    ///
    /// ```
    /// let a = multiproc::connection::Address::local();
    /// assert!(a.to_string().starts_with("@multiproc-"));
    /// ```
    pub fn local() -> Address {
        let mut r = [0u8; 8];
        let _ = sys::net::random_bytes(&mut r);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Address::Abstract(format!("multiproc-{}-{hex}", sys::getpid()).into_bytes())
    }

    /// The first TCP address `addr` resolves to (`"127.0.0.1:0"`, `("localhost", 5000)`).
    ///
    /// ```
    /// let a = multiproc::connection::Address::tcp("127.0.0.1:5000")?;
    /// assert_eq!(a.to_string(), "127.0.0.1:5000");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn tcp(addr: impl ToSocketAddrs) -> Result<Address> {
        let mut addrs = addr.to_socket_addrs().map_err(Error::io("resolving a TCP address"))?;
        addrs.next().map(Address::Tcp).ok_or_else(|| Error::invalid("the address resolved to nothing"))
    }

    /// Whether connections to this address can carry handles (unix sockets can, TCP cannot).
    pub fn is_unix(&self) -> bool {
        !matches!(self, Address::Tcp(_))
    }

    fn unix_name(&self) -> Option<sys::net::UnixName<'_>> {
        match self {
            Address::Unix(p) => Some(sys::net::UnixName::Path(p.as_os_str().as_bytes())),
            Address::Abstract(n) => Some(sys::net::UnixName::Abstract(n)),
            Address::Tcp(_) => None,
        }
    }

    /// Opens a stream socket connected to this address (no handshake).
    pub(crate) fn connect_raw(&self) -> Result<OwnedFd> {
        match self {
            Address::Tcp(sa) => sys::net::tcp_connect(sa),
            _ => sys::net::unix_connect(&self.unix_name().expect("a unix address")),
        }
        .map_err(Error::io("connecting"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = Error;
    /// `"host:port"` is TCP, `"@name"` abstract, anything else a path.
    fn from_str(s: &str) -> Result<Address> {
        if let Some(name) = s.strip_prefix('@') {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(sa));
        }
        if !s.contains('/') && s.contains(':') {
            return Address::tcp(s);
        }
        Ok(Address::Unix(PathBuf::from(OsStr::new(s))))
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&std::path::Path> for Address {
    fn from(p: &std::path::Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

/// A bound, listening socket that hands out authenticated [`Connection`]s (Python's
/// `multiprocessing.connection.Listener`).
///
/// ```
/// use multiproc::connection::{Address, Client, Listener};
///
/// let listener = Listener::bind(Address::tcp("127.0.0.1:0")?, Some(b"secret"))?;
/// let address = listener.address().clone(); // the port the kernel chose
/// let t = std::thread::spawn(move || -> multiproc::Result<String> {
///     let conn = Client::connect(&address, Some(b"secret"))?;
///     conn.send(&"hello".to_string())?;
///     conn.recv()
/// });
/// let conn = listener.accept()?;
/// let msg: String = conn.recv()?;
/// conn.send(&msg.to_uppercase())?;
/// assert_eq!(t.join().unwrap()?, "HELLO");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Listener {
    /// The listening socket while open; `None` once closed.
    fd: Mutex<Option<Arc<OwnedFd>>>,
    /// The same socket, kept until drop for [`as_fd`](AsFd::as_fd): `close` stands it down in
    /// place ([`sys::retire`]) rather than closing its number.
    sock: Arc<OwnedFd>,
    address: Address,
    authkey: Option<Vec<u8>>,
    /// A path this listener created, removed again on close.
    unlink: Option<PathBuf>,
    /// Connections in the handshake, and those done with it but not yet handed out.
    gate: Mutex<Gate>,
}

/// How many connections may be in the handshake at once. Past this, a new connection waits in
/// the kernel's backlog, or takes the place of the oldest handshake once that one has run for
/// [`EVICT_AFTER`].
pub(crate) const MAX_HANDSHAKES: usize = 1024;

/// How long a handshake is sure to keep its place (a loopback handshake takes well under a
/// millisecond); after this it may be dropped for a newer connection when all places are taken
/// or the process is out of descriptors.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long `accept` stops taking new connections after the process or the system ran out of
/// descriptors (the connection stays queued in the kernel; retrying at once would spin).
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

/// At most this many new connections are taken per wake-up before the handshakes in flight
/// are advanced again.
const ACCEPT_BATCH: usize = 64;

struct Pending {
    sock: OwnedFd,
    handshake: Handshake,
    wants: Wants,
    started: Instant,
}

#[derive(Default)]
struct Gate {
    /// Oldest first.
    pending: VecDeque<Pending>,
    /// Outcomes in the order the handshakes ended.
    ready: VecDeque<Result<OwnedFd>>,
    /// No new connection is taken before this (out of descriptors).
    paused_until: Option<Instant>,
}

impl Listener {
    /// Binds and listens at `address` (Python's `Listener(address, authkey=...)`). For TCP, port
    /// 0 lets the kernel choose; [`address`](Self::address) says which. With an `authkey`,
    /// [`accept`](Self::accept) authenticates each peer before returning it.
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        // Bursts of clients must not find the queue full (Python's default of 1, or 128, drops
        // them): the system's maximum.
        let backlog = sys::net::max_backlog();
        let (fd, address, unlink) = match &address {
            Address::Tcp(sa) => {
                let fd =
                    sys::net::tcp_listen(sa, backlog).map_err(Error::io("listening on a TCP address"))?;
                let bound = sys::net::tcp_local_addr(fd.as_fd()).map_err(Error::io("listening"))?;
                (fd, Address::Tcp(bound), None)
            }
            Address::Unix(p) => {
                let name = address.unix_name().expect("unix");
                let fd =
                    sys::net::unix_listen(&name, backlog).map_err(Error::io("listening on a unix socket"))?;
                (fd, address.clone(), Some(p.clone()))
            }
            Address::Abstract(_) => {
                let name = address.unix_name().expect("unix");
                let fd =
                    sys::net::unix_listen(&name, backlog).map_err(Error::io("listening on a unix socket"))?;
                (fd, address.clone(), None)
            }
        };
        sys::net::set_listener_nonblocking(fd.as_fd()).map_err(Error::io("listening"))?;
        sys::prepare_retire();
        let sock = Arc::new(fd);
        Ok(Listener {
            fd: Mutex::new(Some(sock.clone())),
            sock,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            unlink,
            gate: Mutex::new(Gate::default()),
        })
    }

    /// The address this listener is bound to (Python's `address`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a peer, authenticates it when an `authkey` was given, and returns the
    /// connection (Python's `accept()`). A peer with the wrong key, or one that has not finished
    /// the handshake within its deadline, gets [`Error::Authentication`] here (another peer's
    /// failure, not this listener's), and the listener keeps listening.
    ///
    /// Handshakes run concurrently, at most 1024 at once (each within 10 s in all), and connections come out
    /// in the order their handshakes finish: a slow peer delays no one.
    pub fn accept(&self) -> Result<Connection> {
        Ok(Connection::from_fd(self.accept_fd()?, true, true))
    }

    /// [`accept`](Self::accept), returning the socket itself.
    pub(crate) fn accept_fd(&self) -> Result<OwnedFd> {
        match &self.authkey {
            Some(key) => self.accept_authenticated(key),
            None => self.accept_raw(),
        }
    }

    fn listening(&self) -> Result<Arc<OwnedFd>> {
        // Our own reference keeps the descriptor open while we wait; `close` shuts the socket
        // down, which wakes a `poll` on it.
        self.fd.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(Error::Closed("listener"))
    }

    fn is_closed(&self) -> bool {
        self.fd.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts one stream socket without any handshake.
    pub(crate) fn accept_raw(&self) -> Result<OwnedFd> {
        let fd = self.listening()?;
        let mut paused_until = None;
        loop {
            let wait = paused_until.map(|t: Instant| t.saturating_duration_since(Instant::now()));
            if wait.is_none_or(|w| w.is_zero()) {
                paused_until = None;
                let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
                sys::net::poll_fds(&mut pfd, None).map_err(Error::io("accepting a connection"))?;
                match self.take_one(&fd)? {
                    Taken::Socket(sock) => return Ok(sock),
                    Taken::Nothing => {}
                    Taken::OutOfDescriptors => paused_until = Some(Instant::now() + OUT_OF_FDS_PAUSE),
                }
            } else if let Some(w) = wait {
                // Out of descriptors: nothing to do but let some be freed.
                std::thread::sleep(w);
            }
        }
    }

    /// One non-blocking `accept` on the listening socket.
    fn take_one(&self, fd: &OwnedFd) -> Result<Taken> {
        match sys::net::accept(fd.as_fd()) {
            Ok(sock) => {
                sys::net::set_nodelay_if_tcp(sock.as_fd());
                Ok(Taken::Socket(sock))
            }
            Err(_) if self.is_closed() => Err(Error::Closed("listener")),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Taken::Nothing),
            Err(e) if sys::net::is_out_of_resources(&e) => Ok(Taken::OutOfDescriptors),
            Err(e) => Err(Error::Io { context: "accepting a connection", source: e }),
        }
    }

    fn accept_authenticated(&self, key: &[u8]) -> Result<OwnedFd> {
        let fd = self.listening()?;
        let mut gate = self.gate();
        let gate = &mut *gate;
        loop {
            if let Some(r) = gate.ready.pop_front() {
                return r;
            }
            if self.is_closed() {
                return Err(Error::Closed("listener"));
            }
            let now = Instant::now();
            if gate.paused_until.is_some_and(|t| now >= t) {
                gate.paused_until = None;
            }
            let evictable = |g: &Gate| g.pending.front().is_some_and(|p| now >= p.started + EVICT_AFTER);
            let take_new =
                gate.paused_until.is_none() && (gate.pending.len() < MAX_HANDSHAKES || evictable(gate));
            let mut pfds = Vec::with_capacity(1 + gate.pending.len());
            pfds.push(libc::pollfd {
                fd: if take_new { fd.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
            let mut wake = gate.paused_until;
            for p in &gate.pending {
                let events = if p.wants == Wants::Read { libc::POLLIN } else { libc::POLLOUT };
                pfds.push(libc::pollfd { fd: p.sock.as_raw_fd(), events, revents: 0 });
                wake = Some(wake.map_or(p.handshake.deadline(), |w| w.min(p.handshake.deadline())));
                if !take_new && gate.paused_until.is_none() {
                    // Full: wake when the oldest becomes evictable.
                    wake = wake.map(|w| w.min(p.started + EVICT_AFTER));
                }
            }
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            // The gate stays locked while this thread waits: the handshakes belong to whoever
            // polls their sockets, and other callers of `accept` take the next connection after.
            sys::net::poll_fds(&mut pfds, timeout).map_err(Error::io("accepting a connection"))?;

            // Advance the handshakes whose sockets are ready; end those past their deadline.
            let now = Instant::now();
            let g = &mut *gate;
            let mut still = VecDeque::with_capacity(g.pending.len());
            for (mut p, pfd) in g.pending.drain(..).zip(&pfds[1..]) {
                if pfd.revents != 0 {
                    match p.handshake.advance(p.sock.as_fd(), key) {
                        Ok(None) => {
                            g.ready.push_back(Ok(p.sock));
                            continue;
                        }
                        Ok(Some(w)) => p.wants = w,
                        Err(e) => {
                            g.ready.push_back(Err(e));
                            continue;
                        }
                    }
                }
                if now >= p.handshake.deadline() {
                    g.ready.push_back(Err(p.handshake.timed_out()));
                } else {
                    still.push_back(p);
                }
            }
            g.pending = still;

            if pfds[0].revents != 0 {
                for _ in 0..ACCEPT_BATCH {
                    let taken = self.take_one(&fd)?;
                    let sock = match taken {
                        Taken::Socket(sock) => sock,
                        Taken::Nothing => break,
                        Taken::OutOfDescriptors => {
                            // Shed the oldest handshake, if it has had its time, and try again
                            // later; never retry at once.
                            if g.pending.front().is_some_and(|p| now >= p.started + EVICT_AFTER) {
                                g.pending.pop_front();
                                g.ready.push_back(Err(evicted()));
                            }
                            g.paused_until = Some(now + OUT_OF_FDS_PAUSE);
                            break;
                        }
                    };
                    if g.pending.len() >= MAX_HANDSHAKES {
                        g.pending.pop_front();
                        g.ready.push_back(Err(evicted()));
                    }
                    let mut handshake = Handshake::new(Role::Acceptor)?;
                    match handshake.advance(sock.as_fd(), key) {
                        Ok(None) => g.ready.push_back(Ok(sock)),
                        Ok(Some(wants)) => {
                            g.pending.push_back(Pending { sock, handshake, wants, started: now })
                        }
                        Err(e) => g.ready.push_back(Err(e)),
                    }
                    if g.pending.len() >= MAX_HANDSHAKES {
                        break;
                    }
                }
            }
        }
    }

    /// Stops listening (Python's `close()`); removes the socket file of a path address. A thread
    /// blocked in [`accept`](Self::accept) returns [`Error::Closed`].
    ///
    /// The socket is released at once (its address is free again), but its descriptor number
    /// stays this listener's until it is dropped, referring to a dead socket, so that a
    /// `BorrowedFd` from [`as_fd`](AsFd::as_fd) stays valid.
    pub fn close(&self) {
        let fd = self.fd.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fd) = fd {
            sys::net::shutdown_both(fd.as_fd());
            // Threads still in `accept` hold the number: they find the dead socket there.
            if let Err(e) = sys::retire(fd.as_fd()) {
                log::warn!("closing a listener: {e}; its socket stays open until the listener is dropped");
            }
            drop(fd);
            if let Some(p) = &self.unlink {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

enum Taken {
    Socket(OwnedFd),
    Nothing,
    OutOfDescriptors,
}

fn evicted() -> Error {
    Error::Authentication(format!(
        "a peer had not finished the handshake after {} s while {MAX_HANDSHAKES} others waited; dropped it",
        EVICT_AFTER.as_secs()
    ))
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Nothing borrows the socket now: it is closed with the last field, not stood down.
        let fd = self.fd.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fd) = fd {
            sys::net::shutdown_both(fd.as_fd());
            if let Some(p) = &self.unlink {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The listening socket, for `poll(2)`, `epoll` or a reactor: it is readable when a peer is
/// waiting to be accepted (with an `authkey`, [`accept`](Listener::accept) then also runs the
/// handshake). Accepting on it directly would bypass the handshake. Through `AsRawFd` a
/// listener is also a [`Waitable`](super::Waitable) for [`wait`](super::wait).
///
/// After [`close`](Listener::close), which takes `&self`, the number stays open until the
/// listener is dropped, on a dead socket that polls readable and hung up: a `BorrowedFd` lent
/// before never refers to a closed number or to another file.
impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The number [`as_fd`](AsFd::as_fd) lends.
impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and, with an `authkey`, proves it holds the key and checks that the
    /// listener does too (Python's `Client(address, authkey=...)`). Over TCP the connection
    /// carries values but not handles.
    #[allow(clippy::new_ret_no_self)]
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
        let sock = address.connect_raw()?;
        if let Some(key) = authkey {
            auth::connect_handshake(sock.as_fd(), key)?;
        }
        Ok(Connection::from_fd(sock, true, true))
    }
}
