//! Async sends and receives (feature `tokio`), on the same lanes and socket as the blocking
//! ones. A receiver that finds its lane empty first spins on it as the blocking receive does
//! (the wait core's adaptive budget, at most 50 µs, only while the peer runs and with two
//! CPUs or more; the runtime's thread is held meanwhile), so that a ping-pong on idle CPUs
//! makes no system call on either side. Then it marks itself asleep on the socket
//! (`reader_active` idle, as `poll` does), so a sender rings the socket's doorbell, which
//! tokio's reactor watches: no thread, no futex sleep. A sender waiting for lane space sleeps
//! through the waker thread. An uncontended turn on the connection is taken with `try_lock`,
//! without a lock future.

use super::lane::{self, Lane, Next, SocketFront};
use super::Connection;
use crate::error::{Error, Result};
use crate::sync::aio;
use crate::sys;
use crate::wire::{self, frame};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;

/// The turns of this process's async receivers and senders on one connection: each waits
/// here (a fair, cancel-safe queue) before it touches the connection. The receivers' turn
/// keeps a frame that a cancelled receive left half-read.
#[derive(Default)]
pub(super) struct Turns {
    recv: tokio::sync::Mutex<RecvTurn>,
    send: tokio::sync::Mutex<Option<Registered>>,
}

#[derive(Default)]
struct RecvTurn {
    partial: Option<Partial>,
    sock: Option<Registered>,
}

/// A duplicate of the socket registered with one runtime's reactor, kept between calls from
/// that runtime (registering costs four system calls), dropped when the connection closes.
/// Listed with the connections' descriptors, so that a forked child closes it as it closes
/// the connection's own (a copy left open there would hide this end's close from the peer).
struct Registered {
    runtime: tokio::runtime::Id,
    fd: AsyncFd<OwnedFd>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        super::registry::remove(std::os::fd::AsRawFd::as_raw_fd(self.fd.get_ref()));
    }
}

impl Turns {
    /// Drops the registered duplicates, so that closing the connection closes the socket.
    /// False if an async call is in progress (it holds its duplicate until it returns).
    pub(super) fn forget(&self) -> bool {
        match (self.recv.try_lock(), self.send.try_lock()) {
            (Ok(mut r), Ok(mut s)) => {
                r.sock = None;
                *s = None;
                true
            }
            _ => false,
        }
    }
}

/// A frame being read off the socket.
#[derive(Default)]
pub(super) struct Partial {
    header: [u8; frame::HEADER_LEN],
    have: usize,
    len: usize,
    nfds: usize,
    /// Whether the payload is kept (at most the size cap) or read and dropped.
    keep: bool,
    payload: Vec<u8>,
    got: usize,
    fds: Vec<OwnedFd>,
}

/// What [`Connection::look`] found.
enum Look<R> {
    Got(Result<R>),
    Frame,
    Nothing,
}

fn io_err(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(context)
}

/// A frame being written without waiting. Dropped before it is whole (its future cancelled),
/// it finishes the write in the dropping thread, waiting as a blocking send would: a torn
/// frame would corrupt the stream for every later message.
struct FrameWrite<'a> {
    sock: &'a AsyncFd<OwnedFd>,
    frame: &'a [u8],
    fds: &'a [RawFd],
    sent: usize,
}

impl FrameWrite<'_> {
    async fn run(&mut self) -> Result<()> {
        while self.sent < self.frame.len() {
            let attach = if self.sent == 0 { self.fds } else { &[] };
            match sys::send_with_fds_flags(
                self.sock.get_ref().as_fd(),
                &self.frame[self.sent..],
                attach,
                libc::MSG_DONTWAIT,
            ) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.sock.writable().await.map_err(io_err("waiting to send"))?.clear_ready();
                }
                Err(e) => {
                    self.sent = self.frame.len();
                    return Err(match e.raw_os_error() {
                        Some(libc::EPIPE) | Some(libc::ECONNRESET) => Error::Eof,
                        _ => Error::Io { context: "sending a message", source: e },
                    });
                }
            }
        }
        Ok(())
    }
}

impl Drop for FrameWrite<'_> {
    fn drop(&mut self) {
        while self.sent < self.frame.len() {
            let attach = if self.sent == 0 { self.fds } else { &[] };
            match sys::send_with_fds_flags(self.sock.get_ref().as_fd(), &self.frame[self.sent..], attach, 0) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// Fills a frame's header, as `frame::send` does.
fn seal(msg: &mut [u8], fds: &[RawFd]) -> Result<()> {
    let len = msg.len() - frame::HEADER_LEN;
    let len =
        u32::try_from(len).map_err(|_| Error::Encode(format!("message of {len} bytes is over 4 GiB")))?;
    if fds.len() > sys::MAX_FDS_PER_MESSAGE {
        return Err(Error::Encode(format!(
            "a message can carry at most {} handles, not {}",
            sys::MAX_FDS_PER_MESSAGE,
            fds.len()
        )));
    }
    msg[..4].copy_from_slice(&len.to_le_bytes());
    msg[4..8].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    Ok(())
}

impl Connection {
    /// The socket registered with the current runtime, from `slot` when it was registered by
    /// this runtime before.
    fn registered<'s>(
        &self,
        slot: &'s mut Option<Registered>,
        interest: tokio::io::Interest,
    ) -> Result<&'s AsyncFd<OwnedFd>> {
        let runtime = tokio::runtime::Handle::current().id();
        if self.closed() {
            *slot = None;
            return Err(Error::Closed("connection"));
        }
        if slot.as_ref().is_none_or(|r| r.runtime != runtime) {
            *slot = None;
            *slot = Some(self.async_socket(interest)?);
        }
        Ok(&slot.as_ref().expect("registered above").fd)
    }

    fn async_socket(&self, interest: tokio::io::Interest) -> Result<Registered> {
        let runtime = tokio::runtime::Handle::current().id();
        self.with_fd(|fd| {
            let own = sys::dup_cloexec(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .map_err(io_err("duplicating a socket"))?;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&own);
            super::registry::add(raw);
            match sys::register_async(own, interest) {
                Ok(fd) => Ok(Registered { runtime, fd }),
                Err(e) => {
                    super::registry::remove(raw);
                    Err(Error::Io { context: "registering a socket with the tokio reactor", source: e })
                }
            }
        })
    }

    /// Looks at what is next, the receivers' lock held: a message in the lane (taken), a frame
    /// on the socket (to be read), or nothing (the receiver then counts as asleep on the
    /// socket, so the next message rings its doorbell). With `spin`, an empty lane is first
    /// spun on as the blocking receive does (the wait core's adaptive budget, at most 50 µs,
    /// only while the peer runs, with two CPUs or more): a reply that comes within it costs
    /// neither side a system call.
    fn look<R>(
        &self,
        sock: BorrowedFd<'_>,
        inline: &impl Fn(&[u8]) -> Result<R>,
        spin: bool,
    ) -> Result<Look<R>> {
        let Some(lanes) = &self.lanes else {
            let mut b = [0u8; 1];
            return match sys::peek_now(sock, &mut b) {
                Ok(0) => Err(Error::Eof),
                Ok(_) => Ok(Look::Frame),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Look::Nothing),
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => Err(Error::Eof),
                Err(e) => Err(Error::Io { context: "receiving a message", source: e }),
            };
        };
        let rx = lanes.rx();
        // Running: a sender need not ring the doorbell.
        rx.set_active(true);
        let mut spin = spin;
        loop {
            if let Some((next, after)) = rx.peek()? {
                let out = match next {
                    Next::Inline(bytes) if bytes.len() > self.max_message() => Err(Error::MessageTooLarge {
                        len: bytes.len() as u64,
                        max: self.max_message() as u64,
                    }),
                    Next::Inline(bytes) => inline(bytes),
                    Next::Socket => {
                        // The frame follows on the socket; the lane's space goes back now.
                        rx.advance(after);
                        return Ok(Look::Frame);
                    }
                };
                rx.advance(after);
                if rx.bells_pending() {
                    lane::drain_bells(&rx, sock)?;
                }
                return Ok(Look::Got(out));
            }
            if std::mem::take(&mut spin) && rx.spin_for_data(&lanes.tx()) {
                continue;
            }
            rx.set_active(false);
            if rx.has_data() {
                continue;
            }
            let front = lane::drain_bells(&rx, sock)?;
            if rx.has_data() {
                continue;
            }
            return match front {
                SocketFront::EndOfFile => Err(Error::Eof),
                _ => Ok(Look::Nothing),
            };
        }
    }

    /// Reads the frame at the socket's front without blocking the thread, awaiting
    /// readability between pieces. What was read is kept in `slot`, so a receive cancelled
    /// mid-frame leaves it for the next one to finish: the stream stays whole.
    async fn read_frame(
        &self,
        sock: &AsyncFd<OwnedFd>,
        slot: &mut Option<Partial>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let max = self.max_message();
        loop {
            let p = slot.get_or_insert_with(Partial::default);
            let fd = sock.get_ref().as_fd();
            let r = if p.have < frame::HEADER_LEN {
                let have = p.have;
                sys::recv_with_fds_flags(fd, &mut p.header[have..], &mut p.fds, libc::MSG_DONTWAIT)
            } else if p.got < p.len {
                let (got, len) = (p.got, p.len);
                if p.keep {
                    sys::recv_with_fds_flags(fd, &mut p.payload[got..], &mut p.fds, libc::MSG_DONTWAIT)
                } else {
                    let mut scratch = vec![0u8; (len - got).min(64 << 10)];
                    sys::recv_with_fds_flags(fd, &mut scratch, &mut p.fds, libc::MSG_DONTWAIT)
                }
            } else {
                let p = slot.take().expect("a frame being read");
                if !p.keep {
                    return Err(Error::MessageTooLarge { len: p.len as u64, max: max as u64 });
                }
                if p.fds.len() < p.nfds {
                    return Err(Error::Decode(format!(
                        "message announced {} descriptors but {} arrived",
                        p.nfds,
                        p.fds.len()
                    )));
                }
                return Ok((p.payload, p.fds));
            };
            match r {
                Ok(0) => {
                    let p = slot.take().expect("a frame being read");
                    return Err(if p.have == 0 {
                        Error::Eof
                    } else {
                        Error::Decode("truncated message: the peer closed inside it".into())
                    });
                }
                Ok(n) if p.have < frame::HEADER_LEN => {
                    p.have += n;
                    if p.have == frame::HEADER_LEN {
                        if p.header == frame::DOORBELL {
                            // A doorbell rung before the frame: count it read, as `recv` does.
                            p.have = 0;
                            if let Some(lanes) = &self.lanes {
                                lanes.rx().drained(1);
                            }
                            continue;
                        }
                        p.len = u32::from_le_bytes(p.header[..4].try_into().expect("4 bytes")) as usize;
                        p.nfds = u32::from_le_bytes(p.header[4..].try_into().expect("4 bytes")) as usize;
                        if p.nfds > sys::MAX_FDS_PER_MESSAGE {
                            *slot = None;
                            return Err(Error::Decode(format!(
                                "header announces {} descriptors, more than any message can carry",
                                sys::MAX_FDS_PER_MESSAGE
                            )));
                        }
                        p.keep = p.len <= max;
                        if p.keep {
                            p.payload = vec![0u8; p.len];
                        }
                    }
                }
                Ok(n) => p.got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sock.readable().await.map_err(io_err("waiting for a message"))?.clear_ready();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    *slot = None;
                    return Err(Error::Eof);
                }
                Err(e) => return Err(Error::Io { context: "receiving a message", source: e }),
            }
        }
    }

    async fn receive_async<R>(
        &self,
        inline: impl Fn(&[u8]) -> Result<R>,
        framed: impl Fn(Vec<u8>, Vec<OwnedFd>) -> Result<R>,
    ) -> Result<R> {
        self.check_readable()?;
        // Uncontended, the turn is taken without a future (waiters queued get it first).
        let mut guard = match self.turns.recv.try_lock() {
            Ok(g) => g,
            Err(_) => self.turns.recv.lock().await,
        };
        let RecvTurn { partial: turn, sock } = &mut *guard;
        let sock = self.registered(sock, tokio::io::Interest::READABLE)?;
        // Spin once per wake, as the blocking receive does.
        let mut spin = true;
        loop {
            // The receivers' lock across processes, taken without a thread; held across an
            // await only while a frame is read off the socket.
            let get = match &self.lanes {
                Some(lanes) => {
                    let word = lanes.rx().get_lock_word();
                    aio::lock(word).await;
                    Some(Lane::adopt(word))
                }
                None => None,
            };
            if turn.is_none() {
                // Nothing half-read from an earlier, cancelled receive: look at what is next.
                let looked = {
                    let _reader = self.recv_guard();
                    self.look(sock.get_ref().as_fd(), &inline, std::mem::take(&mut spin))?
                };
                match looked {
                    Look::Got(r) => return r,
                    Look::Frame => *turn = Some(Partial::default()),
                    Look::Nothing => {
                        drop(get);
                        // Readiness is cleared before the next look, so a message that lands
                        // after it makes the socket ready again.
                        sock.readable().await.map_err(io_err("waiting for a message"))?.clear_ready();
                        spin = true;
                        continue;
                    }
                }
            }
            let r = self.read_frame(sock, turn).await;
            drop(get);
            return r.and_then(|(bytes, fds)| framed(bytes, fds));
        }
    }

    /// Receives a value without blocking the thread (the async form of [`recv`](Self::recv)).
    /// With nothing there yet it first spins on the pipe's shared memory as `recv` does (an
    /// adaptive budget of at most 50 µs, only while the peer runs and with two CPUs or more),
    /// then sleeps on the tokio reactor until the sender rings.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken only inside the poll that returns it, so a future
    /// dropped at an await point has taken nothing and the next receive gets the message.
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T> {
        self.receive_async(|bytes| wire::decode(bytes, Vec::new()), |bytes, fds| wire::decode(&bytes, fds))
            .await
    }

    /// Receives one message of bytes without blocking the thread (the async form of
    /// [`recv_bytes`](Self::recv_bytes)). Cancel-safe, as [`recv_async`](Self::recv_async).
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        self.receive_async(|bytes| Ok(bytes.to_vec()), |bytes, _| Ok(bytes)).await
    }

    /// Waits, without blocking the thread, until a message or end-of-file is ready to be
    /// received (the async form of [`poll(None)`](Self::poll); wrap it in `tokio::time::timeout`
    /// for a bounded wait).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing.
    pub async fn poll_async(&self) -> Result<()> {
        self.check_readable()?;
        let registered = self.async_socket(tokio::io::Interest::READABLE)?;
        let sock = &registered.fd;
        loop {
            if self.poll(Some(std::time::Duration::ZERO))? {
                return Ok(());
            }
            sock.readable().await.map_err(io_err("waiting for a message"))?.clear_ready();
            if self.poll(Some(std::time::Duration::ZERO))? {
                return Ok(());
            }
        }
    }

    async fn transmit_async(&self, mut msg: Vec<u8>, fds: Vec<RawFd>) -> Result<()> {
        let mut turn = match self.turns.send.try_lock() {
            Ok(g) => g,
            Err(_) => self.turns.send.lock().await,
        };
        let sock = self.registered(&mut turn, tokio::io::Interest::WRITABLE)?;
        let Some(lanes) = &self.lanes else {
            // A socket from a listener: the frame goes out as `send` writes it, in this thread,
            // once the socket takes bytes (it waits only while the peer does not read).
            sock.writable().await.map_err(io_err("waiting to send"))?.clear_ready();
            return self.transmit(&mut msg, &fds);
        };
        let payload_len = msg.len() - frame::HEADER_LEN;
        let inline = fds.is_empty() && payload_len <= lane::INLINE_MAX;
        let need = if inline { payload_len } else { 0 };
        if !inline {
            seal(&mut msg, &fds)?;
        }
        loop {
            let word = lanes.tx().put_lock_word();
            aio::lock(word).await;
            let put = Lane::adopt(word);
            let pushed = {
                let tx = lanes.tx();
                if inline {
                    tx.push_now(false, &msg[frame::HEADER_LEN..]) && {
                        tx.ring_bell(sock.get_ref().as_fd())?;
                        true
                    }
                } else {
                    // The marker first, so the receiver drains the socket while the frame goes.
                    tx.push_now(true, &[])
                }
            };
            if pushed && inline {
                return Ok(());
            }
            if pushed {
                let mut write = FrameWrite { sock, frame: &msg, fds: &fds, sent: 0 };
                let r = write.run().await;
                drop(write);
                drop(put);
                return r;
            }
            drop(put);
            let (seq, waiters) = lanes.tx().space_words();
            let fd = sock.get_ref().as_fd();
            if !aio::until_checked(seq, waiters, || lanes.tx().fits(need), || sys::hung_up(fd)).await {
                return Err(Error::Eof);
            }
        }
    }

    /// Sends a value without blocking the thread (the async form of [`send`](Self::send)):
    /// waits for room in the pipe's lane, or for the socket to take a large message.
    ///
    /// # Cancel safety
    ///
    /// A message is either sent whole or not at all: dropped before its turn, or while it
    /// waits for room, the future has sent nothing. A message that does not fit the lane (over
    /// 32 KiB, or carrying handles) goes through the socket; dropped once that has begun, the
    /// future finishes the write in the dropping thread (waiting as `send` would) rather than
    /// leave half a message on the connection.
    pub async fn send_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check_writable()?;
        let mut msg = frame::start_frame();
        let fds = wire::encode(value, &mut msg)?;
        self.transmit_async(msg, fds).await
    }

    /// A message of `value`, encoded now, and the descriptors it carries (borrowed from
    /// `value`, which must outlive the send), for [`send_encoded_async`](Self::send_encoded_async).
    pub(crate) fn encode_message<T: Serialize + ?Sized>(&self, value: &T) -> Result<(Vec<u8>, Vec<RawFd>)> {
        self.check_writable()?;
        let mut msg = frame::start_frame();
        let fds = wire::encode(value, &mut msg)?;
        Ok((msg, fds))
    }

    /// Sends a message made by [`encode_message`](Self::encode_message); cancellation as
    /// [`send_async`](Self::send_async).
    pub(crate) async fn send_encoded_async(&self, msg: Vec<u8>, fds: Vec<RawFd>) -> Result<()> {
        self.transmit_async(msg, fds).await
    }

    /// Sends bytes as one message without blocking the thread (the async form of
    /// [`send_bytes`](Self::send_bytes)); cancellation as [`send_async`](Self::send_async).
    pub async fn send_bytes_async(&self, bytes: &[u8]) -> Result<()> {
        self.check_writable()?;
        let mut msg = Vec::with_capacity(frame::HEADER_LEN + bytes.len());
        msg.extend_from_slice(&[0u8; frame::HEADER_LEN]);
        msg.extend_from_slice(bytes);
        self.transmit_async(msg, Vec::new()).await
    }
}
