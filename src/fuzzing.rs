//! Entry points for the fuzz targets under `fuzz/`: every decoder that reads bytes written by
//! another process. Not part of the API.

use crate::sys;
use crate::wire::frame;
use std::os::fd::AsFd;

/// Feeds `input` to the frame reader as if a peer had written it, reading frames (with a cap of
/// `max` bytes) until end-of-file or an error. Returns how many frames were read whole.
pub fn read_frames(input: &[u8], max: usize) -> usize {
    let (a, b) = sys::socketpair().expect("socketpair");
    // Inputs are small (the fuzzer's max_len); a socket buffer holds them, so one thread does.
    let mut sent = 0;
    while sent < input.len() {
        match sys::send_with_fds(a.as_fd(), &input[sent..], &[]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    drop(a);
    let mut frames = 0;
    let mut reader = frame::Reader::new();
    while reader.recv(b.as_fd(), max).is_ok() {
        frames += 1;
    }
    frames
}

/// Decodes `input` as a child's boot message followed by an argument tuple, as a child does.
pub fn decode_boot(input: &[u8]) -> bool {
    crate::process::fuzz_decode_boot(input)
}

/// Decodes `input` as a child's result message, as `JoinHandle::join` does.
pub fn decode_outcome(input: &[u8]) -> bool {
    crate::process::fuzz_decode_outcome(input)
}

pub use crate::manager::fuzzing::{frame_decoder, manager_request};

/// Runs one side of the authentication handshake against a peer that sent `input[1..]` and
/// then hung up: the acceptor's side when `input[0]` is even, the connector's otherwise.
/// Returns whether the handshake passed (it never should without the key).
pub fn auth_handshake(input: &[u8]) -> bool {
    let Some((&role, peer_bytes)) = input.split_first() else { return false };
    let (ours, peer) = sys::socketpair().expect("socketpair");
    let mut sent = 0;
    while sent < peer_bytes.len() {
        match sys::send_with_fds(peer.as_fd(), &peer_bytes[sent..], &[]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sys::shutdown_write(peer.as_fd()).expect("shutdown");
    let key = b"fuzzing key";
    let r = if role % 2 == 0 {
        crate::connection::accept_handshake(ours.as_fd(), key)
    } else {
        crate::connection::connect_handshake(ours.as_fd(), key)
    };
    r.is_ok()
}
