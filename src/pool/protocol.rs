//! The wire between the dispatcher and a worker: one unix stream socket per worker carrying
//! frames (`[len: u32][nfds: u32][payload]`, as everywhere in the crate), many per system call.
//!
//! Dispatcher to worker:
//! - `RUN`: `[RUN][task id: u64 LE][EntryOffset (postcard)][arguments (postcard)]`, with the
//!   arguments' descriptors attached to the frame's first byte.
//! - `EXIT`: `[EXIT]`: finish, flush the results and exit (the pool is closing).
//!
//! Worker to dispatcher, in task order, never with descriptors:
//! `[tag][task id: u64 LE][run time in ns: u64 LE][body]`, where the body is the encoded value
//! (`RETURNED`) or a UTF-8 message (`PANICKED`, `FAILED`, `INIT_FAILED`); `READY` (empty body)
//! comes first, once the initializer has run.
//!
//! Both sides read as many bytes as the socket holds into a [`FrameReader`] and take whole frames
//! out of it; the dispatcher queues frames in an [`OutBuf`] per worker and writes without ever
//! blocking, so that one slow worker cannot hold up the others.

use crate::error::{Error, Result};
use crate::sys;
use crate::target::EntryOffset;
use crate::wire::{self, frame};
use serde::Serialize;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Run a task.
pub(crate) const RUN: u8 = 1;
/// Finish and exit.
pub(crate) const EXIT: u8 = 2;

/// The task returned; its encoded value follows.
pub(crate) const RETURNED: u8 = 1;
/// The task panicked; the message follows.
pub(crate) const PANICKED: u8 = 2;
/// Arguments or value could not be (de)coded; the message follows.
pub(crate) const FAILED: u8 = 3;
/// The worker's initializer failed; the message follows. The worker exits.
pub(crate) const INIT_FAILED: u8 = 4;
/// The worker has run its initializer and takes tasks (task id 0, no body).
pub(crate) const READY: u8 = 5;

/// Bytes before a result's body: tag, task id, run time.
pub(crate) const RESULT_HEADER: usize = 1 + 8 + 8;

/// Largest frame either side accepts (the crate's default message cap).
pub(crate) const MAX_FRAME: usize = frame::DEFAULT_MAX_MESSAGE;

/// Fills in the `[len][nfds]` header of a frame whose payload follows it in `buf`.
pub(crate) fn seal(buf: &mut [u8], nfds: usize) -> Result<()> {
    let len = buf.len() - frame::HEADER_LEN;
    if len > MAX_FRAME {
        return Err(Error::Encode(format!("a task message of {len} bytes is over the 1 GiB limit")));
    }
    if nfds > sys::MAX_FDS_PER_MESSAGE {
        return Err(Error::Encode(format!(
            "a task can carry at most {} handles, not {nfds}",
            sys::MAX_FDS_PER_MESSAGE
        )));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&(nfds as u32).to_le_bytes());
    Ok(())
}

/// A `RUN` frame for `args` and the (duplicated) descriptors its handles need.
pub(crate) fn task_frame<A: Serialize + ?Sized>(
    id: u64,
    entry: EntryOffset,
    args: &A,
) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = frame::start_frame();
    buf.push(RUN);
    buf.extend_from_slice(&id.to_le_bytes());
    wire::encode(&entry, &mut buf)?;
    let raw = wire::encode(args, &mut buf)?;
    seal(&mut buf, raw.len())?;
    let fds = raw
        .into_iter()
        .map(|fd| sys::dup_cloexec(fd).map_err(Error::io("duplicating a handle for a task")))
        .collect::<Result<Vec<_>>>()?;
    Ok((buf, fds))
}

/// An `EXIT` frame.
pub(crate) fn exit_frame() -> Vec<u8> {
    let mut buf = frame::start_frame();
    buf.push(EXIT);
    seal(&mut buf, 0).expect("a one-byte frame fits");
    buf
}

/// Splits a `RUN` payload into task id, entry and argument bytes.
pub(crate) fn parse_task(payload: &[u8]) -> Result<(u64, EntryOffset, &[u8])> {
    let id = payload
        .get(1..9)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::Decode("short task header".into()))?;
    let (entry, args) = wire::take::<EntryOffset>(&payload[9..])?;
    Ok((id, entry, args))
}

/// A result as the dispatcher reads it.
pub(crate) struct ResultHeader {
    pub(crate) tag: u8,
    pub(crate) id: u64,
    pub(crate) nanos: u64,
}

/// Splits a result payload into its header and body.
pub(crate) fn parse_result(payload: &[u8]) -> Result<(ResultHeader, &[u8])> {
    if payload.len() < RESULT_HEADER {
        return Err(Error::Decode("short result header".into()));
    }
    let id = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
    let nanos = u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes"));
    Ok((ResultHeader { tag: payload[0], id, nanos }, &payload[RESULT_HEADER..]))
}

/// Starts a result frame at the end of `out`; returns where it starts, for [`finish_result`].
pub(crate) fn begin_result(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.resize(at + frame::HEADER_LEN + RESULT_HEADER, 0);
    at
}

/// Completes the result frame begun at `at` (its body already appended).
pub(crate) fn finish_result(out: &mut [u8], at: usize, tag: u8, id: u64, nanos: u64) {
    let h = at + frame::HEADER_LEN;
    out[h] = tag;
    out[h + 1..h + 9].copy_from_slice(&id.to_le_bytes());
    out[h + 9..h + 17].copy_from_slice(&nanos.to_le_bytes());
    let len = out.len() - at - frame::HEADER_LEN;
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
}

/// Bytes read from a socket, from which whole frames are taken.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
}

/// Free space asked for before each read.
const READ_CHUNK: usize = 256 * 1024;

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader { buf: vec![0; READ_CHUNK], start: 0, end: 0, fds: VecDeque::new() }
    }

    /// The next whole frame: the payload's range (see [`bytes`](Self::bytes)) and its
    /// descriptors; `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Range<usize>, Vec<OwnedFd>)>> {
        let avail = self.end - self.start;
        if avail < frame::HEADER_LEN {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + frame::HEADER_LEN];
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let nfds = u32::from_le_bytes(h[4..].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME || nfds > sys::MAX_FDS_PER_MESSAGE {
            return Err(Error::Decode(format!("bad frame header: {len} bytes, {nfds} descriptors")));
        }
        if avail < frame::HEADER_LEN + len {
            return Ok(None);
        }
        if self.fds.len() < nfds {
            return Err(Error::Decode(format!(
                "a message announced {nfds} descriptors but {} arrived",
                self.fds.len()
            )));
        }
        let payload = self.start + frame::HEADER_LEN..self.start + frame::HEADER_LEN + len;
        self.start = payload.end;
        Ok(Some((payload, self.fds.drain(..nfds).collect())))
    }

    /// The bytes of a frame returned by [`next_frame`](Self::next_frame), valid until the next
    /// read.
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Moves unread bytes to the front and makes room for the frame in progress.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_CHUNK {
                // Give back what one huge frame made the buffer grow to.
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        } else if self.start > 0 && self.buf.len() - self.end < READ_CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut want = self.end + READ_CHUNK;
        if self.end - self.start >= frame::HEADER_LEN {
            let h = &self.buf[self.start..self.start + 4];
            let len = u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize;
            want = want.max(self.start + frame::HEADER_LEN + len.min(MAX_FRAME));
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
    }

    /// Reads what the socket holds, blocking until something (or end-of-file) arrives;
    /// `Ok(0)` at end-of-file.
    pub(crate) fn read_blocking(&mut self, sock: BorrowedFd<'_>) -> io::Result<usize> {
        self.make_room();
        let mut fds = Vec::new();
        let n = sys::recv_some(sock, &mut self.buf[self.end..], &mut fds)?;
        self.end += n;
        self.fds.extend(fds);
        Ok(n)
    }

    /// Reads what the socket holds now: `Ok(None)` if nothing, `Ok(Some(0))` at end-of-file.
    pub(crate) fn read_now(&mut self, sock: BorrowedFd<'_>) -> io::Result<Option<usize>> {
        self.make_room();
        let mut fds = Vec::new();
        let n = sys::recv_now(sock, &mut self.buf[self.end..], &mut fds)?;
        if let Some(n) = n {
            self.end += n;
        }
        self.fds.extend(fds);
        Ok(n)
    }
}

/// Frames waiting to be written to one worker, with the descriptors of those that carry
/// handles (attached to the first byte of their frame).
#[derive(Default)]
pub(crate) struct OutBuf {
    bytes: Vec<u8>,
    sent: usize,
    marks: VecDeque<(usize, Vec<RawFd>)>,
}

impl OutBuf {
    /// Queues a frame; `fds` must stay open until the frame is written.
    pub(crate) fn push(&mut self, frame: &[u8], fds: &[OwnedFd]) {
        if self.sent > 0 && self.sent >= self.bytes.len() / 2 {
            self.bytes.drain(..self.sent);
            for m in &mut self.marks {
                m.0 -= self.sent;
            }
            self.sent = 0;
        }
        if !fds.is_empty() {
            self.marks.push_back((self.bytes.len(), fds.iter().map(|f| f.as_raw_fd()).collect()));
        }
        self.bytes.extend_from_slice(frame);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Writes as much as the socket takes without blocking.
    pub(crate) fn write_now(&mut self, sock: BorrowedFd<'_>) -> io::Result<()> {
        while !self.is_empty() {
            let (upto, fds): (usize, &[RawFd]) = match self.marks.front() {
                Some((at, fds)) if *at == self.sent => {
                    let next = self.marks.get(1).map_or(self.bytes.len(), |m| m.0);
                    (next, fds)
                }
                Some((at, _)) => (*at, &[]),
                None => (self.bytes.len(), &[]),
            };
            let n = sys::send_now(sock, &self.bytes[self.sent..upto], fds)?;
            if n == 0 {
                return Ok(());
            }
            if !fds.is_empty() {
                self.marks.pop_front();
            }
            self.sent += n;
        }
        self.bytes.clear();
        if self.bytes.capacity() > 1 << 20 {
            self.bytes.shrink_to(64 * 1024);
        }
        self.sent = 0;
        Ok(())
    }
}
