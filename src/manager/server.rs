//! The manager's server: a table of objects with reference counts, a listener, and one thread
//! per client connection (as Python's `Server.serve_forever` / `handle_request`), so that a
//! call that blocks (`lock.acquire`, `queue.get`, `event.wait`) blocks only its own client.
//!
//! A connection first passes the HMAC handshake, which the [`Listener`] runs for it (concurrently
//! with the others, off the accept path, small cap, total deadline, no thread); afterwards its
//! frames are capped at [`MAX_REQUEST`], and its buffer grows only as a frame's bytes arrive. Anything malformed — garbage, a truncated frame, a length over the
//! cap, a request that does not decode — ends that connection only: the server drops it and
//! keeps serving everyone else. When a connection ends, each object releases what it held for
//! it (locks, a barrier place).

use super::protocol::{self, Request, ServerInfo, MAX_REQUEST, REPLY_ERR, REPLY_OK};
use super::protocol::{RemoteError, RemoteErrorKind};
use super::proxy::PIPES_HELLO;
use super::registry::{self, CallCx, Served};
use super::stream::{spin_budget, Kind, Reader, Writer};
use crate::connection::{Address, Connection, Listener};
use crate::error::{Error, Result};
use crate::sync::lock;
use crate::sys;
use crate::wire::frame;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the owner sends to a manager process.
#[derive(Serialize, Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    /// How long a ticket may wait for its claim.
    pub(crate) unclaimed_expiry: Duration,
}

struct Entry {
    obj: Arc<dyn Served>,
    refs: u64,
}

struct Table {
    objects: HashMap<u64, Entry>,
    /// Serialized proxies in flight: ticket -> (object id, when it expires).
    tickets: HashMap<u64, (u64, Instant)>,
    /// When expired tickets are next looked for.
    next_sweep: Instant,
    names: HashMap<String, (u64, String)>,
    typeids: HashMap<u64, String>,
}

/// A running server's shared state.
pub(crate) struct Server {
    table: Mutex<Table>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    stopping: AtomicBool,
    listener: Listener,
    unclaimed_expiry: Duration,
}

impl Server {
    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    fn object(&self, id: u64) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        match self.table().objects.get(&id) {
            Some(e) => Ok(e.obj.clone()),
            None => Err(no_object(id)),
        }
    }

    fn incref(&self, id: u64) -> std::result::Result<(), RemoteError> {
        let mut t = self.table();
        let e = t.objects.get_mut(&id).ok_or_else(|| no_object(id))?;
        e.refs += 1;
        Ok(())
    }

    fn decref(&self, id: u64) {
        let removed = {
            let mut t = self.table();
            let gone = match t.objects.get_mut(&id) {
                Some(e) => {
                    e.refs = e.refs.saturating_sub(1);
                    e.refs == 0
                }
                None => false,
            };
            if gone {
                t.typeids.remove(&id);
                t.objects.remove(&id)
            } else {
                None
            }
        };
        // The object is dropped here, outside the table lock.
        drop(removed);
    }

    /// Drops the references of tickets past their expiry (looked for at most every eighth of
    /// the expiry, on the requests that create objects, deal with tickets or count objects).
    fn sweep_tickets(&self) {
        let now = Instant::now();
        let expired: Vec<u64> = {
            let mut t = self.table();
            if now < t.next_sweep {
                return;
            }
            t.next_sweep = now + (self.unclaimed_expiry / 8).max(Duration::from_millis(1));
            let gone: Vec<u64> =
                t.tickets.iter().filter(|(_, (_, at))| *at <= now).map(|(k, _)| *k).collect();
            gone.iter().filter_map(|k| t.tickets.remove(k)).map(|(id, _)| id).collect()
        };
        for id in expired {
            self.decref(id);
        }
    }

    /// Answers one request into `out` (after the status byte). `Ok(false)` means: reply, then
    /// stop the server.
    fn handle(
        &self,
        cx: &CallCx<'_>,
        req: Request<'_>,
        args: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<bool, RemoteError> {
        match req {
            Request::Call { id, method } => {
                let obj = self.object(id)?;
                obj.call(registry::Call { cx, method, args, out })?;
            }
            Request::Create { typeid, ctor } => {
                self.sweep_tickets();
                let obj = registry::create(typeid, ctor, args)?;
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut t = self.table();
                t.objects.insert(id, Entry { obj, refs: 1 });
                t.typeids.insert(id, typeid.to_string());
                protocol::encode_into(&id, out)?;
            }
            Request::IncRef { id } => self.incref(id)?,
            Request::DecRef { id } => self.decref(id),
            Request::Lend { id } => {
                self.sweep_tickets();
                self.incref(id)?;
                let ticket = self.next_id.fetch_add(1, Ordering::Relaxed);
                let expires = Instant::now() + self.unclaimed_expiry;
                self.table().tickets.insert(ticket, (id, expires));
                protocol::encode_into(&ticket, out)?;
            }
            Request::Claim { id, ticket } => {
                let claimed = self.table().tickets.remove(&ticket);
                match claimed {
                    Some((t, _)) if t == id => {}
                    _ => self.incref(id)?,
                }
                self.sweep_tickets();
            }
            Request::Publish { name, id } => {
                self.incref(id)?;
                let typeid = self.table().typeids.get(&id).cloned().unwrap_or_default();
                let old = self.table().names.insert(name.to_string(), (id, typeid));
                if let Some((old, _)) = old {
                    self.decref(old);
                }
            }
            Request::Lookup { name } => {
                let found = self.table().names.get(name).cloned();
                let (id, typeid) = found.ok_or_else(|| {
                    RemoteError::new(RemoteErrorKind::NoSuchName, format!("nothing is published as {name:?}"))
                })?;
                self.incref(id)?;
                protocol::encode_into(&(id, typeid), out)?;
            }
            Request::Info => {
                self.sweep_tickets();
                let objects = self.table().objects.len() as u64;
                protocol::encode_into(&ServerInfo { pid: sys::getpid(), objects }, out)?;
            }
            Request::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    fn disconnected(&self, conn: u64) {
        let objects: Vec<Arc<dyn Served>> = self.table().objects.values().map(|e| e.obj.clone()).collect();
        for o in objects {
            o.disconnected(conn);
        }
    }

    /// Serves one authenticated connection until it ends.
    fn serve_connection(self: Arc<Self>, sock: OwnedFd) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (pipes, kind) = if sys::net::is_unix_socket(sock.as_fd()) {
            match frame::recv(sock.as_fd(), 64) {
                Ok((hello, fds)) if hello == PIPES_HELLO && fds.len() == 2 => {
                    let mut fds = fds.into_iter();
                    (Some((fds.next().expect("two"), fds.next().expect("two"))), Kind::Pipe)
                }
                _ => return,
            }
        } else {
            (None, Kind::Socket)
        };
        let (rx, tx) = match &pipes {
            Some((r, w)) => (r.as_fd(), w.as_fd()),
            None => (sock.as_fd(), sock.as_fd()),
        };
        let mut reader = Reader::new();
        let mut writer = Writer::new();
        let spin = spin_budget();
        let mut stop = false;
        // End of file, a truncated or an oversized frame: drop the client.
        while let Ok(payload) = reader.next_frame(rx, kind, MAX_REQUEST, spin) {
            let Ok((req, args)) = crate::wire::take::<Request<'_>>(payload) else {
                break; // not a request: the client is broken or hostile
            };
            let cx = CallCx { conn, sock: sock.as_fd(), undo: Default::default() };
            let out = writer.begin();
            out.push(REPLY_OK);
            if !args.is_empty() && !matches!(req, Request::Call { .. } | Request::Create { .. }) {
                break; // trailing bytes after a request that takes none
            }
            match self.handle(&cx, req, args, out) {
                Ok(true) => {}
                Ok(false) => stop = true,
                Err(e) => {
                    out.truncate(super::stream::HEADER_LEN);
                    out.push(REPLY_ERR);
                    let _ = protocol::encode_into(&e, out);
                }
            }
            let sent = writer.send(tx, kind);
            if sent.is_err() {
                if let Some(undo) = cx.undo.borrow_mut().take() {
                    undo();
                }
                break;
            }
            if stop {
                self.stop();
                break;
            }
        }
        self.disconnected(conn);
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.listener.close();
    }

    /// Accepts connections until a shutdown request closes the listener. The listener runs the
    /// handshakes (concurrently, bounded, each within a total deadline, pausing when out of
    /// descriptors); only an authenticated connection gets a thread.
    fn serve_forever(self: Arc<Self>) -> Result<()> {
        loop {
            match self.listener.accept_fd() {
                Ok(sock) => {
                    let server = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name("manager-connection".into())
                        .spawn(move || server.serve_connection(sock));
                    if let Err(e) = spawned {
                        log::warn!("multiproc: manager cannot start a connection thread: {e}");
                    }
                }
                Err(_) if self.stopping.load(Ordering::SeqCst) => return Ok(()),
                // A peer that failed or abandoned the handshake: refused, on to the next.
                Err(Error::Authentication(_) | Error::Eof | Error::Decode(_)) => continue,
                Err(Error::Io { source, .. }) if sys::net::is_out_of_resources(&source) => continue,
                Err(Error::Io { source, .. })
                    if matches!(source.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE)) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn no_object(id: u64) -> RemoteError {
    RemoteError::new(RemoteErrorKind::NoSuchObject, format!("no object with id {id} in the manager"))
}

/// Binds the server's listener.
pub(crate) fn bind(config: &ServerConfig) -> Result<Arc<Server>> {
    let listener = Listener::bind(config.address.clone(), Some(&config.authkey))?;
    Ok(Arc::new(Server {
        table: Mutex::new(Table {
            objects: HashMap::new(),
            tickets: HashMap::new(),
            next_sweep: Instant::now() + config.unclaimed_expiry,
            names: HashMap::new(),
            typeids: HashMap::new(),
        }),
        next_id: AtomicU64::new(1),
        next_conn: AtomicU64::new(1),
        stopping: AtomicBool::new(false),
        listener,
        unclaimed_expiry: config.unclaimed_expiry,
    }))
}

impl Server {
    pub(crate) fn address(&self) -> &Address {
        self.listener.address()
    }

    pub(crate) fn run(self: Arc<Self>) -> Result<()> {
        self.serve_forever()
    }
}

/// The target of a manager's server process: bind, report the address (or the error) on
/// `ready`, then serve until shut down.
pub(crate) fn manager_process(config: ServerConfig, ready: Connection) {
    sys::net::ignore_sigint();
    let server = match bind(&config) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(&Err::<Address, String>(e.to_string()));
            return;
        }
    };
    if ready.send(&Ok::<Address, String>(server.address().clone())).is_err() {
        return; // the owner is gone
    }
    drop(ready);
    if let Err(e) = server.run() {
        eprintln!("multiproc: manager server stopped: {e}");
    }
}
