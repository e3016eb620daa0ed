//! Connections between processes: [`Pipe`] and [`Connection`] (Python's
//! `multiprocessing.connection`), and [`wait`] over many of them.
//!
//! A connection is one end of a unix stream socket carrying frames (see `wire/frame.rs`):
//! `send`/`recv` move serde values, `send_bytes`/`recv_bytes` raw byte messages, and handles
//! inside values (other connections, queues, locks) travel with their descriptors. A peer that
//! exits closes its end, so a blocked `recv` returns [`Error::Eof`] instead of hanging.
//!
//! The two ends of a [`Pipe`] also share memory (see `lane.rs`): small messages without handles
//! pass through a ring per direction and are decoded in place, and a receiver that is waiting
//! picks them up without a system call. The socket still carries large messages and handles,
//! and still tells each side when the other is gone.

#[cfg(feature = "tokio")]
mod aio;
pub(crate) mod auth;
pub(crate) mod keyring;
mod lane;
mod listener;
mod registry;
mod wait;

pub(crate) use auth::{accept_handshake, connect_handshake};
pub use listener::{Address, Client, Listener};
pub(crate) use registry::{close_inherited as close_inherited_connections, lock as lock_registry};

pub use wait::{wait, Waitable};

/// The largest message that travels through a lane, for the model checker's models.
#[cfg(all(test, loom))]
pub(crate) const INLINE_MAX_FOR_MODELS: usize = lane::INLINE_MAX;

use crate::error::{Error, Result};
use crate::sync::wait as wait_core;
use crate::sys;
use crate::wire::{self, frame, FdOwned, FdRef};
use lane::{Lanes, Next, SocketFront};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// One end of a [`Pipe`] (Python's `multiprocessing.connection.Connection`).
///
/// A connection can be passed to a child process as an argument or inside a message, and shared
/// between threads: sends are serialized among themselves, and so are receives, so messages never
/// interleave, and one thread may send while another receives.
pub struct Connection {
    /// The socket; `None` only inside `drop`. Its number is this connection's until then:
    /// `close` stands the socket down in place ([`sys::retire`]), so that a `BorrowedFd` from
    /// [`as_fd`](AsFd::as_fd) never outlives its descriptor.
    sock: Option<OwnedFd>,
    /// Whether the connection is open. Every call that uses the socket holds it for reading, so
    /// that `close`, which writes it, waits for them (shutting the socket down to wake them).
    open: RwLock<bool>,
    readable: bool,
    writable: bool,
    max_message: AtomicUsize,
    sending: Mutex<()>,
    receiving: Mutex<frame::Reader>,
    /// The shared-memory lanes of a pipe; `None` for sockets from a `Listener`/`Client`.
    lanes: Option<Lanes>,
    /// Async receives, and async sends, of this process wait their turn here.
    #[cfg(feature = "tokio")]
    turns: aio::Turns,
}

/// Python's `Pipe()`: a pair of connected [`Connection`]s, made by [`Pipe::duplex`] (Python's
/// `Pipe()`, `Pipe(duplex=True)`) or [`Pipe::one_way`] (Python's `Pipe(duplex=False)`).
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends that both send and receive (Python's `Pipe()`, whose `duplex`
    /// defaults to true).
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::duplex()?;
    /// a.send(&(1, "one".to_string()))?;
    /// let (n, s): (i32, String) = b.recv()?;
    /// assert_eq!((n, s.as_str()), (1, "one"));
    /// b.send(&2)?;
    /// assert_eq!(a.recv::<i32>()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn duplex() -> Result<(Connection, Connection)> {
        let (a, b) = sys::socketpair().map_err(Error::io("creating a pipe"))?;
        let (la, lb) = Lanes::pair()?;
        Ok((Connection::new(a, true, true, Some(la)), Connection::new(b, true, true, Some(lb))))
    }

    /// Two connected ends, `(receiver, sender)`: the first only receives, the second only
    /// sends (Python's `Pipe(duplex=False)`, in its order).
    ///
    /// ```
    /// let (rx, tx) = multiproc::Pipe::one_way()?;
    /// tx.send(&"one way")?;
    /// assert_eq!(rx.recv::<String>()?, "one way");
    /// assert!(rx.send(&"back").is_err(), "the receiving end cannot send");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn one_way() -> Result<(Connection, Connection)> {
        let (a, b) = sys::socketpair().map_err(Error::io("creating a pipe"))?;
        let (la, lb) = Lanes::pair()?;
        sys::shutdown_write(a.as_fd()).map_err(Error::io("creating a pipe"))?;
        Ok((Connection::new(a, true, false, Some(la)), Connection::new(b, false, true, Some(lb))))
    }
}

impl Connection {
    pub(crate) fn from_fd(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        Connection::new(fd, readable, writable, None)
    }

    fn new(fd: OwnedFd, readable: bool, writable: bool, lanes: Option<Lanes>) -> Connection {
        registry::add(fd.as_raw_fd());
        // While descriptors are to be had: what a later `close` puts in the socket's place.
        sys::prepare_retire();
        Connection {
            sock: Some(fd),
            open: RwLock::new(true),
            readable,
            writable,
            max_message: AtomicUsize::new(frame::DEFAULT_MAX_MESSAGE),
            sending: Mutex::new(()),
            receiving: Mutex::new(frame::Reader::new()),
            lanes,
            #[cfg(feature = "tokio")]
            turns: aio::Turns::default(),
        }
    }

    /// The socket's descriptor, or -1 once closed (Python's `fileno()`). Bytes written to it
    /// directly would corrupt the stream of messages. [`as_fd`](AsFd::as_fd) lends the same
    /// number as a `BorrowedFd`, for the connection's whole life.
    pub fn fileno(&self) -> RawFd {
        if *self.open_guard() {
            self.sock().as_raw_fd()
        } else {
            -1
        }
    }

    /// The socket (after `close`, the dead socket in its place).
    fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_ref().expect("a connection's socket is there until it is dropped").as_fd()
    }

    fn open_guard(&self) -> std::sync::RwLockReadGuard<'_, bool> {
        self.open.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one encoded message: `msg` is a frame built on [`frame::start_frame`].
    fn transmit(&self, msg: &mut [u8], fds: &[RawFd]) -> Result<()> {
        let _sending = self.send_guard();
        self.with_fd(|fd| {
            let Some(lanes) = &self.lanes else {
                if !fds.is_empty() && !sys::net::is_unix_socket(fd) {
                    return Err(Error::invalid(
                        "a handle that owns a file descriptor cannot be sent over a TCP connection \
                         (descriptors travel only over unix sockets)",
                    ));
                }
                return frame::send(fd, msg, fds);
            };
            let tx = lanes.tx();
            let _put = tx.lock_put();
            let payload = &msg[frame::HEADER_LEN..];
            if fds.is_empty() && payload.len() <= lane::INLINE_MAX {
                tx.push(false, payload, fd)?;
                tx.ring_bell(fd)
            } else {
                // The marker goes first, so a receiver drains the socket while the frame is sent;
                // one parked on the lane is woken for it (one asleep on the socket wakes to the
                // frame itself).
                tx.push(true, &[], fd)?;
                tx.wake_parked();
                frame::send(fd, msg, fds)
            }
        })
    }

    /// Receives one message and hands it to `take`: `Some(bytes)` for a message in shared
    /// memory (already checked against the size cap), `None` when the next frame on the socket
    /// is the message (`take` reads it with the reader it is given).
    fn receive<R>(
        &self,
        take: impl FnOnce(&mut frame::Reader, BorrowedFd<'_>, Option<&[u8]>) -> Result<R>,
    ) -> Result<R> {
        let mut reader = self.recv_guard();
        self.with_fd(|fd| {
            let Some(lanes) = &self.lanes else {
                return take(&mut reader, fd, None);
            };
            let rx = lanes.rx();
            let _get = rx.lock_get();
            rx.set_active(true);
            let mut spun = false;
            let mut slice = wait_core::SLICE;
            loop {
                if let Some((next, after)) = rx.peek()? {
                    let out = match next {
                        Next::Inline(bytes) if bytes.len() > self.max_message() => {
                            Err(Error::MessageTooLarge {
                                len: bytes.len() as u64,
                                max: self.max_message() as u64,
                            })
                        }
                        Next::Inline(bytes) => take(&mut reader, fd, Some(bytes)),
                        Next::Socket => {
                            rx.advance(after);
                            take(&mut reader, fd, None)
                        }
                    };
                    rx.advance(after);
                    rx.drained(std::mem::take(&mut reader.bells));
                    if rx.bells_pending() {
                        lane::drain_bells(&rx, fd)?;
                    }
                    return out;
                }
                if !spun {
                    spun = true;
                    if rx.spin_for_data(&lanes.tx()) {
                        continue;
                    }
                }
                if wait_core::may_spin() && !wait_core::oversubscribed() {
                    // Two CPUs or more, not all taken: sleep on the socket, where a sender that
                    // sees `active` clear rings the doorbell. A socket's wake-up tells the
                    // scheduler that the sender is about to wait, so this receiver runs on the
                    // sender's CPU at once instead of waking an idle one. Once runnable tasks
                    // outnumber the CPUs no CPU is idle, and the futex below wakes sooner (on
                    // this machine beside two busy loops, a bare futex ping-pong does 70k to
                    // 160k round trips a second, a socket pair's 33k to 83k) for fewer calls.
                    rx.set_active(false);
                    if !rx.has_data() {
                        if let SocketFront::EndOfFile = lane::wait_bells(&rx, fd)? {
                            if !rx.has_data() {
                                return Err(Error::Eof);
                            }
                        }
                    }
                    rx.set_active(true);
                    spun = false;
                    continue;
                }
                // One CPU, or all CPUs busy: sleep on the lane's flag, which a sender that sees
                // it parked wakes with one futex call (where the peer is woken matters little
                // when no CPU is idle). Woken without a record, or after a slice, check that the
                // socket is not hung up (every copy of the peer's end closed, or shut down). A
                // peer that exits without closing wakes nobody, so the slices start at the wait
                // core's (a peer that sent its last message and exited is seen within 10 ms)
                // and double up to its longest. Not shorter: a timed sleep shorter than the
                // scheduler's tick reprograms the CPU's timer on every sleep and wake, and on
                // this machine slices of 1 ms made a ping-pong 3 to 4 times slower than slices
                // of 4 ms or more (35k against 125k round trips a second beside two busy loops;
                // 220k against 420k on one CPU).
                if !rx.park(slice) {
                    if sys::hung_up(fd) && !rx.has_data() {
                        return Err(Error::Eof);
                    }
                    slice = (slice * 2).min(wait_core::PARK_SLICE);
                }
                spun = false;
            }
        })
    }

    fn with_fd<T>(&self, f: impl FnOnce(BorrowedFd<'_>) -> Result<T>) -> Result<T> {
        let open = self.open_guard();
        if !*open {
            return Err(Error::Closed("connection"));
        }
        f(self.sock())
    }

    fn send_guard(&self) -> MutexGuard<'_, ()> {
        self.sending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recv_guard(&self) -> MutexGuard<'_, frame::Reader> {
        self.receiving.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn max_message(&self) -> usize {
        self.max_message.load(Ordering::Relaxed)
    }

    fn check_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::invalid("connection is read-only"));
        }
        Ok(())
    }

    fn check_readable(&self) -> Result<()> {
        if !self.readable {
            return Err(Error::invalid("connection is write-only"));
        }
        Ok(())
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Self::close) was called.
    pub fn closed(&self) -> bool {
        !*self.open_guard()
    }

    /// The largest message [`recv`](Self::recv) accepts (1 GiB by default). A longer one is
    /// discarded unread and reported as [`Error::MessageTooLarge`].
    pub fn set_max_message_size(&self, bytes: usize) {
        self.max_message.store(bytes, Ordering::Relaxed);
    }

    /// Sends a value (Python's `send(obj)`). Handles inside it travel with their descriptors.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check_writable()?;
        let mut msg = frame::start_frame();
        let fds = wire::encode(value, &mut msg)?;
        self.transmit(&mut msg, &fds)
    }

    /// Receives a value sent with [`send`](Self::send) (Python's `recv()`). Blocks until one
    /// arrives; [`Error::Eof`] once the peer has closed and nothing is left.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.check_readable()?;
        self.receive(|reader, fd, inline| match inline {
            Some(bytes) => wire::decode(bytes, Vec::new()),
            None => {
                let (bytes, fds) = reader.recv(fd, self.max_message())?;
                wire::decode(&bytes, fds)
            }
        })
    }

    /// Sends raw bytes as one message (Python's `send_bytes`; slice for `offset`/`size`).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.check_writable()?;
        let mut msg = Vec::with_capacity(frame::HEADER_LEN + bytes.len());
        msg.extend_from_slice(&[0u8; frame::HEADER_LEN]);
        msg.extend_from_slice(bytes);
        self.transmit(&mut msg, &[])
    }

    /// Receives one message sent with [`send_bytes`](Self::send_bytes) (Python's
    /// `recv_bytes()`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.check_readable()?;
        self.receive(|reader, fd, inline| match inline {
            Some(bytes) => Ok(bytes.to_vec()),
            None => reader.recv(fd, self.max_message()).map(|(bytes, _)| bytes),
        })
    }

    /// Receives one message into `buf` and returns its length (Python's `recv_bytes_into`).
    /// If `buf` is too short the message is returned whole in [`Error::BufferTooShort`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.check_readable()?;
        self.receive(|reader, fd, inline| {
            if let Some(bytes) = inline {
                if bytes.len() > buf.len() {
                    return Err(Error::BufferTooShort(bytes.to_vec()));
                }
                buf[..bytes.len()].copy_from_slice(bytes);
                return Ok(bytes.len());
            }
            let mut incoming = reader.recv_header(fd)?;
            let len = incoming.len;
            if len > buf.len() {
                if len > self.max_message() {
                    let _ = reader.skip_payload(fd, &mut incoming);
                    return Err(Error::MessageTooLarge { len: len as u64, max: self.max_message() as u64 });
                }
                let mut whole = vec![0u8; len];
                reader.recv_payload_into(fd, &mut incoming, &mut whole)?;
                return Err(Error::BufferTooShort(whole));
            }
            reader.recv_payload_into(fd, &mut incoming, &mut buf[..len])?;
            Ok(len)
        })
    }

    /// Whether a message (or end-of-file) is ready to be received within `timeout`; `None`
    /// waits as long as it takes (Python's `poll(timeout)`; `poll()` is `Some(ZERO)`).
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_readable()?;
        let deadline = sys::deadline_after(timeout);
        self.with_fd(|fd| loop {
            if self.lanes.is_some() && self.ready_check(fd)? {
                return Ok(true);
            }
            if sys::poll_readable(&[fd], deadline).map_err(Error::io("polling"))?.is_none() {
                return Ok(false);
            }
            if self.lanes.is_none() || self.ready_check(fd)? {
                return Ok(true);
            }
        })
    }

    /// For a connection with lanes: whether a message or end-of-file is there now. When not,
    /// the receiver is marked asleep, so the next message rings the socket's doorbell; stale
    /// doorbells are read off the socket when no other thread or process is receiving.
    fn ready_check(&self, fd: BorrowedFd<'_>) -> Result<bool> {
        let Some(lanes) = &self.lanes else { return Ok(true) };
        let rx = lanes.rx();
        if rx.has_data() {
            return Ok(true);
        }
        rx.set_active(false);
        if rx.has_data() {
            return Ok(true);
        }
        let front = match (self.receiving.try_lock(), rx.try_lock_get()) {
            (Ok(_reader), Some(_get)) => lane::drain_bells(&rx, fd)?,
            _ => {
                // Someone else is receiving: report what the socket shows.
                let mut b = [0u8; 1];
                match sys::peek_now(fd, &mut b) {
                    Ok(0) => SocketFront::EndOfFile,
                    Ok(_) => SocketFront::Frame,
                    Err(_) => SocketFront::Nothing,
                }
            }
        };
        Ok(!matches!(front, SocketFront::Nothing) || rx.has_data())
    }

    /// Closes this end (Python's `close()`); later calls report [`Error::Closed`]. Dropping the
    /// connection closes it too.
    ///
    /// If another thread is blocked on this connection at that moment, the socket is shut down to
    /// wake it (its call returns [`Error::Eof`]); that ends the connection for every copy of this
    /// end, in other processes too. Without such a thread only this descriptor is closed.
    ///
    /// The socket is released at once (the peer sees end-of-file once every other copy of this
    /// end is closed too), but its descriptor number stays this connection's until it is
    /// dropped, referring to a dead socket: a `BorrowedFd` from [`as_fd`](AsFd::as_fd) stays
    /// valid (see the `AsFd` impl).
    pub fn close(&self) {
        #[cfg(feature = "tokio")]
        if !self.turns.forget() {
            // An async call is waiting on its own duplicate of the socket: shut it down, as
            // for a blocked thread, so that it returns and the peer sees the end.
            if *self.open_guard() {
                let _ = sys::shutdown_both(self.sock());
            }
        }
        let mut open = match self.open.try_write() {
            Ok(open) => open,
            Err(_) => {
                if *self.open_guard() {
                    let _ = sys::shutdown_both(self.sock());
                }
                if let Some(lanes) = &self.lanes {
                    // A receiver parked on its lane looks at the socket again and finds it shut.
                    lanes.rx().wake_parked();
                }
                self.open.write().unwrap_or_else(|p| p.into_inner())
            }
        };
        if std::mem::replace(&mut *open, false) {
            registry::remove(self.sock().as_raw_fd());
            if let Err(e) = sys::retire(self.sock()) {
                log::warn!(
                    "closing a connection: {e}; its socket stays open until the connection is dropped"
                );
            }
            self.forget_lanes();
        }
    }

    /// On close, with the descriptor closed: the sender's next message rings the doorbell, and
    /// so learns at once if every copy of this end is gone; a receiver parked on the lane this
    /// end sends on wakes to look at the socket.
    fn forget_lanes(&self) {
        if let (Some(lanes), true) = (&self.lanes, self.readable) {
            lanes.rx().set_active(false);
        }
        if let (Some(lanes), true) = (&self.lanes, self.writable) {
            lanes.tx().wake_parked();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let open = *self.open.get_mut().unwrap_or_else(|p| p.into_inner());
        let sock = self.sock.take();
        if open {
            if let Some(fd) = sock {
                registry::remove(fd.as_raw_fd());
                drop(fd);
            }
            self.forget_lanes();
        }
    }
}

/// The connection's socket, for `poll(2)`, `epoll`, a reactor, or a duplicate
/// (`BorrowedFd::try_clone_to_owned`). Sending or receiving on it directly would corrupt the
/// stream of messages: use it to wait.
///
/// **Readiness.** A connection from a [`Listener`] or [`Client`] carries everything on the
/// socket, which is readable exactly when a message or end-of-file is there. The ends of a
/// [`Pipe`] also pass small messages through shared memory, and those make the socket readable
/// only while the receiver is marked asleep: [`poll`](Connection::poll) and [`wait`] mark it
/// so. Call `conn.poll(Some(Duration::ZERO))` first; when it says `false`, the descriptor turns
/// readable when the next message or end-of-file comes, until the next receive.
///
/// **After [`close`](Connection::close).** `close` takes `&self`, so it may run while a
/// `BorrowedFd` is lent. It releases the socket (the peer sees end-of-file as after Python's
/// `close()`) but keeps the descriptor number open, on a dead socket that reads end-of-file and
/// polls hung up, until the connection is dropped: the `BorrowedFd` never refers to a closed
/// number or to another file that took it. [`fileno`](Connection::fileno) says -1 by then.
///
/// A connection is not `AsRawFd`: every `AsRawFd` type is a [`Waitable`] that [`wait`] asks
/// only through its descriptor, and a pipe's end must be asked through its shared memory too.
/// `conn.as_fd().as_raw_fd()` gives the number.
impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock()
    }
}

impl Waitable for Connection {
    fn wait_fd(&self) -> RawFd {
        self.fileno()
    }

    fn ready_hint(&self) -> Option<bool> {
        if self.lanes.is_none() || !self.readable {
            return None;
        }
        let open = self.open_guard();
        if !*open {
            return None;
        }
        Some(self.ready_check(self.sock()).unwrap_or(true))
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fileno())
            .field("shared_memory", &self.lanes.is_some())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeTuple};
        let open = self.open_guard();
        if !*open {
            return Err(S::Error::custom("cannot send a closed connection"));
        }
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&FdRef(self.sock()))?;
        t.serialize_element(&self.readable)?;
        t.serialize_element(&self.writable)?;
        t.serialize_element(&self.lanes)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (fd, readable, writable, lanes) = <(FdOwned, bool, bool, Option<Lanes>)>::deserialize(d)?;
        Ok(Connection::new(fd.0, readable, writable, lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;

    #[test]
    #[cfg_attr(miri, ignore = "a pipe's socket pair and memfd: Miri has neither")]
    fn a_receiver_with_every_cpu_busy_sleeps_on_its_lane_and_is_woken_there() {
        let (a, b) = Pipe::duplex().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // More runnable threads than CPUs: the wait core sees the machine oversubscribed.
        let busy: Vec<_> = (0..sys::cpu_count() + 1)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !wait_core::oversubscribed() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let receiver = std::thread::spawn(move || b.recv::<u64>());
        let lanes = a.lanes.as_ref().unwrap();
        let mut parked = false;
        while !parked && std::time::Instant::now() < deadline {
            parked = lanes.tx().receiver_parked();
            std::thread::yield_now();
        }
        a.send(&7u64).unwrap();
        let got = receiver.join().unwrap();
        stop.store(true, Relaxed);
        busy.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(got.unwrap(), 7);
        assert!(parked, "the receiver slept on the socket although no CPU was idle");
    }
}
