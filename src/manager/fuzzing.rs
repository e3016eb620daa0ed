//! Entry points for the `cargo fuzz` targets in `fuzz/`: the decoders that read bytes another
//! process sent to a manager's server. Not a public API.

use super::protocol::Request;
use super::registry::{self, CallCx};
use super::stream::{Kind, Reader};
use crate::sys;
use std::os::fd::AsFd;

/// Feeds `data` to the server's frame reader as a client would send it, and decodes each frame
/// as a request, until the reader refuses something or the bytes run out. Must never panic,
/// hang or allocate beyond the cap.
pub fn frame_decoder(data: &[u8]) {
    let data = &data[..data.len().min(60 * 1024)]; // fits in the socket buffer: no writer thread
    let Ok((a, b)) = sys::socketpair() else { return };
    if sys::net::send_all(a.as_fd(), data).is_err() {
        return;
    }
    drop(a);
    let mut reader = Reader::new();
    while let Ok(payload) = reader.next_frame(b.as_fd(), Kind::Socket, 1 << 16, std::time::Duration::ZERO) {
        let _ = crate::wire::take::<Request<'_>>(payload);
    }
}

/// Decodes `data` as a request and, for calls, runs it against fresh built-in objects that never
/// block (list, dict, namespace, value, array) with the remaining bytes as arguments.
pub fn manager_request(data: &[u8]) {
    let Ok((req, args)) = crate::wire::take::<Request<'_>>(data) else { return };
    let Request::Call { id, method } = req else { return };
    let typeid = ["list", "dict", "Namespace", "Value", "Array"][(id % 5) as usize];
    // `[0]` is a valid initial state for each: an empty sequence, or the value 0.
    let Ok(obj) = registry::create(typeid, "", &[0]) else { return };
    let Ok((_peer, sock)) = sys::socketpair() else { return };
    let cx = CallCx { conn: 1, sock: sock.as_fd(), undo: Default::default() };
    let mut out = Vec::new();
    for _ in 0..2 {
        let _ = obj.call(registry::Call { cx: &cx, method, args, out: &mut out });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_entry_points_accept_anything() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            super::frame_decoder(&bytes);
            super::manager_request(&bytes);
        }
        super::frame_decoder(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        super::manager_request(&[0, 1, 6, b'a', b'p', b'p', b'e', b'n', b'd', 1, 2]);
    }
}
