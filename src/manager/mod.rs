//! Managers: objects that live in a server process and are used through proxies (Python's
//! `multiprocessing.managers`: `Manager()`, `SyncManager`, `BaseManager.register`).
//!
//! ```
//! use multiproc::Manager;
//!
//! fn worker(l: multiproc::manager::ListProxy<u64>, n: u64) -> multiproc::Result<()> {
//!     l.append(n * n)
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! let manager = Manager::start()?;
//! let l = manager.list::<u64>([])?;
//! let children: Vec<_> = (1..=3)
//!     .map(|n| multiproc::Process::new(worker, (l.clone(), n)).start())
//!     .collect::<Result<_, _>>()?;
//! for c in children {
//!     assert!(c.join()?.success());
//! }
//! l.sort()?;
//! assert_eq!(l.to_vec()?, vec![1, 4, 9]);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! [`Manager::start`] starts a server process with this crate's [`Process`] (so with the
//! chosen start method) and waits until it listens. The server listens on a unix socket in
//! Linux's abstract namespace (no file to leave behind), or on the TCP address you give
//! [`ManagerBuilder::address`]. Every connection must pass the mutual HMAC handshake with the
//! manager's `authkey` (the process tree's key unless given) before its first request is read.
//! Handshakes run concurrently on the accepting thread, at most 1,024 at once and each within
//! 10 s in all; only an authenticated connection gets a thread.
//!
//! **Objects** are kept in the server as *encoded bytes* (the postcard encoding a proxy sends):
//! a `ListProxy<T>` is served by a list of byte strings, a `DictProxy<K, V>` by an
//! insertion-ordered map from encoded keys to encoded values. The server never needs `T`, so
//! one server binary serves proxies of any item type, a remote client can be a different
//! program, and a get returns the stored bytes as they are. The price: equality in the server
//! (`index`, `count`, `remove`, dict keys) is equality of encodings, which matches `==` for
//! integers, strings, and structs/enums/tuples/vectors of those, but not for floats (bitwise)
//! or hash maps (iteration order). Sorting needs `T: Ord`, so [`ListProxy::sort`] sorts in the
//! client and writes back only if the list did not change meanwhile (a compare-and-swap on a
//! version number), which keeps it atomic. Values holding file descriptors cannot be stored.
//!
//! **Your own types** are registered with the [`#[register]`](crate::register) attribute on
//! their `impl` block. They are *typed* in the server: the macro records the type id in a
//! registry the linker builds (every process running the binary has it, before `main`) and
//! generates the proxy with the same methods.
//!
//! **Connections.** Each thread of a client process keeps one connection per manager, as Python
//! does; the server runs one thread per connection, so a blocking call (`lock.acquire`,
//! `queue.get`, `event.wait`) holds up only its caller. A call is one round trip. On a local
//! manager the two sides switch from the socket to a pair of pipes right after the handshake
//! (a pipe round trip costs a third of a socket's), and while waiting for the reply the client
//! spins briefly before it sleeps: `ListProxy::append` runs at ~600k calls/s where CPython's
//! manager does ~25k. A TCP connection carries the frames directly.
//!
//! **Reference counting**, as Python's `incref`/`decref`: an object lives while proxies to it
//! exist. Clones of a proxy share one reference. A proxy serialized (as a process argument,
//! through a pipe, inside another object) carries its own reference, so the object survives
//! even if the sender drops its proxy before the receiver decodes it; bytes that are never
//! decoded keep the object alive until that reference expires
//! ([`UNCLAIMED_REFERENCE_EXPIRY`], 10 minutes unless the builder says otherwise). A serialized
//! proxy never carries the authkey: the receiving process finds it among the keys it inherited
//! at start (Python's `current_process().authkey`) or got from [`Manager::connect`], and
//! decoding connects to nothing until the proxy is first used.
//!
//! **Lifetime.** The server stops on [`Manager::shutdown`] or when the `Manager` is dropped, and
//! is killed with its owner if the owner dies (it is a child with `PR_SET_PDEATHSIG`). Proxies
//! used after that fail with an error, never hang. Clients that vanish release the locks they
//! held; a client waiting on a barrier that vanishes breaks the barrier.
//!
//! **Remote managers**: [`ManagerBuilder::address`] with a TCP address and an
//! [`authkey`](ManagerBuilder::authkey), then [`Manager::connect`] from another process or
//! machine. Objects made there are shared by name with [`Manager::publish`] and
//! [`Manager::lookup`] (what Python does with `register('get_queue', callable=...)`).

/// Implements `Proxy`, `Clone`, `Debug` (Python's repr), `Serialize` and `Deserialize` for a
/// proxy struct `{ base: BaseProxy, _t: PhantomData<..> }`.
macro_rules! proxy_impls {
    ($name:ident $(<$($g:ident),*>)?, $pyname:literal, $typeid:literal $(, [$($also:literal),*])?) => {
        impl$(<$($g),*>)? $crate::manager::Proxy for $name$(<$($g),*>)? {
            const NAME: &'static str = $pyname;
            const TYPEID: &'static str = $typeid;
            $(fn accepts(typeid: &str) -> bool {
                [$($also),*].contains(&typeid)
            })?
            fn base(&self) -> &$crate::manager::BaseProxy {
                &self.base
            }
            fn from_base(base: $crate::manager::BaseProxy) -> Self {
                $name { base, _t: ::std::marker::PhantomData }
            }
        }

        impl$(<$($g),*>)? Clone for $name$(<$($g),*>)? {
            fn clone(&self) -> Self {
                $name { base: self.base.clone(), _t: ::std::marker::PhantomData }
            }
        }

        impl$(<$($g),*>)? ::std::fmt::Debug for $name$(<$($g),*>)? {
            /// Python's repr: `<ListProxy object, typeid 'list' at 0x...>`.
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.base.fmt_repr(f, $pyname)
            }
        }

        impl$(<$($g),*>)? ::serde::Serialize for $name$(<$($g),*>)? {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                self.base.serialize(s)
            }
        }

        impl<'de, $($($g),*)?> ::serde::Deserialize<'de> for $name$(<$($g),*>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                <$crate::manager::BaseProxy as ::serde::Deserialize>::deserialize(d)
                    .map(<Self as $crate::manager::Proxy>::from_base)
            }
        }
    };
}

/// The methods of a built-in object, by their Python names: one table that the server's
/// dispatch matches exhaustively (a method added here and not served is a compile error) and
/// that its proxy names its calls from (a misspelt method is one too). Each variant is the
/// method's name on the wire, written once. `for` names the object serving the table (its
/// [`Served`](registry::Served) impl is made here, see [`registry::dispatch`]) and `as` its type
/// in the error for an unknown method. Registered user types get the same from `#[register]`.
macro_rules! methods {
    ($(#[$m:meta])* enum $Name:ident for $Object:ident as $object:literal { $($method:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        pub(crate) enum $Name {
            $($method),+
        }

        impl $Name {
            /// The method's name on the wire (Python's name for it).
            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $(Self::$method => stringify!($method)),+
                }
            }
        }

        impl $crate::manager::registry::Methods for $Name {
            const OBJECT: &'static str = $object;

            fn parse(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($method) => Some(Self::$method),)+
                    _ => None,
                }
            }
        }

        impl $crate::manager::registry::Served for $Object {
            fn call(
                &self,
                call: $crate::manager::registry::Call<'_, '_>,
            ) -> $crate::manager::registry::Reply {
                $crate::manager::registry::dispatch::<$Name>(self, call)
            }

            fn disconnected(&self, conn: u64) {
                $crate::manager::registry::Builtin::<$Name>::disconnected(self, conn)
            }
        }
    };
}

mod barrier;
mod condition;
pub(crate) mod custom;
mod dict;
mod event;
#[doc(hidden)]
pub mod fuzzing;
mod list;
mod lock;
mod namespace;
mod protocol;
mod proxy;
mod queue;
pub(crate) mod registry;
mod semaphore;
mod server;
mod stream;
mod value;
mod wire_bytes;

pub use barrier::BarrierProxy;
pub use condition::ConditionProxy;
pub use dict::DictProxy;
pub use event::EventProxy;
pub use list::ListProxy;
pub use lock::{AcquireGuard, LockProxy, RLockProxy};
pub use namespace::NamespaceProxy;
pub use protocol::{RemoteError, RemoteErrorKind};
pub use proxy::{BaseProxy, Proxy};
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use semaphore::SemaphoreProxy;
pub use value::{ArrayProxy, ValueProxy};

use crate::connection::{Address, Pipe};
use crate::error::{Error, Result};
use crate::process::{Process, StartMethod};
use crate::sys;
use protocol::{Request, ServerInfo};
use proxy::{forget_connections, with_connection, ClientConn};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wire_bytes::{encode_one, encode_pairs, encode_seq, Bytes};

/// How long [`Manager::start`] waits for the server to report that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A manager: a server process holding shared objects, and the factory for proxies to them
/// (Python's `multiprocessing.Manager()`, a started `SyncManager`).
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list((0..10).map(|i| i * i))?;
/// println!("{l}");   // [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
/// println!("{l:?}"); // <ListProxy object, typeid 'list' at 0x...>
/// assert_eq!(l.get(4)?, 16);
/// assert_eq!(l.slice(2..5)?, vec![4, 9, 16]);
/// manager.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Manager {
    address: Address,
    authkey: Arc<[u8]>,
    process: Option<Process>,
    owner_pid: i32,
    stopped: AtomicBool,
}

/// Options for a [`Manager`] (Python's `BaseManager(address=, authkey=)` and
/// `get_context(method).Manager()`).
#[derive(Clone, Debug, Default)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    start_method: Option<StartMethod>,
    unclaimed_expiry: Option<Duration>,
}

impl ManagerBuilder {
    /// Where the server listens: a TCP address for remote clients (`Address::tcp("0.0.0.0:50000")`,
    /// port 0 for any), or a unix socket path. By default a fresh abstract unix address.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must hold (Python's `authkey=`). By default the process key (Python's
    /// `current_process().authkey`: 32 random bytes shared by this process and its children).
    /// A proxy never carries the key: the processes a proxy is passed to find it in what they
    /// inherited at start, or got from [`Manager::connect`].
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// How to start the server process (default: the process-wide start method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// How long the server keeps the reference of a serialized proxy that no process has
    /// decoded and used yet (default [`UNCLAIMED_REFERENCE_EXPIRY`], 10 minutes). Past it, the
    /// reference is dropped (the object goes if nothing else holds it), and such a proxy decoded
    /// later works only while other references keep the object alive.
    pub fn unclaimed_reference_expiry(mut self, expiry: Duration) -> Self {
        self.unclaimed_expiry = Some(expiry);
        self
    }

    fn config(&self) -> Result<server::ServerConfig> {
        let authkey = match &self.authkey {
            Some(k) => k.clone(),
            None => crate::connection::keyring::process_key()?,
        };
        Ok(server::ServerConfig {
            address: self.address.clone().unwrap_or_else(Address::local),
            authkey,
            unclaimed_expiry: self.unclaimed_expiry.unwrap_or(UNCLAIMED_REFERENCE_EXPIRY),
        })
    }

    /// Starts the server process and waits until it listens (Python's `manager.start()`).
    pub fn start(self) -> Result<Manager> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let config = self.config()?;
        let authkey: Arc<[u8]> = Arc::from(&*config.authkey);
        let (ready_rx, ready_tx) = Pipe::one_way()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let mut p = Process::builder(server::manager_process, (config, ready_tx))
            .name(format!("SyncManager-{n}"))
            .daemon(true);
        if let Some(m) = self.start_method {
            p = p.start_method(m);
        }
        let p = p.start()?;
        let report: std::result::Result<Address, String> = match ready_rx.poll(Some(START_TIMEOUT)) {
            Ok(true) => match ready_rx.recv() {
                Ok(r) => r,
                Err(e) => Err(format!(
                    "the manager process ended before it listened ({e}; {:?})",
                    p.join_timeout(Duration::from_secs(1))
                )),
            },
            _ => {
                let _ = p.kill();
                let _ = p.join();
                Err("the manager process did not start in time".into())
            }
        };
        match report {
            Ok(address) => {
                crate::connection::keyring::remember(&address, &authkey);
                Ok(Manager {
                    address,
                    authkey,
                    process: Some(p),
                    owner_pid: sys::getpid(),
                    stopped: AtomicBool::new(false),
                })
            }
            Err(e) => {
                let _ = p.join_timeout(Duration::from_secs(1));
                Err(Error::invalid(format!("cannot start the manager: {e}")))
            }
        }
    }

    /// Runs the server in *this* process until a client asks it to shut down (Python's
    /// `manager.get_server().serve_forever()`): for a program whose job is to serve. Needs an
    /// [`address`](Self::address) (clients must know where to connect) and usually an
    /// [`authkey`](Self::authkey). `ready` is called with the bound address once it listens.
    pub fn serve_forever(self, ready: impl FnOnce(&Address)) -> Result<()> {
        if self.address.is_none() {
            return Err(Error::invalid("serve_forever needs an address for clients to connect to"));
        }
        let config = self.config()?;
        let server = server::bind(&config)?;
        ready(server.address());
        server.run()
    }
}

impl Manager {
    /// Starts a manager with the default options (Python's `Manager()`); see
    /// [`builder`](Self::builder) for the address, authkey and start method.
    #[allow(clippy::should_implement_trait)]
    pub fn start() -> Result<Manager> {
        ManagerBuilder::default().start()
    }

    /// Options for a new manager.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager already running elsewhere, e.g. a remote one listening on TCP
    /// (Python's `BaseManager(address, authkey).connect()`). Dropping the returned `Manager`
    /// leaves that server running.
    ///
    /// ```
    /// use multiproc::{connection::Address, Manager};
    ///
    /// let server = Manager::builder().address(Address::tcp("127.0.0.1:0")?).authkey(b"secret").start()?;
    /// let remote = Manager::connect(server.address().clone(), b"secret")?;
    /// let q = remote.queue::<String>(0)?;
    /// server.publish("jobs", &q)?;
    /// let same = server.lookup::<multiproc::manager::QueueProxy<String>>("jobs")?;
    /// q.put("hello".to_string())?;
    /// assert_eq!(same.get()?, "hello");
    /// assert!(Manager::connect(server.address().clone(), b"wrong").is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn connect(address: impl Into<Address>, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let address = address.into();
        let authkey: Arc<[u8]> = Arc::from(authkey.as_ref());
        // Authenticate now, so a wrong key or address is reported here.
        let mut conn = ClientConn::open(&address, &authkey)?;
        conn.request(&Request::Info, |b| protocol::decode::<ServerInfo>(b).map_err(Error::Remote))?;
        crate::connection::keyring::remember(&address, &authkey);
        Ok(Manager {
            address,
            authkey,
            process: None,
            owner_pid: sys::getpid(),
            stopped: AtomicBool::new(false),
        })
    }

    /// The server's address (Python's `manager.address`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The key clients authenticate with.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The server process, when this manager started it.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    fn request<R>(&self, req: &Request<'_>, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        with_connection(&self.address, &self.authkey, |c| c.request(req, f))
    }

    fn info(&self) -> Result<ServerInfo> {
        self.request(&Request::Info, |b| protocol::decode(b).map_err(Error::Remote))
    }

    /// The server's process id.
    pub fn server_pid(&self) -> Result<i32> {
        Ok(self.info()?.pid)
    }

    /// How many objects the server holds (Python's `_number_of_objects()`), for tests and
    /// leak checks.
    pub fn number_of_objects(&self) -> Result<usize> {
        Ok(self.info()?.objects as usize)
    }

    fn create<P: Proxy>(&self, typeid: &str, args: &[u8]) -> Result<P> {
        self.create_with(typeid, "", args).map(P::from_base)
    }

    fn create_with(&self, typeid: &str, ctor: &str, args: &[u8]) -> Result<BaseProxy> {
        let id = with_connection(&self.address, &self.authkey, |c| {
            c.request_with(
                &Request::Create { typeid, ctor },
                |out| {
                    out.extend_from_slice(args);
                    Ok(())
                },
                |b| protocol::decode::<u64>(b).map_err(Error::Remote),
            )
        })?;
        Ok(BaseProxy::new(typeid, self.address.clone(), self.authkey.clone(), id))
    }

    /// Creates an object of a type registered with `#[register]` by calling its constructor
    /// `ctor` with the argument tuple `args` in the server. Used by the generated proxies.
    #[doc(hidden)]
    pub fn create_registered<A: Serialize + ?Sized>(
        &self,
        typeid: &str,
        ctor: &str,
        args: &A,
    ) -> Result<BaseProxy> {
        self.create_with(typeid, ctor, &encode_one(args)?)
    }

    /// A shared list holding `items` (Python's `manager.list(sequence)`); `manager.list::<T>([])`
    /// for an empty one.
    pub fn list<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        self.create("list", &encode_seq::<T, _>(items)?)
    }

    /// An empty shared dictionary (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.dict_from(std::iter::empty::<(K, V)>())
    }

    /// A shared dictionary holding `items` (Python's `manager.dict(mapping)`).
    pub fn dict_from<K, V, KB, VB>(
        &self,
        items: impl IntoIterator<Item = (KB, VB)>,
    ) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
        KB: Borrow<K>,
        VB: Borrow<V>,
    {
        self.create("dict", &encode_pairs::<K, V, _, _>(items)?)
    }

    /// An empty shared namespace (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.create("Namespace", &encode_one(&Vec::<(String, Bytes<'_>)>::new())?)
    }

    /// A shared value (Python's `manager.Value(typecode, value)`).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: impl Borrow<T>) -> Result<ValueProxy<T>> {
        self.create("Value", &encode_one(value.borrow())?)
    }

    /// A shared fixed-length array (Python's `manager.Array(typecode, sequence)`).
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ArrayProxy<T>> {
        self.create("Array", &encode_seq::<T, _>(items)?)
    }

    /// A shared FIFO queue holding at most `maxsize` items, `0` for no limit (Python's
    /// `manager.Queue(maxsize)`).
    pub fn queue<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.create("Queue", &encode_one(&(maxsize as u64))?)
    }

    /// A shared joinable queue (Python's `manager.JoinableQueue(maxsize)`).
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>> {
        self.create("JoinableQueue", &encode_one(&(maxsize as u64))?)
    }

    /// A shared lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy> {
        self.create("Lock", &[])
    }

    /// A shared reentrant lock (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.create("RLock", &[])
    }

    /// A shared semaphore with initial value `value` (Python's `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.create("Semaphore", &encode_one(&(value as u64))?)
    }

    /// A shared semaphore that may not be released above `value` (Python's
    /// `manager.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        let base = self.create_with("BoundedSemaphore", "", &encode_one(&(value as u64))?)?;
        Ok(SemaphoreProxy::from_base(base))
    }

    /// A shared condition variable with its own reentrant lock (Python's
    /// `manager.Condition()`).
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.create("Condition", &[])
    }

    /// A shared event (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        self.create("Event", &[])
    }

    /// A shared barrier for `parties` clients (Python's `manager.Barrier(parties)`).
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        self.create("Barrier", &encode_one(&(parties as u64, None::<f64>))?)
    }

    /// A shared barrier whose waits break it after `timeout` by default (Python's
    /// `manager.Barrier(parties, timeout=t)`).
    pub fn barrier_with_timeout(&self, parties: usize, timeout: Duration) -> Result<BarrierProxy> {
        self.create("Barrier", &encode_one(&(parties as u64, Some(timeout.as_secs_f64())))?)
    }

    /// Gives the object behind `proxy` a name in the server, so other clients (remote ones
    /// included) can [`lookup`](Self::lookup) it. The name holds a reference: the object lives
    /// until the server stops, or until the name is published again for another object.
    pub fn publish<P: Proxy>(&self, name: &str, proxy: &P) -> Result<()> {
        self.request(&Request::Publish { name, id: proxy.base().id() }, |_| Ok(()))
    }

    /// A proxy to the object published as `name`. An error if nothing is, or if it is not an
    /// object of `P`'s type.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P> {
        let (id, typeid): (u64, String) =
            self.request(&Request::Lookup { name }, |b| protocol::decode(b).map_err(Error::Remote))?;
        let base = BaseProxy::new(&typeid, self.address.clone(), self.authkey.clone(), id);
        if !P::accepts(&typeid) {
            return Err(Error::invalid(format!(
                "{name:?} is a {typeid:?} object, not one a {} can front",
                P::NAME
            )));
        }
        Ok(P::from_base(base))
    }

    /// Stops the server (Python's `manager.shutdown()`); proxies used afterwards return errors.
    /// For a manager started here, also waits for its process (killing it if it does not end
    /// within a second). Dropping the manager does the same.
    pub fn shutdown(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let asked = ClientConn::open(&self.address, &self.authkey)
            .and_then(|mut c| c.request(&Request::Shutdown, |_| Ok(())));
        forget_connections(&self.address);
        if let Some(p) = &self.process {
            if p.join_timeout(Duration::from_secs(1))?.is_none() {
                p.kill()?;
                p.join()?;
            }
        }
        asked
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.process.is_some() && sys::getpid() == self.owner_pid {
            let _ = self.shutdown();
        }
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.stopped.load(Ordering::Relaxed) { "stopped" } else { "running" };
        write!(f, "<SyncManager address={} {state}>", self.address)
    }
}

/// How long a manager's server keeps the reference of a serialized proxy nobody has claimed,
/// unless [`ManagerBuilder::unclaimed_reference_expiry`] says otherwise.
pub const UNCLAIMED_REFERENCE_EXPIRY: Duration = Duration::from_secs(600);

/// The server side of a registered type: what `#[register]` implements (internal).
#[doc(hidden)]
pub mod __private {
    pub use super::custom::{decode_args, encode_result, no_such_method, read, write, Registered};
    pub use super::registry::{TypeRegistration, REGISTRY};
    pub use super::RemoteError;
}
