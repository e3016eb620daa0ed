//! [`Listener`] and [`Client`]: connections by address, over unix sockets or TCP, with an
//! optional `authkey` (Python's `multiprocessing.connection.Listener` and `Client`).
//!
//! With an `authkey`, both ends run the HMAC challenge-response of `auth.rs` before anything
//! else crosses the socket: a peer without the key is refused after at most a few hundred bytes,
//! and never reaches the code that parses messages. A unix-socket [`Connection`] carries handles
//! (descriptors) as a [`Pipe`](crate::Pipe) does; a TCP one cannot, and sending a handle over it
//! is an error.

use super::{auth, Connection};
use crate::error::{Error, Result};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where a [`Listener`] listens and a [`Client`] connects (Python's `address` with its
/// `family`): a unix socket path, a name in Linux's abstract socket namespace (no file, nothing
/// to clean up), or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// let a = multiprocessing::connection::Address::local();
    /// assert!(a.to_string().starts_with("@multiprocessing-"));
    /// ```
    pub fn local() -> Address {
        let mut r = [0u8; 8];
        let _ = sys::net::random_bytes(&mut r);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Address::Abstract(format!("multiprocessing-{}-{hex}", sys::getpid()).into_bytes())
    }

    /// The first TCP address `addr` resolves to (`"127.0.0.1:0"`, `("localhost", 5000)`).
    ///
    /// ```
    /// let a = multiprocessing::connection::Address::tcp("127.0.0.1:5000")?;
    /// assert_eq!(a.to_string(), "127.0.0.1:5000");
    /// # Ok::<(), multiprocessing::Error>(())
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
/// use multiprocessing::connection::{Address, Client, Listener};
///
/// let listener = Listener::bind(Address::tcp("127.0.0.1:0")?, Some(b"secret"))?;
/// let address = listener.address().clone(); // the port the kernel chose
/// let t = std::thread::spawn(move || -> multiprocessing::Result<String> {
///     let conn = Client::connect(&address, Some(b"secret"))?;
///     conn.send(&"hello".to_string())?;
///     conn.recv()
/// });
/// let conn = listener.accept()?;
/// let msg: String = conn.recv()?;
/// conn.send(&msg.to_uppercase())?;
/// assert_eq!(t.join().unwrap()?, "HELLO");
/// # Ok::<(), multiprocessing::Error>(())
/// ```
pub struct Listener {
    fd: Mutex<Option<Arc<OwnedFd>>>,
    address: Address,
    authkey: Option<Vec<u8>>,
    /// A path this listener created, removed again on close.
    unlink: Option<PathBuf>,
}

/// Python's default backlog for a `Listener` is 1; a manager wants more.
const BACKLOG: i32 = 128;

impl Listener {
    /// Binds and listens at `address` (Python's `Listener(address, authkey=...)`). For TCP, port
    /// 0 lets the kernel choose; [`address`](Self::address) says which. With an `authkey`,
    /// [`accept`](Self::accept) authenticates each peer before returning it.
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        let (fd, address, unlink) = match &address {
            Address::Tcp(sa) => {
                let fd =
                    sys::net::tcp_listen(sa, BACKLOG).map_err(Error::io("listening on a TCP address"))?;
                let bound = sys::net::tcp_local_addr(fd.as_fd()).map_err(Error::io("listening"))?;
                (fd, Address::Tcp(bound), None)
            }
            Address::Unix(p) => {
                let name = address.unix_name().expect("unix");
                let fd =
                    sys::net::unix_listen(&name, BACKLOG).map_err(Error::io("listening on a unix socket"))?;
                (fd, address.clone(), Some(p.clone()))
            }
            Address::Abstract(_) => {
                let name = address.unix_name().expect("unix");
                let fd =
                    sys::net::unix_listen(&name, BACKLOG).map_err(Error::io("listening on a unix socket"))?;
                (fd, address.clone(), None)
            }
        };
        Ok(Listener {
            fd: Mutex::new(Some(Arc::new(fd))),
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            unlink,
        })
    }

    /// The address this listener is bound to (Python's `address`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a peer, authenticates it when an `authkey` was given, and returns the
    /// connection (Python's `accept()`). A peer with the wrong key gets
    /// [`Error::Authentication`] here, and the listener keeps listening.
    pub fn accept(&self) -> Result<Connection> {
        let sock = self.accept_raw()?;
        if let Some(key) = &self.authkey {
            auth::accept_handshake(sock.as_fd(), key)?;
        }
        Ok(Connection::from_fd(sock, true, true))
    }

    /// Accepts one stream socket without any handshake.
    pub(crate) fn accept_raw(&self) -> Result<OwnedFd> {
        // Our own reference keeps the descriptor open while we wait; `close` shuts the socket
        // down, which wakes this call with an error.
        let fd =
            self.fd.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(Error::Closed("listener"))?;
        match sys::net::accept(fd.as_fd()) {
            Ok(sock) => {
                sys::net::set_nodelay_if_tcp(sock.as_fd());
                Ok(sock)
            }
            Err(_) if self.fd.lock().unwrap_or_else(|p| p.into_inner()).is_none() => {
                Err(Error::Closed("listener"))
            }
            Err(e) => Err(Error::Io { context: "accepting a connection", source: e }),
        }
    }

    /// Stops listening (Python's `close()`); removes the socket file of a path address. A thread
    /// blocked in [`accept`](Self::accept) returns [`Error::Closed`].
    pub fn close(&self) {
        let fd = self.fd.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fd) = fd {
            sys::net::shutdown_both(fd.as_fd());
            drop(fd);
            if let Some(p) = &self.unlink {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
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
