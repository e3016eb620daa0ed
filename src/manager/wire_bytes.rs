//! Client-side encoding of the values proxies send: single items, sequences of items and of
//! key-value pairs, and byte strings inside argument tuples.

use super::protocol::{encode_value, push_varint};
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

/// Items encoded as a sequence of byte strings, one per item: what the server splits into
/// items without knowing their type.
pub(crate) fn encode_seq<T, I>(items: I) -> Result<Vec<u8>>
where
    T: Serialize,
    I: IntoIterator,
    I::Item: Borrow<T>,
{
    // The items back to back, then the count and each one with its length in front.
    let mut buf = Vec::new();
    let mut bounds = vec![0];
    for item in items {
        encode_value(item.borrow(), &mut buf)?;
        bounds.push(buf.len());
    }
    let mut out = Vec::with_capacity(buf.len() + bounds.len() * 2 + 8);
    push_varint(&mut out, (bounds.len() - 1) as u64);
    for w in bounds.windows(2) {
        push_varint(&mut out, (w[1] - w[0]) as u64);
        out.extend_from_slice(&buf[w[0]..w[1]]);
    }
    Ok(out)
}

/// Key-value pairs encoded as a sequence of pairs of byte strings: what the server's dictionary
/// is made from and updated with.
pub(crate) fn encode_pairs<K, V, KB, VB>(items: impl IntoIterator<Item = (KB, VB)>) -> Result<Vec<u8>>
where
    K: Serialize,
    V: Serialize,
    KB: Borrow<K>,
    VB: Borrow<V>,
{
    let mut enc = Vec::new();
    for (k, v) in items {
        enc.push((encode_one(k.borrow())?, encode_one(v.borrow())?));
    }
    let pairs: Vec<(Bytes<'_>, Bytes<'_>)> = enc.iter().map(|(k, v)| (Bytes(k), Bytes(v))).collect();
    encode_one(&pairs)
}
