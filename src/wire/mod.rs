//! The wire: how values cross a process boundary.
//!
//! Values are encoded with serde + postcard. A message on a socket is a *frame*: an 8-byte
//! header (payload length and descriptor count, little-endian `u32`s) followed by the payload.
//! The length is checked against the receiver's cap before anything is allocated.
//!
//! Handles that own file descriptors (connections, queues, locks, shared memory) serialize as an
//! index into the list of descriptors that travel beside the bytes, with `SCM_RIGHTS` on a
//! socket or by inheritance across `fork`. [`serialize_fd`] and [`deserialize_fd`] are the two
//! halves; they work only inside [`encode`] and [`decode`], which set up that list for the
//! current thread.

pub(crate) mod fd;
pub(crate) mod frame;

pub(crate) use fd::{deserialize_fd, serialize_fd};

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::fd::{OwnedFd, RawFd};

/// A postcard output flavor that appends to a caller's `Vec<u8>` with bulk copies.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encodes `value` after the bytes already in `out`; returns the descriptors its handles
/// reference, in index order. The descriptors are borrowed: they stay valid only while
/// `value` lives.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<Vec<RawFd>> {
    let scope = fd::EncodeScope::enter();
    postcard::serialize_with_flavor(value, AppendTo(out)).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(scope.finish())
}

/// Decodes a whole `T` from `bytes`, giving its handles the descriptors in `fds`.
/// Descriptors that no handle claims are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let _scope = fd::DecodeScope::enter(fds);
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Decode(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_values() {
        let mut buf = vec![7u8];
        let fds = encode(&("hi".to_string(), 5u64, vec![1.5f64]), &mut buf).unwrap();
        assert!(fds.is_empty());
        assert_eq!(buf[0], 7);
        let v: (String, u64, Vec<f64>) = decode(&buf[1..], Vec::new()).unwrap();
        assert_eq!(v, ("hi".to_string(), 5, vec![1.5]));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut buf = Vec::new();
        encode(&1u8, &mut buf).unwrap();
        buf.push(0);
        assert!(matches!(decode::<u8>(&buf, Vec::new()), Err(Error::Decode(_))));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut buf = Vec::new();
        encode(&"a longer string".to_string(), &mut buf).unwrap();
        buf.truncate(4);
        assert!(matches!(decode::<String>(&buf, Vec::new()), Err(Error::Decode(_))));
    }
}
