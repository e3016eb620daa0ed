//! Client-side encoding of the values proxies send: single items, runs of items, and byte
//! strings inside argument tuples.

use super::protocol::encode_value;
use crate::error::Result;
use serde::{Serialize, Serializer};
use std::borrow::Borrow;

/// A byte string that serializes as one (serde's `&[u8]` would go element by element).
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The encoding of one value.
pub(crate) fn encode_one<T: Serialize + ?Sized>(item: &T) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    encode_value(item, &mut buf)?;
    Ok(buf)
}

/// The encodings of several values back to back, with the offsets between them (`n + 1`
/// offsets for `n` values).
pub(crate) fn encode_items<T, I>(items: I) -> Result<(Vec<u8>, Vec<usize>)>
where
    T: Serialize,
    I: IntoIterator,
    I::Item: Borrow<T>,
{
    let mut buf = Vec::new();
    let mut bounds = vec![0];
    for item in items {
        encode_value(item.borrow(), &mut buf)?;
        bounds.push(buf.len());
    }
    Ok((buf, bounds))
}
