//! Framed, descriptor-free request/reply streams between proxies and a manager's server.
//!
//! Frames have the crate's usual layout (`[len u32 LE][nfds u32 LE][payload]`, with `nfds`
//! always 0 here, so unix sockets and TCP carry them alike). The reader keeps one growing
//! buffer per connection, checks `len` against its cap, and usually gets a whole frame with one
//! `recv`. A large frame's buffer grows as its bytes arrive (doubling, from 16 KiB), so a
//! header that announces much and sends little costs nothing.
//!
//! Over a unix socket, the two sides switch to a pair of pipes right after the handshake (the
//! client sends the server its ends with `SCM_RIGHTS`): a round trip through pipes costs about a
//! third of one through the socket, which stays open only to tell each side the other is gone.
//!
//! Waiting for the next frame first *spins* with non-blocking `recv`s before it blocks, as the
//! wait core allows ([`crate::sync::wait`]): on two idle CPUs a blocking round trip between two
//! processes costs ~40 us (two scheduler wake-ups), a spinning one ~3.5 us, and a proxy call is
//! exactly such a round trip. The spin is skipped where fewer than two CPUs are usable (affinity
//! and cgroup quota), where it only takes the time slice the peer needs, and shortened to a
//! probe while recent spins did not pay.

use crate::error::{Error, Result};
use crate::sync::wait;
use crate::sys;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

pub(crate) const HEADER_LEN: usize = 8;

/// What a descriptor of a connection is: its reads and writes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A stream socket (TCP, or unix before the switch to pipes).
    Socket,
    /// A pipe end (read ends non-blocking, write ends blocking).
    Pipe,
}

/// The most a reader may spin before it blocks; each wait spins (or, on one CPU, yields) as
/// the wait core's policy says, up to this. Zero never spins.
pub(crate) fn spin_budget() -> Duration {
    wait::SPIN_CAP
}

/// Reads whole frames from a stream socket.
pub(crate) struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader { buf: vec![0; 16 * 1024], start: 0, end: 0 }
    }

    /// Bytes received but not yet consumed (a peer that talks out of turn).
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The payload of the next frame. Errors: [`Error::Eof`] at a clean end, a decode error for a
    /// frame cut short or one that claims descriptors, [`Error::MessageTooLarge`] when the
    /// header announces more than `cap` bytes (nothing is allocated for it; the stream is then
    /// out of step and must be dropped).
    pub(crate) fn next_frame(
        &mut self,
        sock: BorrowedFd<'_>,
        kind: Kind,
        cap: usize,
        spin: Duration,
    ) -> Result<&[u8]> {
        self.fill(sock, kind, HEADER_LEN, spin, true)?;
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let nfds = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
        if nfds != 0 {
            return Err(Error::Decode("a manager message cannot carry descriptors".into()));
        }
        if len > cap {
            return Err(Error::MessageTooLarge { len: len as u64, max: cap as u64 });
        }
        self.fill(sock, kind, HEADER_LEN + len, spin, false)?;
        let from = self.start + HEADER_LEN;
        self.start = from + len;
        Ok(&self.buf[from..from + len])
    }

    /// Makes at least `need` unconsumed bytes available.
    fn fill(
        &mut self,
        sock: BorrowedFd<'_>,
        kind: Kind,
        need: usize,
        spin: Duration,
        at_boundary: bool,
    ) -> Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut deadline = None;
        while self.end - self.start < need {
            if self.end == self.buf.len() {
                // Grow with what has arrived, never with what the header announced: at most
                // double what the buffer holds, so memory stays within twice the bytes the peer
                // has actually sent.
                let grown = (self.buf.len() * 2).min(self.start + need);
                self.buf.resize(grown, 0);
            }
            let n = recv_spinning(sock, kind, &mut self.buf[self.end..], spin, &mut deadline).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::ECONNRESET) => Error::Eof,
                    _ => Error::Io { context: "receiving from a manager connection", source: e },
                },
            )?;
            if n == 0 {
                if at_boundary && self.end == self.start {
                    return Err(Error::Eof);
                }
                return Err(Error::Decode("truncated message: the peer closed mid-frame".into()));
            }
            self.end += n;
        }
        Ok(())
    }
}

fn recv_once(fd: BorrowedFd<'_>, kind: Kind, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
    match kind {
        Kind::Socket => sys::net::recv_some(fd, buf, nonblocking),
        Kind::Pipe => sys::pipe::read_some(fd, buf, !nonblocking),
    }
}

fn recv_spinning(
    sock: BorrowedFd<'_>,
    kind: Kind,
    buf: &mut [u8],
    spin: Duration,
    spun: &mut Option<Instant>,
) -> io::Result<usize> {
    // One spin per frame, as the wait core allows; `spun` says when this frame's began.
    if spin.is_zero() || spun.is_some() {
        return recv_once(sock, kind, buf, false);
    }
    *spun = Some(Instant::now());
    // What is there already needs no wait (and says nothing about how long waits take).
    match recv_once(sock, kind, buf, true) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r,
    }
    let mut got = None;
    let ready = || match recv_once(sock, kind, buf, true) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        r => {
            got = Some(r);
            true
        }
    };
    if wait::STREAM.spin(ready, wait::unknown_peer) {
        if let Some(r) = got {
            return r;
        }
    }
    recv_once(sock, kind, buf, false)
}

/// Builds and sends frames, reusing one buffer.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer { buf: Vec::with_capacity(256) }
    }

    /// An empty frame to append a payload to.
    pub(crate) fn begin(&mut self) -> &mut Vec<u8> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; HEADER_LEN]);
        &mut self.buf
    }

    /// Fills in the header of the frame built since [`begin`](Self::begin) and sends it.
    pub(crate) fn send(&mut self, sock: BorrowedFd<'_>, kind: Kind) -> Result<()> {
        let len = self.buf.len() - HEADER_LEN;
        let len =
            u32::try_from(len).map_err(|_| Error::Encode(format!("message of {len} bytes is over 4 GiB")))?;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&0u32.to_le_bytes());
        let sent = match kind {
            Kind::Socket => sys::net::send_all(sock, &self.buf),
            Kind::Pipe => sys::pipe::write_all(sock, &self.buf),
        };
        sent.map_err(|e| match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => Error::Eof,
            _ => Error::Io { context: "sending on a manager connection", source: e },
        })?;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(256);
        }
        Ok(())
    }
}
