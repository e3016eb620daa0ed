//! Entry points for the fuzz targets under `fuzz/`: every decoder that reads bytes written by
//! another process. Not part of the API.

use crate::sys;
use crate::wire::frame;
use std::os::fd::{AsFd, OwnedFd};

/// A connected socket pair, ours and the peer's, with `input` sent by the peer (as much of it as
/// goes: inputs are small, the fuzzer's max_len, and a socket buffer holds them, so one thread
/// does).
fn sent_by_peer(input: &[u8]) -> (OwnedFd, OwnedFd) {
    let (ours, peer) = sys::socketpair().expect("socketpair");
    let mut sent = 0;
    while sent < input.len() {
        match sys::send_with_fds(peer.as_fd(), &input[sent..], &[]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    (ours, peer)
}

/// Feeds `input` to the frame reader as if a peer had written it, reading frames (with a cap of
/// `max` bytes) until end-of-file or an error. Returns how many frames were read whole.
pub fn read_frames(input: &[u8], max: usize) -> usize {
    let (ours, peer) = sent_by_peer(input);
    drop(peer);
    let mut frames = 0;
    let mut reader = frame::Reader::new();
    while reader.recv(ours.as_fd(), max).is_ok() {
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
    let (ours, peer) = sent_by_peer(peer_bytes);
    sys::shutdown_write(peer.as_fd()).expect("shutdown");
    let key = b"fuzzing key";
    let r = if role % 2 == 0 {
        crate::connection::accept_handshake(ours.as_fd(), key)
    } else {
        crate::connection::connect_handshake(ours.as_fd(), key)
    };
    r.is_ok()
}

/// Decodes `input` as a handle, as a child or a `get` does with the descriptors that came with
/// it: `input[0]` picks the handle type, `input[1]` the kinds of up to three descriptors (a
/// memory file, a socket, a pipe, `/dev/null`), `input[2]` how many of the following bytes are
/// the encoded value; the bytes after it fill the memory files (at least 8 KiB each, room for a
/// small queue ring). A decode must end in a handle or an error, and a handle must answer a
/// non-blocking call without touching memory outside its mapping: a queue is asked for its
/// length, for an item (`get_nowait`) and to write one record, and must answer each with a value
/// or an error. Returns whether it decoded.
///
/// A queue's put-lock word is cleared in the memory first: a get waits, by design, for the rest of
/// an item whose writer holds that lock and is alive, and the fuzzer would otherwise find a
/// lock word and a record that both name a live process.
pub fn decode_handles(input: &[u8]) -> bool {
    use crate::*;
    use std::os::unix::fs::FileExt;
    let [pick, kinds, split, rest @ ..] = input else { return false };
    let (value, memory) = rest.split_at((*split as usize).min(rest.len()));
    let mut fds = Vec::new();
    for k in 0..(kinds >> 6) {
        let fd = match (kinds >> (2 * k)) & 3 {
            0 => {
                let len = memory.len().max(8192).next_multiple_of(4096);
                let Ok(fd) = sys::memfd(c"mp-fuzz", len) else { return false };
                let file = std::fs::File::from(fd.try_clone().expect("dup"));
                let _ = file.write_all_at(memory, 0);
                if matches!(pick % 14, 1 | 2) {
                    let _ = file.write_all_at(&[0; 4], crate::queue::ring::PUT_LOCK_OFFSET as u64);
                }
                fd
            }
            1 => sys::socketpair().expect("socketpair").0,
            2 => sys::pipe::pipe_nonblocking_reader().expect("pipe").0,
            _ => std::fs::File::open("/dev/null").expect("/dev/null").into(),
        };
        fds.push(fd);
    }
    fn de<T: serde::de::DeserializeOwned>(v: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> Option<T> {
        crate::wire::decode(v, fds).ok()
    }
    let now = Some(std::time::Duration::ZERO);
    match pick % 14 {
        0 => de::<Connection>(value, fds).map(|c| c.poll(now).is_ok()).is_some(),
        1 => de::<Queue<u32>>(value, fds).map(|q| exercise_queue(&q)).is_some(),
        2 => de::<JoinableQueue<u32>>(value, fds).map(|q| exercise_queue(&q)).is_some(),
        3 => de::<Lock>(value, fds).map(|l| l.try_acquire().is_ok()).is_some(),
        4 => de::<RLock>(value, fds).map(|l| l.try_acquire().is_ok()).is_some(),
        5 => de::<Semaphore>(value, fds).map(|s| s.try_acquire().is_some()).is_some(),
        6 => de::<BoundedSemaphore>(value, fds).map(|s| s.try_acquire().is_some()).is_some(),
        7 => de::<Condition>(value, fds).map(|c| c.get_lock().try_acquire().is_ok()).is_some(),
        8 => de::<Event>(value, fds).map(|e| e.is_set()).is_some(),
        9 => de::<Barrier>(value, fds).map(|b| b.n_waiting() <= b.parties()).is_some(),
        10 => de::<Value<u64>>(value, fds)
            .map(|v| v.get_lock().try_acquire().is_ok() && v.get_obj().get() > 0)
            .is_some(),
        11 => de::<Array<u16>>(value, fds).map(|a| a.get_obj().to_vec().len()).is_some(),
        12 => de::<RawValue<u32>>(value, fds).map(|v| v.get()).is_some(),
        _ => de::<RawArray<u8>>(value, fds).map(|a| a.to_vec().len()).is_some(),
    }
}

fn exercise_queue(q: &crate::Queue<u32>) -> usize {
    let n = q.qsize();
    let _ = q.get_nowait();
    let _ = q.fuzz_try_write(&[1, 2, 3, 4]);
    n
}

#[cfg(test)]
mod tests {
    /// A frame as a peer writes it: length and descriptor count (little-endian), then the bytes.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    #[cfg_attr(miri, ignore = "frames over a socket pair: Miri has no sendmsg")]
    fn the_frame_entry_counts_the_whole_frames_a_peer_sent() {
        let mut input = [frame(b"ab"), frame(b"c")].concat();
        assert_eq!(super::read_frames(&input, 1024), 2);
        input.extend_from_slice(&frame(b"cut short")[..10]);
        assert_eq!(super::read_frames(&input, 1024), 2);
        assert_eq!(super::read_frames(&frame(&[0; 100]), 10), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a handshake over a socket pair: Miri has no recvmsg")]
    fn the_handshake_entry_never_passes_without_the_key() {
        for role in [0u8, 1] {
            assert!(!super::auth_handshake(&[role, 1, 2, 3]));
        }
        assert!(!super::auth_handshake(&[]));
    }
}
