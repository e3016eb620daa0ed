//! Signed messages between a pool's client and its workers, and the build id they carry.
//!
//! A message is `[HMAC-SHA256(authkey, label || body): 32 bytes][body]`, the body a postcard
//! value that names the pool, so a message can be neither forged, altered, moved to another
//! pool, nor replayed as the other kind (the label differs: `task` / `result`). The MAC is the
//! one the connection handshake uses (`connection/auth.rs`) and is checked in constant time.

use crate::connection::auth;
use crate::error::{Error, Result};
use crate::target::EntryOffset;
use crate::wire;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const MAC_LEN: usize = 32;
pub(crate) const TASK_LABEL: &[u8] = b"multiproc-redis-task";
pub(crate) const RESULT_LABEL: &[u8] = b"multiproc-redis-result";
pub(crate) const HELLO_LABEL: &[u8] = b"multiproc-redis-hello";

/// A task as the client writes it to the broker.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct TaskMsg {
    pub(crate) pool: String,
    /// The client's build id: a worker of another build refuses the task.
    pub(crate) build: String,
    pub(crate) id: u64,
    pub(crate) entry: EntryOffset,
    pub(crate) args: Vec<u8>,
}

/// A result as a worker writes it.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ResultMsg {
    pub(crate) pool: String,
    pub(crate) id: u64,
    /// Which worker ran it (`host/pid`).
    pub(crate) worker: String,
    /// The local pool protocol's tag (`RETURNED`, `PANICKED`, ...) or [`REFUSED`]/[`DIED`]/
    /// [`TIMED_OUT`].
    pub(crate) tag: u8,
    pub(crate) pid: i32,
    pub(crate) body: Vec<u8>,
}

/// The worker refused the task (another build); the body says why.
pub(crate) const REFUSED: u8 = 100;
/// The worker's task process died running it; the body says how.
pub(crate) const DIED: u8 = 101;
/// The task ran past the pool's task timeout and was killed.
pub(crate) const TIMED_OUT: u8 = 102;

/// Signs `value` under `label`.
pub(crate) fn seal<T: Serialize>(authkey: &[u8], label: &[u8], value: &T) -> Result<Vec<u8>> {
    let body = wire::encode_plain(value, "a broker message")?;
    let tag = auth::mac(authkey, label, &body).finalize().into_bytes();
    let mut out = Vec::with_capacity(MAC_LEN + body.len());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks the MAC of `msg` under `label` and decodes it.
pub(crate) fn open<T: serde::de::DeserializeOwned>(authkey: &[u8], label: &[u8], msg: &[u8]) -> Result<T> {
    if msg.len() < MAC_LEN {
        return Err(Error::Authentication("a broker message too short to carry its MAC".into()));
    }
    let (tag, body) = msg.split_at(MAC_LEN);
    auth::mac(authkey, label, body).verify_slice(tag).map_err(|_| {
        Error::Authentication(
            "a broker message failed its HMAC check (another authkey, or altered on the way)".into(),
        )
    })?;
    Ok(wire::take(body)?.0)
}

/// Reads the GNU build-id note of the ELF file `bytes`, if it has one.
fn gnu_build_id(bytes: &[u8]) -> Option<Vec<u8>> {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at =
        |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize);
    let u64_at =
        |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")) as usize);
    // 64-bit little-endian ELF only.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = u64_at(0x20)?;
    let phentsize = u16_at(0x36)?;
    let phnum = u16_at(0x38)?;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let off = u64_at(ph + 8)?;
        let size = u64_at(ph + 32)?;
        let mut at = off;
        let end = off.checked_add(size)?;
        while at + 12 <= end {
            let namesz = u32_at(at)?;
            let descsz = u32_at(at + 4)?;
            let kind = u32_at(at + 8)?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if kind == 3 && bytes.get(name_at..name_at + namesz)? == b"GNU\0" {
                return bytes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            at = next;
        }
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match std::fs::read("/proc/self/exe") {
        Ok(bytes) => match gnu_build_id(&bytes) {
            Some(id) => format!("gnu:{}", hex(&id)),
            None => {
                use sha2::Digest;
                format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)))
            }
        },
        Err(e) => format!("unknown ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_key_and_label() {
        let m = seal(b"key", TASK_LABEL, &(1u32, "x".to_string())).unwrap();
        let v: (u32, String) = open(b"key", TASK_LABEL, &m).unwrap();
        assert_eq!(v, (1, "x".to_string()));
        assert!(matches!(open::<(u32, String)>(b"other", TASK_LABEL, &m), Err(Error::Authentication(_))));
        assert!(matches!(open::<(u32, String)>(b"key", RESULT_LABEL, &m), Err(Error::Authentication(_))));
        let mut bad = m.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(open::<(u32, String)>(b"key", TASK_LABEL, &bad), Err(Error::Authentication(_))));
    }

    #[test]
    fn this_test_binary_has_a_build_id() {
        let id = build_id();
        assert!(id.starts_with("gnu:") || id.starts_with("sha256:"), "{id}");
        assert_eq!(id, build_id());
    }
}
