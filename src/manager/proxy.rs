//! The client side: connections to managers and [`BaseProxy`], what every typed proxy wraps.
//!
//! Each thread keeps one connection per manager address, opened on first use and kept for the
//! thread's life (Python keeps one per thread too): calls from one thread are strictly ordered,
//! and a blocking call in one thread never holds up another. A connection is taken out of the
//! thread's set while a call uses it, so a call made *during* another (a proxy inside the
//! arguments being decoded) opens a second one instead of interleaving. Connections inherited
//! through `fork` belong to the parent and are dropped, never used.
//!
//! References: a proxy (and all its clones, which share it) holds one reference to its object
//! in the server, taken when it was created or received and dropped with the last clone. A
//! serialized proxy carries a reference of its own (a *ticket*), taken when it is serialized and
//! handed over to the proxy that deserializes it, so an object cannot vanish while a proxy to it
//! is on its way to a child process, even if the sender drops its own at once. A ticket nobody
//! claims expires in the server (see `ManagerBuilder::unclaimed_reference_expiry`).
//!
//! A serialized proxy is the manager's address, the object's id and type id, and the ticket: no
//! authkey. The receiving process finds the key in its keyring (`keyring.rs`), which children
//! inherit at start. Decoding a proxy opens no connection; the ticket is claimed on first use
//! (or released when the proxy is dropped unused).

use super::protocol::{self, RemoteError, Request, MAX_REPLY, REPLY_OK};
use super::stream::{spin_budget, Kind, Reader, Writer};
use crate::connection::{connect_handshake, Address};
use crate::error::{Error, Result};
use crate::sys;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One authenticated connection to a manager's server.
pub(crate) struct ClientConn {
    address: Address,
    pid: i32,
    /// The socket; kept open while pipes carry the messages, so the server sees us leave.
    sock: OwnedFd,
    /// Where replies arrive and requests go: the socket itself, or two pipes.
    rx: Option<OwnedFd>,
    tx: Option<OwnedFd>,
    kind: Kind,
    reader: Reader,
    writer: Writer,
}

impl ClientConn {
    pub(crate) fn open(address: &Address, authkey: &[u8]) -> Result<ClientConn> {
        let sock = address.connect_raw()?;
        connect_handshake(sock.as_fd(), authkey)?;
        let (rx, tx, kind) = if address.is_unix() {
            let (req_r, req_w) = sys::pipe::pipe_nonblocking_reader().map_err(Error::io("creating pipes"))?;
            let (rep_r, rep_w) = sys::pipe::pipe_nonblocking_reader().map_err(Error::io("creating pipes"))?;
            let mut msg = crate::wire::frame::start_frame();
            msg.extend_from_slice(PIPES_HELLO);
            crate::wire::frame::send(sock.as_fd(), &mut msg, &[req_r.as_raw_fd(), rep_w.as_raw_fd()])?;
            (Some(rep_r), Some(req_w), Kind::Pipe)
        } else {
            (None, None, Kind::Socket)
        };
        Ok(ClientConn {
            address: address.clone(),
            pid: sys::getpid(),
            sock,
            rx,
            tx,
            kind,
            reader: Reader::new(),
            writer: Writer::new(),
        })
    }

    /// Sends `req` and hands the successful reply's bytes to `f`.
    pub(crate) fn request<R>(&mut self, req: &Request<'_>, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        self.request_with(req, |_| Ok(()), f)
    }

    /// Sends `req` followed by the arguments `args` writes, and hands the successful reply's
    /// bytes to `f`.
    pub(crate) fn request_with<R>(
        &mut self,
        req: &Request<'_>,
        args: impl FnOnce(&mut Vec<u8>) -> Result<()>,
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let out = self.writer.begin();
        crate::wire::encode(req, out)?;
        args(out)?;
        let tx = self.tx.as_ref().unwrap_or(&self.sock).as_fd();
        self.writer.send(tx, self.kind)?;
        let rx = self.rx.as_ref().unwrap_or(&self.sock).as_fd();
        let reply = self.reader.next_frame(rx, self.kind, MAX_REPLY, spin_budget())?;
        match reply.split_first() {
            Some((&REPLY_OK, body)) => f(body),
            Some((_, body)) => {
                let err: RemoteError = crate::wire::decode_plain(body)?;
                Err(Error::Remote(err))
            }
            None => Err(Error::Decode("empty reply from the manager".into())),
        }
    }
}

/// The first frame on a unix connection after the handshake: it carries the server's ends of
/// the request and reply pipes.
pub(crate) const PIPES_HELLO: &[u8] = b"pipes";

thread_local! {
    static CONNECTIONS: RefCell<Vec<ClientConn>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's connection to `address`, opening one if needed. A connection that
/// failed in transport (anything but an error reported by the server) is dropped, not reused.
pub(crate) fn with_connection<R>(
    address: &Address,
    authkey: &[u8],
    f: impl FnOnce(&mut ClientConn) -> Result<R>,
) -> Result<R> {
    let pid = sys::getpid();
    let cached = CONNECTIONS
        .try_with(|c| {
            let mut c = c.borrow_mut();
            c.retain(|conn| conn.pid == pid);
            c.iter().position(|conn| conn.address == *address).map(|i| c.swap_remove(i))
        })
        .ok()
        .flatten();
    let mut conn = match cached {
        Some(c) => c,
        None => ClientConn::open(address, authkey)?,
    };
    let r = f(&mut conn);
    let reusable = match &r {
        Ok(_) | Err(Error::Remote(_)) => conn.reader.buffered() == 0,
        Err(_) => false,
    };
    if reusable {
        let _ = CONNECTIONS.try_with(move |c| c.borrow_mut().push(conn));
    }
    r
}

/// Closes this thread's connections to `address` (its server has stopped).
pub(crate) fn forget_connections(address: &Address) {
    let _ = CONNECTIONS.try_with(|c| c.borrow_mut().retain(|conn| conn.address != *address));
}

struct ProxyInner {
    typeid: String,
    address: Address,
    /// `None` in a process that holds no key for this manager: every use fails.
    authkey: Option<Arc<[u8]>>,
    id: u64,
    /// The ticket of a decoded proxy, until its first use claims it (0: none pending).
    ticket: AtomicU64,
    /// The process whose reference this is; a copy inherited by `fork` must not drop it.
    pid: i32,
}

impl ProxyInner {
    fn key(&self) -> Result<&[u8]> {
        self.authkey.as_deref().ok_or_else(|| {
            Error::Authentication(format!(
                "this process holds no authkey for the manager at {}: a proxy carries none, so it works \
                 only in processes that started or connected to that manager, and their children",
                self.address
            ))
        })
    }

    /// Runs `f` on this thread's connection to the manager, first claiming the reference a
    /// decoded proxy's ticket holds.
    fn with_conn<R>(&self, f: impl FnOnce(&mut ClientConn) -> Result<R>) -> Result<R> {
        let key = self.key()?;
        with_connection(&self.address, key, |c| {
            let ticket = self.ticket.swap(0, Ordering::AcqRel);
            if ticket != 0 {
                let claimed = c.request(&Request::Claim { id: self.id, ticket }, |_| Ok(()));
                if let Err(e) = claimed {
                    self.ticket.store(ticket, Ordering::Release);
                    return Err(e);
                }
            }
            f(c)
        })
    }
}

impl Drop for ProxyInner {
    fn drop(&mut self) {
        if sys::getpid() != self.pid || self.authkey.is_none() {
            return;
        }
        // Python's `_decref` (claiming first what an unused decoded proxy still holds); a server
        // already gone has nothing left to release.
        let _ = self.with_conn(|c| c.request(&Request::DecRef { id: self.id }, |_| Ok(())));
    }
}

/// The untyped proxy that every typed proxy wraps: the object's server address, the authkey,
/// its id and type id (Python's `BaseProxy` with its `Token`). Cloning is cheap and shares the
/// one server reference.
#[derive(Clone)]
pub struct BaseProxy {
    inner: Arc<ProxyInner>,
}

impl BaseProxy {
    pub(crate) fn new(typeid: &str, address: Address, authkey: Arc<[u8]>, id: u64) -> BaseProxy {
        BaseProxy::with_ticket(typeid, address, Some(authkey), id, 0)
    }

    fn with_ticket(
        typeid: &str,
        address: Address,
        authkey: Option<Arc<[u8]>>,
        id: u64,
        ticket: u64,
    ) -> BaseProxy {
        BaseProxy {
            inner: Arc::new(ProxyInner {
                typeid: typeid.to_string(),
                address,
                authkey,
                id,
                ticket: AtomicU64::new(ticket),
                pid: sys::getpid(),
            }),
        }
    }

    /// The object's type id in the server (Python's `_token.typeid`).
    pub fn typeid(&self) -> &str {
        &self.inner.typeid
    }

    /// The object's id in the server (Python's `_token.id`).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The address of the manager serving the object (Python's `_token.address`).
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// Calls `method` with already-encoded arguments; `f` decodes the reply.
    pub(crate) fn call_raw<R>(
        &self,
        method: &str,
        args: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        self.inner.with_conn(|c| {
            c.request_with(
                &Request::Call { id: self.inner.id, method },
                |out| {
                    out.extend_from_slice(args);
                    Ok(())
                },
                f,
            )
        })
    }

    /// Calls `method` with `args` encoded straight into the request; `f` decodes the reply.
    pub(crate) fn call_encoded<A: Serialize + ?Sized, R>(
        &self,
        method: &str,
        args: &A,
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        self.inner.with_conn(|c| {
            c.request_with(
                &Request::Call { id: self.inner.id, method },
                |out| protocol::encode_value(args, out),
                f,
            )
        })
    }

    /// Calls `method` with the argument tuple `args` and decodes its result (Python's
    /// `_callmethod`). Used by the proxies `#[register]` generates.
    #[doc(hidden)]
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        self.call_encoded(method, args, decode_reply)
    }

    /// Python's `repr` of a proxy: `<ListProxy object, typeid 'list' at 0x7f...>`.
    #[doc(hidden)]
    pub fn fmt_repr(&self, f: &mut fmt::Formatter<'_>, proxy_name: &str) -> fmt::Result {
        write!(
            f,
            "<{proxy_name} object, typeid '{}' at {:#x}>",
            self.inner.typeid,
            Arc::as_ptr(&self.inner) as usize
        )
    }
}

/// Decodes a whole reply as `R`.
pub(crate) fn decode_reply<R: DeserializeOwned>(bytes: &[u8]) -> Result<R> {
    crate::wire::decode(bytes, Vec::new())
}

impl fmt::Debug for BaseProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_repr(f, "BaseProxy")
    }
}

#[derive(Serialize, Deserialize)]
struct WireToken<'a> {
    typeid: std::borrow::Cow<'a, str>,
    address: Address,
    id: u64,
    ticket: u64,
}

impl Serialize for BaseProxy {
    /// A proxy travels as its token and a ticket for one reference (see the module doc), never
    /// with the authkey; serializing it asks the server for that ticket.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let i = &self.inner;
        let ticket = i
            .with_conn(|c| {
                c.request(&Request::Lend { id: i.id }, |b| protocol::decode::<u64>(b).map_err(Error::Remote))
            })
            .map_err(|e| S::Error::custom(format!("cannot send a proxy: {e}")))?;
        WireToken { typeid: i.typeid.as_str().into(), address: i.address.clone(), id: i.id, ticket }
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for BaseProxy {
    /// Takes the key for the proxy's manager from this process's keyring; connects to nothing
    /// (the ticket is claimed on first use).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let t = WireToken::deserialize(d)?;
        let authkey = crate::connection::keyring::key_for(&t.address);
        Ok(BaseProxy::with_ticket(&t.typeid, t.address, authkey, t.id, t.ticket))
    }
}

/// A typed proxy: what [`Manager::publish`](super::Manager::publish) and
/// [`Manager::lookup`](super::Manager::lookup) work with. Implemented by every proxy of this
/// module and by those `#[register]` generates.
pub trait Proxy: Sized {
    /// The Python name of the proxy type (`"ListProxy"`).
    const NAME: &'static str;
    /// The type id of the objects it fronts (`"list"`).
    const TYPEID: &'static str;
    /// Whether an object of `typeid` can be used through this proxy type.
    fn accepts(typeid: &str) -> bool {
        typeid == Self::TYPEID
    }
    /// The untyped proxy inside.
    fn base(&self) -> &BaseProxy;
    /// Wraps an untyped proxy (its type id is checked by the caller).
    #[doc(hidden)]
    fn from_base(base: BaseProxy) -> Self;
}
