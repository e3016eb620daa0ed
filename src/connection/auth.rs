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
//! stops mid-frame or stays silent past [`HANDSHAKE_TIMEOUT`] is refused without the receiver
//! allocating anything for it.

use crate::error::{Error, Result};
use crate::sys;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Largest message either side accepts during the handshake.
pub(crate) const MAX_AUTH_MESSAGE: usize = 256;

/// How long a peer may take to send each handshake message.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 32;

pub(crate) type HmacSha256 = Hmac<Sha256>;

pub(crate) fn mac(authkey: &[u8], label: &[u8], challenge: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(authkey).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(challenge);
    m
}

fn send_small(sock: BorrowedFd<'_>, payload: &[u8]) -> Result<()> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(payload);
    sys::net::send_all(sock, &frame).map_err(|e| match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => Error::Eof,
        _ => Error::Io { context: "authenticating a connection", source: e },
    })
}

fn read_exact(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match sys::net::recv_some(sock, &mut buf[got..], false) {
            Ok(0) => return Err(Error::Eof),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Authentication("the peer took too long to answer the handshake".into()))
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Err(Error::Eof),
            Err(e) => return Err(Error::Io { context: "authenticating a connection", source: e }),
        }
    }
    Ok(())
}

/// Reads one handshake message of at most [`MAX_AUTH_MESSAGE`] bytes.
fn recv_small(sock: BorrowedFd<'_>) -> Result<Vec<u8>> {
    let mut header = [0u8; 8];
    read_exact(sock, &mut header)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_AUTH_MESSAGE || nfds != 0 {
        return Err(Error::Authentication(format!(
            "the peer sent a malformed handshake message (announced {len} bytes, {nfds} descriptors)"
        )));
    }
    let mut payload = vec![0u8; len];
    read_exact(sock, &mut payload)?;
    Ok(payload)
}

/// Sends a challenge and checks the answer; on failure tells the peer and returns an error.
fn deliver_challenge(sock: BorrowedFd<'_>, authkey: &[u8], peer_label: &[u8]) -> Result<()> {
    let mut nonce = [0u8; NONCE_LEN];
    sys::net::random_bytes(&mut nonce).map_err(Error::io("generating an authentication challenge"))?;
    let mut msg = CHALLENGE.to_vec();
    msg.extend_from_slice(&nonce);
    send_small(sock, &msg)?;
    let answer = recv_small(sock)?;
    // `verify_slice` compares in constant time.
    if mac(authkey, peer_label, &nonce).verify_slice(&answer).is_err() {
        let _ = send_small(sock, FAILURE);
        return Err(Error::Authentication("digest received was wrong".into()));
    }
    send_small(sock, WELCOME)
}

/// Answers the peer's challenge and reads its verdict.
fn answer_challenge(sock: BorrowedFd<'_>, authkey: &[u8], own_label: &[u8]) -> Result<()> {
    let msg = recv_small(sock)?;
    let Some(nonce) = msg.strip_prefix(CHALLENGE) else {
        return Err(Error::Authentication("the peer did not send a challenge".into()));
    };
    if nonce.len() != NONCE_LEN {
        return Err(Error::Authentication("the peer sent a challenge of the wrong length".into()));
    }
    let digest = mac(authkey, own_label, nonce).finalize().into_bytes();
    send_small(sock, &digest)?;
    match recv_small(sock) {
        Ok(verdict) if verdict == WELCOME => Ok(()),
        Ok(_) | Err(Error::Eof) => Err(Error::Authentication("digest sent was rejected".into())),
        Err(e) => Err(e),
    }
}

fn with_timeout(sock: BorrowedFd<'_>, f: impl FnOnce() -> Result<()>) -> Result<()> {
    sys::net::set_recv_timeout(sock, Some(HANDSHAKE_TIMEOUT))
        .map_err(Error::io("authenticating a connection"))?;
    let r = f();
    sys::net::set_recv_timeout(sock, None).map_err(Error::io("authenticating a connection"))?;
    r
}

/// The accepting side: challenge the connector first, then answer its challenge.
pub(crate) fn accept_handshake(sock: BorrowedFd<'_>, authkey: &[u8]) -> Result<()> {
    with_timeout(sock, || {
        deliver_challenge(sock, authkey, b"connector")?;
        answer_challenge(sock, authkey, b"acceptor")
    })
}

/// The connecting side: answer the acceptor's challenge, then challenge it.
pub(crate) fn connect_handshake(sock: BorrowedFd<'_>, authkey: &[u8]) -> Result<()> {
    with_timeout(sock, || {
        answer_challenge(sock, authkey, b"connector")?;
        deliver_challenge(sock, authkey, b"acceptor")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn same_key_passes_both_ways() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        connect_handshake(b.as_fd(), b"key").unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn wrong_key_fails_on_both_sides() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        assert!(matches!(connect_handshake(b.as_fd(), b"other"), Err(Error::Authentication(_))));
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }

    #[test]
    fn oversized_handshake_message_is_refused_without_reading_it() {
        let (a, b) = sys::socketpair().unwrap();
        let t = std::thread::spawn(move || accept_handshake(a.as_fd(), b"key"));
        let _challenge = recv_small(b.as_fd()).unwrap();
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        sys::net::send_all(b.as_fd(), &header).unwrap();
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }
}
