//! The manager protocol: what a proxy asks and how the server answers.
//!
//! After the HMAC handshake, each frame from a client holds one postcard-encoded [`Request`],
//! followed for `Call` and `Create` by the encoded arguments (the rest of the frame, so a proxy
//! encodes them straight into the frame); the server answers each with one frame: a status byte ([`REPLY_OK`] or [`REPLY_ERR`]) and
//! then either the method's encoded result or an encoded [`RemoteError`]. Object state in the
//! server is kept as the postcard encodings of the values (see the module doc of `manager`), so
//! a result is usually those stored bytes copied straight into the reply.

use crate::error::{Error, Result};
pub use crate::error::{RemoteError, RemoteErrorKind};
use serde::{Deserialize, Serialize};

/// Status byte of a successful reply.
pub(crate) const REPLY_OK: u8 = 0;
/// Status byte of a failed reply.
pub(crate) const REPLY_ERR: u8 = 1;

/// Largest request an authenticated client may send (the server's cap).
pub(crate) const MAX_REQUEST: usize = 256 << 20;
/// Largest reply a proxy accepts.
pub(crate) const MAX_REPLY: usize = 1 << 30;

/// One request from a proxy (Python's `(ident, methodname, args, kwds)` and the server's
/// `create`, `incref`, `decref`, `shutdown`, ...).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request<'a> {
    /// Calls `method` of object `id`; the encoded arguments follow.
    Call { id: u64, method: &'a str },
    /// Creates an object of type `typeid` with its constructor `ctor` (the arguments follow);
    /// replies with its id.
    Create { typeid: &'a str, ctor: &'a str },
    /// Adds a reference to an object.
    IncRef { id: u64 },
    /// Drops a reference; the object goes when the last one does.
    DecRef { id: u64 },
    /// Adds a reference held by a serialized proxy in flight; replies with a ticket number.
    Lend { id: u64 },
    /// A deserialized proxy takes over the reference of `ticket`, or adds one if the ticket was
    /// already claimed (the same bytes decoded twice).
    Claim { id: u64, ticket: u64 },
    /// Gives object `id` a name other clients can look it up by (holding a reference).
    Publish { name: &'a str, id: u64 },
    /// Looks up a published name; replies with `(id, typeid)` and a new reference.
    Lookup { name: &'a str },
    /// Replies with [`ServerInfo`].
    Info,
    /// Stops the server.
    Shutdown,
}

/// What [`Request::Info`] answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerInfo {
    pub(crate) pid: i32,
    pub(crate) objects: u64,
}

impl Error {
    /// The kind of the manager error this is, if it is one: a shorthand for matching
    /// [`Error::Remote`].
    ///
    /// ```
    /// # use multiproc::{Manager, manager::RemoteErrorKind};
    /// let manager = Manager::start()?;
    /// let l = manager.list(vec![1, 2, 3])?;
    /// assert_eq!(l.get(7).unwrap_err().remote_kind(), Some(RemoteErrorKind::Index));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn remote_kind(&self) -> Option<RemoteErrorKind> {
        match self {
            Error::Remote(r) => Some(r.kind()),
            _ => None,
        }
    }
}

/// Decodes the whole of `bytes` as one `T`: bytes left over are an error too (arguments a
/// proxy did not write, which the server would otherwise store unchecked).
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> std::result::Result<T, RemoteError> {
    let bad = |e: String| RemoteError::new(RemoteErrorKind::BadArguments, e);
    let (value, rest) = crate::wire::take(bytes).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} unexpected bytes after the arguments", rest.len())));
    }
    Ok(value)
}

pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<(), RemoteError> {
    crate::wire::encode(value, out)
        .map_err(|e| RemoteError::new(RemoteErrorKind::BadArguments, e.to_string()))
        .and_then(|fds| {
            if fds.is_empty() {
                Ok(())
            } else {
                Err(RemoteError::new(
                    RemoteErrorKind::BadArguments,
                    "a manager result cannot hold descriptors",
                ))
            }
        })
}

/// Encodes a value stored in or sent to a manager object. Handles that own a descriptor cannot
/// live in a manager (they may cross TCP, and the server would keep them open).
pub(crate) fn encode_value<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let fds = crate::wire::encode(value, out)?;
    if !fds.is_empty() {
        return Err(Error::Encode(
            "a handle that owns a file descriptor (connection, queue, lock...) cannot be stored in or sent to \
             a manager object; pass it to the process directly"
                .into(),
        ));
    }
    Ok(())
}

/// Appends postcard's varint encoding of a length (how a sequence starts).
pub(crate) fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_encodings_decode_as_a_vec() {
        let items = [3u32, 300, 70000];
        let mut out = Vec::new();
        push_varint(&mut out, items.len() as u64);
        for i in items {
            out.extend(crate::wire::encode_plain(&i, "a test").unwrap());
        }
        assert_eq!(crate::wire::decode_plain::<Vec<u32>>(&out).unwrap(), items);
        let mut big = Vec::new();
        push_varint(&mut big, 1 << 40);
        assert_eq!(big, crate::wire::encode_plain(&(1u64 << 40), "a test").unwrap());
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::Call { id: 7, method: "append" };
        let mut bytes = crate::wire::encode_plain(&r, "a test").unwrap();
        bytes.extend_from_slice(&[1, 2]);
        match crate::wire::take::<Request<'_>>(&bytes).unwrap() {
            (Request::Call { id, method }, args) => {
                assert_eq!((id, method, args), (7, "append", &[1u8, 2][..]))
            }
            other => panic!("{other:?}"),
        }
    }
}
