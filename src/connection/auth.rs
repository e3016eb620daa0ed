//! Mutual HMAC challenge-response on a freshly connected stream socket (Python's
//! `deliver_challenge` / `answer_challenge`), run before any other message is read.
//!
//! Each side proves it knows the shared `authkey` without sending it:
//!
//! 1. the acceptor sends `#CHALLENGE#` + 32 random bytes (from the kernel, `getrandom`);
//! 2. the connector answers `HMAC-SHA256(authkey, "connector" || challenge)`;
//! 3. the acceptor checks it in constant time and sends `#WELCOME#` or `#FAILURE#` (and hangs up);
//! 4. then the same three steps with the roles swapped (label `"acceptor"`), so a client never
//!    talks to a server that does not hold the key either.
//!
//! The role label in the MAC means an answer can never be replayed as the other side's answer.
//! Messages use the ordinary frame layout (`[len u32][nfds u32][payload]`) but with a cap of
//! [`MAX_AUTH_MESSAGE`] bytes checked on the header: a peer that announces more, sends garbage,
//! stops mid-frame or has not finished within [`HANDSHAKE_TIMEOUT`] *in total* is refused
//! without the receiver allocating anything for it.
//!
//! Both sides are one state machine, [`Handshake`], driven by non-blocking reads and writes: a
//! listener runs many of them at once from one thread (a slow peer holds up no one), and the
//! blocking [`accept_handshake`] / [`connect_handshake`] drive one with `poll` until it ends or
//! its deadline passes. A handshake never reads past its own last message, so what the peer
//! sends next stays in the socket for the connection.

use crate::error::{Error, Result};
use crate::sys;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Largest message either side accepts during the handshake.
pub(crate) const MAX_AUTH_MESSAGE: usize = 256;

/// How long a whole handshake may take, from the connection's start to its last message.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 32;
const HEADER: usize = 8;

pub(crate) type HmacSha256 = Hmac<Sha256>;

pub(crate) fn mac(authkey: &[u8], label: &[u8], challenge: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(authkey).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(challenge);
    m
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Which side of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Acceptor,
    Connector,
}

/// What [`Handshake::advance`] needs before it can go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wants {
    Read,
    Write,
}

/// One side of the handshake, advanced whenever its socket is ready.
pub(crate) struct Handshake {
    role: Role,
    step: u8,
    out: Vec<u8>,
    sent: usize,
    input: [u8; HEADER + MAX_AUTH_MESSAGE],
    got: usize,
    nonce: [u8; NONCE_LEN],
    /// Whether anything at all arrived from the peer.
    heard: bool,
    /// The outcome once the pending output is flushed.
    outcome: Option<Result<()>>,
    deadline: Instant,
}

impl Handshake {
    /// A handshake starting now, for the given role.
    pub(crate) fn new(role: Role) -> Result<Handshake> {
        let mut h = Handshake {
            role,
            step: 0,
            out: Vec::new(),
            sent: 0,
            input: [0; HEADER + MAX_AUTH_MESSAGE],
            got: 0,
            nonce: [0; NONCE_LEN],
            heard: false,
            outcome: None,
            deadline: Instant::now() + HANDSHAKE_TIMEOUT,
        };
        if role == Role::Acceptor {
            h.challenge()?;
        }
        Ok(h)
    }

    /// When this handshake must have ended.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The error for a handshake whose deadline passed. For the connecting side this is a
    /// connect error: the server never finished (or, when nothing came, never started) the
    /// handshake, which says nothing about the key.
    pub(crate) fn timed_out(&self) -> Error {
        match self.role {
            Role::Connector if !self.heard => Error::Io {
                context: "connecting: the server did not start the handshake within the deadline \
                          (overloaded, not accepting, or not a multiproc listener)",
                source: io::ErrorKind::TimedOut.into(),
            },
            Role::Connector => Error::Io {
                context: "connecting: the server did not finish the handshake within the deadline",
                source: io::ErrorKind::TimedOut.into(),
            },
            Role::Acceptor => Error::Authentication(format!(
                "the peer did not complete the handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )),
        }
    }

    fn challenge(&mut self) -> Result<()> {
        sys::net::random_bytes(&mut self.nonce)
            .map_err(Error::io("generating an authentication challenge"))?;
        let mut msg = CHALLENGE.to_vec();
        msg.extend_from_slice(&self.nonce);
        self.queue(&msg);
        Ok(())
    }

    fn queue(&mut self, payload: &[u8]) {
        self.out = frame(payload);
        self.sent = 0;
    }

    fn fail(&mut self, why: &str) {
        self.queue(FAILURE);
        self.outcome = Some(Err(Error::Authentication(why.into())));
    }

    /// Checks the answer to our challenge; queues the verdict.
    fn check_answer(&mut self, authkey: &[u8], answer: &[u8], peer_label: &[u8]) -> bool {
        // `verify_slice` compares in constant time.
        if mac(authkey, peer_label, &self.nonce).verify_slice(answer).is_err() {
            self.fail("digest received was wrong");
            false
        } else {
            self.queue(WELCOME);
            true
        }
    }

    /// Answers the peer's challenge.
    fn answer(&mut self, authkey: &[u8], msg: &[u8], own_label: &[u8]) -> Result<()> {
        let Some(nonce) = msg.strip_prefix(CHALLENGE) else {
            return Err(Error::Authentication("the peer did not send a challenge".into()));
        };
        if nonce.len() != NONCE_LEN {
            return Err(Error::Authentication("the peer sent a challenge of the wrong length".into()));
        }
        let digest = mac(authkey, own_label, nonce).finalize().into_bytes();
        self.queue(&digest);
        Ok(())
    }

    fn verdict(msg: &[u8]) -> Result<()> {
        if msg == WELCOME {
            Ok(())
        } else {
            Err(Error::Authentication("digest sent was rejected".into()))
        }
    }

    /// Handles one whole message from the peer.
    fn on_message(&mut self, authkey: &[u8], msg: &[u8]) -> Result<()> {
        match (self.role, self.step) {
            (Role::Acceptor, 0) => {
                if self.check_answer(authkey, msg, b"connector") {
                    self.step = 1;
                }
            }
            (Role::Acceptor, 1) => {
                self.answer(authkey, msg, b"acceptor")?;
                self.step = 2;
            }
            (Role::Acceptor, _) => self.outcome = Some(Self::verdict(msg)),
            (Role::Connector, 0) => {
                self.answer(authkey, msg, b"connector")?;
                self.step = 1;
            }
            (Role::Connector, 1) => {
                Self::verdict(msg)?;
                self.challenge()?;
                self.step = 2;
            }
            (Role::Connector, _) => {
                if self.check_answer(authkey, msg, b"acceptor") {
                    self.outcome = Some(Ok(()));
                }
            }
        }
        Ok(())
    }

    /// Goes as far as the socket allows without blocking: `Ok(None)` when the handshake passed,
    /// `Ok(Some(wants))` when it waits for the socket, an error when it failed (the peer was
    /// told, when it was a wrong digest).
    pub(crate) fn advance(&mut self, sock: BorrowedFd<'_>, authkey: &[u8]) -> Result<Option<Wants>> {
        loop {
            while self.sent < self.out.len() {
                match sys::net::send_some(sock, &self.out[self.sent..], true) {
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(Wants::Write)),
                    Err(_) if matches!(self.outcome, Some(Err(_))) => break,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) => {
                        return Err(self.peer_left())
                    }
                    Err(e) => return Err(Error::Io { context: "authenticating a connection", source: e }),
                }
            }
            if let Some(outcome) = self.outcome.take() {
                return outcome.map(|()| None);
            }
            let need = if self.got < HEADER { HEADER } else { HEADER + self.announced() };
            match sys::net::recv_some(sock, &mut self.input[self.got..need], true) {
                Ok(0) => return Err(self.peer_left()),
                Ok(n) => {
                    self.heard = true;
                    self.got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(Wants::Read)),
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Err(self.peer_left()),
                Err(e) => return Err(Error::Io { context: "authenticating a connection", source: e }),
            }
            if self.got == HEADER {
                let len = self.announced();
                let nfds = u32::from_le_bytes(self.input[4..HEADER].try_into().expect("4 bytes"));
                if len > MAX_AUTH_MESSAGE || nfds != 0 {
                    return Err(Error::Authentication(format!(
                        "the peer sent a malformed handshake message (announced {len} bytes, {nfds} \
                         descriptors)"
                    )));
                }
            }
            if self.got >= HEADER && self.got == HEADER + self.announced() {
                let msg = self.input[HEADER..self.got].to_vec();
                self.got = 0;
                self.on_message(authkey, &msg)?;
            }
        }
    }

    fn announced(&self) -> usize {
        u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes")) as usize
    }

    /// The error for a peer that hung up mid-handshake: a refusal, when it was waiting for our
    /// verdict on its digest (Python's peers hang up instead of sending `#FAILURE#`).
    fn peer_left(&self) -> Error {
        match (self.role, self.step) {
            (Role::Connector, 1) | (Role::Acceptor, 2) => {
                Error::Authentication("digest sent was rejected".into())
            }
            _ => Error::Eof,
        }
    }
}

/// Drives a handshake on a blocking socket until it ends or its deadline passes.
fn drive(sock: BorrowedFd<'_>, authkey: &[u8], role: Role) -> Result<()> {
    let mut h = Handshake::new(role)?;
    loop {
        let wants = match h.advance(sock, authkey)? {
            None => return Ok(()),
            Some(w) => w,
        };
        let left = h.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(h.timed_out());
        }
        let events = if wants == Wants::Read { libc::POLLIN } else { libc::POLLOUT };
        let mut pfd = [libc::pollfd { fd: sock.as_raw_fd(), events, revents: 0 }];
        sys::net::poll_fds(&mut pfd, Some(left)).map_err(Error::io("authenticating a connection"))?;
    }
}

/// The accepting side: challenge the connector first, then answer its challenge.
pub(crate) fn accept_handshake(sock: BorrowedFd<'_>, authkey: &[u8]) -> Result<()> {
    drive(sock, authkey, Role::Acceptor)
}

/// The connecting side: answer the acceptor's challenge, then challenge it.
pub(crate) fn connect_handshake(sock: BorrowedFd<'_>, authkey: &[u8]) -> Result<()> {
    drive(sock, authkey, Role::Connector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    #[cfg_attr(miri, ignore = "a handshake over a socket: Miri has no recvmsg")]
    fn same_key_passes_both_ways() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        connect_handshake(b.as_fd(), b"key").unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "a handshake over a socket: Miri has no recvmsg")]
    fn wrong_key_fails_on_both_sides() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        assert!(matches!(connect_handshake(b.as_fd(), b"other"), Err(Error::Authentication(_))));
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a handshake over a socket: Miri has no recvmsg")]
    fn oversized_handshake_message_is_refused_without_reading_it() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        let mut challenge = [0u8; 8 + 11 + 32];
        let mut got = 0;
        while got < challenge.len() {
            got += sys::net::recv_some(b.as_fd(), &mut challenge[got..], false).unwrap();
        }
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        sys::net::send_all(b.as_fd(), &header).unwrap();
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }
}
