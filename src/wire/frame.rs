//! Frames on a stream socket: `[len: u32 LE][nfds: u32 LE][payload; len]`, with the `nfds`
//! descriptors attached (`SCM_RIGHTS`) to the frame's first bytes.
//!
//! The reader checks `len` against its cap before allocating; an oversized frame is read off
//! the socket in small pieces and discarded, so the connection stays in step and usable.

use crate::error::{Error, Result};
use crate::sys;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// A doorbell: the header of an empty frame whose descriptor count is `u32::MAX`. A pipe's
/// shared-memory sender writes one to wake a receiver that sleeps on the socket; readers skip it.
pub(crate) const DOORBELL: [u8; HEADER_LEN] = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];

/// Default cap on a received payload: 1 GiB.
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// A buffer with room reserved for the header; append the payload, then [`send`].
pub(crate) fn start_frame() -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    buf
}

/// Fills in the header of a frame built on [`start_frame`] and sends it whole.
pub(crate) fn send(sock: BorrowedFd<'_>, frame: &mut [u8], fds: &[RawFd]) -> Result<()> {
    let len = frame.len() - HEADER_LEN;
    let len =
        u32::try_from(len).map_err(|_| Error::Encode(format!("message of {len} bytes is over 4 GiB")))?;
    if fds.len() > sys::MAX_FDS_PER_MESSAGE {
        return Err(Error::Encode(format!(
            "a message can carry at most {} handles, not {}",
            sys::MAX_FDS_PER_MESSAGE,
            fds.len()
        )));
    }
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let mut sent = 0;
    let mut attach = fds;
    while sent < frame.len() {
        let n = sys::send_with_fds(sock, &frame[sent..], attach).map_err(send_error)?;
        attach = &[];
        sent += n;
    }
    Ok(())
}

fn send_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => Error::Eof,
        _ => Error::Io { context: "sending a message", source: e },
    }
}

fn recv_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => Error::Eof,
        _ => Error::Io { context: "receiving a message", source: e },
    }
}

/// A header that has been read: the payload length and the descriptors that came with it.
pub(crate) struct Incoming {
    pub(crate) len: usize,
    pub(crate) fds: Vec<OwnedFd>,
    nfds: usize,
}

/// The receiving side of a stream of frames. It never reads past the frame it is asked for, so
/// frames still in the socket stay visible to `poll` and `connection::wait`, and a socket can
/// change hands between frames. Descriptors are queued in arrival order; each frame takes as many
/// as its header announces.
pub(crate) struct Reader {
    fds: std::collections::VecDeque<OwnedFd>,
    /// Doorbells skipped since the owner last took this count.
    pub(crate) bells: u64,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader { fds: Default::default(), bells: 0 }
    }

    /// One receive system call into `target`.
    fn recv_some(&mut self, sock: BorrowedFd<'_>, target: &mut [u8]) -> Result<usize> {
        let mut got = Vec::new();
        let n = sys::recv_with_fds(sock, target, &mut got).map_err(recv_error)?;
        self.fds.extend(got);
        Ok(n)
    }

    /// Fills `dst` exactly. `Ok(false)` if end-of-file came before the first byte.
    fn read_exact(&mut self, sock: BorrowedFd<'_>, dst: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < dst.len() {
            let n = self.recv_some(sock, &mut dst[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(Error::Decode(format!(
                    "truncated message: the peer closed after {got} of {} bytes",
                    dst.len()
                )));
            }
            got += n;
        }
        Ok(true)
    }

    /// Reads a frame header. End-of-file before it is [`Error::Eof`].
    pub(crate) fn recv_header(&mut self, sock: BorrowedFd<'_>) -> Result<Incoming> {
        let mut header = [0u8; HEADER_LEN];
        loop {
            if !self.read_exact(sock, &mut header)? {
                return Err(Error::Eof);
            }
            if header != DOORBELL {
                break;
            }
            self.bells += 1;
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if nfds > sys::MAX_FDS_PER_MESSAGE {
            return Err(Error::Decode(format!(
                "header announces {nfds} descriptors, more than any message can carry"
            )));
        }
        Ok(Incoming { len, fds: Vec::new(), nfds })
    }

    /// Reads the payload of `incoming` into `buf` (exactly `incoming.len` bytes long), and takes
    /// the descriptors the header announced.
    pub(crate) fn recv_payload_into(
        &mut self,
        sock: BorrowedFd<'_>,
        incoming: &mut Incoming,
        buf: &mut [u8],
    ) -> Result<()> {
        debug_assert_eq!(buf.len(), incoming.len);
        if !self.read_exact(sock, buf)? && !buf.is_empty() {
            return Err(Error::Decode("truncated message: the peer closed after the header".into()));
        }
        if self.fds.len() < incoming.nfds {
            return Err(Error::Decode(format!(
                "message announced {} descriptors but {} arrived",
                incoming.nfds,
                self.fds.len()
            )));
        }
        incoming.fds.extend(self.fds.drain(..incoming.nfds));
        Ok(())
    }

    /// Reads and discards the payload of `incoming`, in pieces, without allocating it.
    pub(crate) fn skip_payload(&mut self, sock: BorrowedFd<'_>, incoming: &mut Incoming) -> Result<()> {
        let mut left = incoming.len;
        let mut scratch = vec![0u8; left.min(64 * 1024)];
        while left > 0 {
            let n = left.min(scratch.len());
            if !self.read_exact(sock, &mut scratch[..n])? {
                return Err(Error::Decode("truncated message: the peer closed inside the payload".into()));
            }
            left -= n;
        }
        let n = incoming.nfds.min(self.fds.len());
        self.fds.drain(..n);
        Ok(())
    }

    /// Reads one whole frame whose payload is at most `max` bytes.
    pub(crate) fn recv(&mut self, sock: BorrowedFd<'_>, max: usize) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut incoming = self.recv_header(sock)?;
        if incoming.len > max {
            // Keep the stream in step when the peer is still there; either way the caller learns
            // the size. End-of-file inside the skip shows up on the next receive.
            let _ = self.skip_payload(sock, &mut incoming);
            return Err(Error::MessageTooLarge { len: incoming.len as u64, max: max as u64 });
        }
        let mut buf = vec![0u8; incoming.len];
        self.recv_payload_into(sock, &mut incoming, &mut buf)?;
        Ok((buf, incoming.fds))
    }
}

/// Reads one whole frame whose payload is at most `max` bytes, and nothing past it.
pub(crate) fn recv(sock: BorrowedFd<'_>, max: usize) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    Reader::new().recv(sock, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket: Miri has no recvmsg")]
    fn frames_round_trip_in_order() {
        let (a, b) = sys::socketpair().unwrap();
        for payload in [&b""[..], b"x", &[9u8; 300_000][..]] {
            let mut f = start_frame();
            f.extend_from_slice(payload);
            let writer = std::thread::scope(|s| {
                let h = s.spawn(|| send(a.as_fd(), &mut f, &[]));
                let (got, fds) = recv(b.as_fd(), DEFAULT_MAX_MESSAGE).unwrap();
                assert_eq!(got, payload);
                assert!(fds.is_empty());
                h.join().unwrap()
            });
            writer.unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket: Miri has no recvmsg")]
    fn oversized_frame_is_refused_and_skipped() {
        let (a, b) = sys::socketpair().unwrap();
        let mut big = start_frame();
        big.extend_from_slice(&[1u8; 1000]);
        send(a.as_fd(), &mut big, &[]).unwrap();
        let mut small = start_frame();
        small.extend_from_slice(b"ok");
        send(a.as_fd(), &mut small, &[]).unwrap();
        assert!(matches!(recv(b.as_fd(), 100), Err(Error::MessageTooLarge { len: 1000, max: 100 })));
        assert_eq!(recv(b.as_fd(), 100).unwrap().0, b"ok");
    }

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket: Miri has no recvmsg")]
    fn truncated_frame_is_an_error_not_a_hang() {
        let (a, b) = sys::socketpair().unwrap();
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&100u32.to_le_bytes());
        sys::send_with_fds(a.as_fd(), &header, &[]).unwrap();
        sys::send_with_fds(a.as_fd(), b"abc", &[]).unwrap();
        drop(a);
        assert!(matches!(recv(b.as_fd(), 1000), Err(Error::Decode(_))));
    }

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket: Miri has no recvmsg")]
    fn four_gib_length_is_refused_without_allocating() {
        let (a, b) = sys::socketpair().unwrap();
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        sys::send_with_fds(a.as_fd(), &header, &[]).unwrap();
        drop(a);
        assert!(matches!(recv(b.as_fd(), DEFAULT_MAX_MESSAGE), Err(Error::MessageTooLarge { .. })));
        assert!(matches!(recv(b.as_fd(), DEFAULT_MAX_MESSAGE), Err(Error::Eof)));
    }

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket: Miri has no recvmsg")]
    fn end_of_file_between_frames_is_eof() {
        let (a, b) = sys::socketpair().unwrap();
        drop(a);
        assert!(matches!(recv(b.as_fd(), 10), Err(Error::Eof)));
    }
}
