//! The wire: how values cross a process boundary.
//!
//! Values are encoded with serde + postcard. A message on a socket is a *frame*: an 8-byte
//! header (payload length and descriptor count, little-endian `u32`s) followed by the payload.
//! The length is checked against the receiver's cap before anything is allocated.
//!
//! Handles that own file descriptors (connections, queues, locks, shared memory) serialize as an
//! index into the list of descriptors that travel beside the bytes, with `SCM_RIGHTS` on a
//! socket or by inheritance across `fork`. [`FdRef`] and [`FdOwned`] are the two halves (a
//! descriptor as a serde value, lent or received); they work only inside [`encode`] and
//! [`decode`], which set up that list for the current thread.
//!
//! A value's own error message (`serde::ser::Error::custom`, `serde::de::Error::custom`)
//! reaches the caller in [`Error::Encode`] and [`Error::Decode`], which postcard alone would
//! replace with a generic text (see `caught.rs`). This module is the crate's one user of
//! postcard for values.

mod caught;
pub(crate) mod fd;
pub(crate) mod frame;

pub(crate) use fd::{FdOwned, FdRef};

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::os::fd::{OwnedFd, RawFd};

/// Where [`encode_to`] writes the encoded bytes: a growing buffer, or the free part of a
/// queue's ring (`queue::ring::InPlace`).
pub(crate) trait Sink {
    fn push(&mut self, byte: u8);
    fn extend(&mut self, data: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    #[inline]
    fn extend(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

/// A postcard output flavor that hands the bytes to a [`Sink`] with bulk copies.
struct AppendTo<'a, S: Sink>(&'a mut S);

impl<S: Sink> postcard::ser_flavors::Flavor for AppendTo<'_, S> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend(data);
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
    encode_to(value, out)
}

/// [`encode`] into any [`Sink`].
pub(crate) fn encode_to<T: Serialize + ?Sized, S: Sink>(value: &T, out: &mut S) -> Result<Vec<RawFd>> {
    let scope = fd::EncodeScope::enter();
    let caught = caught::Scope::enter();
    let mut ser = postcard::Serializer { output: AppendTo(out) };
    value
        .serialize(caught::Ser(&mut ser))
        .map_err(|e| Error::Encode(caught.message(e, |e| *e == postcard::Error::SerdeSerCustom)))?;
    Ok(scope.finish())
}

/// Encodes `value`, which must carry no handles, as the whole of a new buffer: for bytes that
/// leave through a channel that cannot carry descriptors (`what` names it in the error).
#[cfg(any(feature = "redis", test))]
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if !encode(value, &mut out)?.is_empty() {
        return Err(Error::Encode(format!(
            "{what} cannot carry handles (pipes, queues, shared memory, descriptors)"
        )));
    }
    Ok(out)
}

/// Encodes plain data (no handles) without the per-thread scopes [`encode`] keeps, so that
/// it also works in an exit handler, after this thread's locals are gone (an MPI rank's last
/// word to rank 0).
#[cfg(feature = "mpi")]
pub(crate) fn encode_bare<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes a `T` from the start of `bytes`; returns it with the bytes after it.
fn take_prefix<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<(T, &'de [u8])> {
    let caught = caught::Scope::enter();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let value = T::deserialize(caught::De(&mut de))
        .map_err(|e| Error::Decode(caught.message(e, |e| *e == postcard::Error::SerdeDeCustom)))?;
    let rest = de.finalize().map_err(|e| Error::Decode(e.to_string()))?;
    Ok((value, rest))
}

/// Decodes a whole `T` from `bytes`, giving its handles the descriptors in `fds`.
/// Descriptors that no handle claims are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let _scope = fd::DecodeScope::enter(fds);
    let (value, rest) = take_prefix(bytes)?;
    if !rest.is_empty() {
        return Err(Error::Decode(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

/// Decodes a `T` that carries no handles from the start of `bytes` (a message header); returns
/// it with the bytes after it.
pub(crate) fn take<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<(T, &'de [u8])> {
    take_prefix(bytes)
}

/// Decodes the whole of `bytes` as a `T` that carries no handles (it may borrow from `bytes`);
/// bytes left over are an error.
pub(crate) fn decode_plain<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let (value, rest) = take_prefix(bytes)?;
    if !rest.is_empty() {
        return Err(Error::Decode(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

    #[test]
    fn round_trip_plain_values() {
        let mut buf = vec![7u8];
        let fds = encode(&("hi".to_string(), 5u64, vec![1.5f64]), &mut buf).unwrap();
        assert!(fds.is_empty());
        assert_eq!(buf[0], 7);
        let v: (String, u64, Vec<f64>) = decode(&buf[1..], Vec::new()).unwrap();
        assert_eq!(v, ("hi".to_string(), 5, vec![1.5]));
    }

    /// A handle whose own encoding runs another, whole encoding first (as a manager proxy
    /// asks its server for a reference while it is being sent), then its descriptor.
    struct Nested<'a>(BorrowedFd<'a>, bool);

    impl Serialize for Nested<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut inner = Vec::new();
            let _ = encode(&Picky(if self.1 { 13 } else { 1 }), &mut inner);
            FdRef(self.0).serialize(s)
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "descriptors over a socket: Miri has no sendmsg/recvmsg")]
    fn an_encoding_inside_another_leaves_the_outer_descriptor_table_in_place() {
        let (a, b) = crate::sys::socketpair().unwrap();
        for inner_fails in [false, true] {
            let mut buf = Vec::new();
            let fds = encode(&(Nested(a.as_fd(), inner_fails), FdRef(b.as_fd())), &mut buf).unwrap();
            assert_eq!(fds, vec![a.as_raw_fd(), b.as_raw_fd()], "inner failed: {inner_fails}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "a socket pair: Miri has no socketpair")]
    fn a_plain_encoding_refuses_handles_and_keeps_a_user_message() {
        assert_eq!(encode_plain(&(1u8, "x"), "a test").unwrap(), vec![1, 1, b'x']);
        let (a, _b) = crate::sys::socketpair().unwrap();
        let e = encode_plain(&(1u8, FdRef(a.as_fd())), "a broker message").unwrap_err();
        assert!(e.to_string().contains("a broker message cannot carry handles"), "{e}");
        let e = encode_plain(&Picky(13), "a broker message").unwrap_err();
        assert!(e.to_string().contains("no 13 here"), "{e}");
    }

    /// Refuses to encode 13 and to decode 7, with messages of its own.
    #[derive(Debug, PartialEq)]
    struct Picky(u32);

    impl Serialize for Picky {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0 == 13 {
                return Err(serde::ser::Error::custom("no 13 here"));
            }
            s.serialize_u32(self.0)
        }
    }

    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            match u32::deserialize(d)? {
                7 => Err(serde::de::Error::custom("no 7 here")),
                v => Ok(Picky(v)),
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        New(Picky),
        Tuple(u8, Picky),
        Struct { a: Option<Picky>, b: Vec<Picky> },
    }

    fn encode_err<T: Serialize>(v: &T) -> String {
        match encode(v, &mut Vec::new()) {
            Err(Error::Encode(msg)) => msg,
            other => panic!("expected an encode error, got {other:?}"),
        }
    }

    fn decode_err<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> String {
        match decode::<T>(bytes, Vec::new()) {
            Err(Error::Decode(msg)) => msg,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn custom_messages_survive_every_nesting() {
        use std::collections::BTreeMap;
        assert_eq!(encode_err(&Picky(13)), "no 13 here");
        assert_eq!(encode_err(&Some(vec![Picky(1), Picky(13)])), "no 13 here");
        assert_eq!(encode_err(&Shape::New(Picky(13))), "no 13 here");
        assert_eq!(encode_err(&Shape::Tuple(1, Picky(13))), "no 13 here");
        assert_eq!(encode_err(&Shape::Struct { a: None, b: vec![Picky(13)] }), "no 13 here");
        assert_eq!(encode_err(&BTreeMap::from([(1u8, Picky(13))])), "no 13 here");

        let bytes = |v: &dyn erased::Encode| v.bytes();
        assert_eq!(decode_err::<Picky>(&bytes(&7u32)), "no 7 here");
        assert_eq!(decode_err::<Option<Vec<Picky>>>(&bytes(&Some(vec![1u32, 7]))), "no 7 here");
        assert_eq!(decode_err::<Shape>(&bytes(&Plain::New(7))), "no 7 here");
        assert_eq!(decode_err::<Shape>(&bytes(&Plain::Tuple(1, 7))), "no 7 here");
        assert_eq!(decode_err::<Shape>(&bytes(&Plain::Struct { a: Some(7), b: vec![] })), "no 7 here");
        assert_eq!(decode_err::<BTreeMap<u8, Picky>>(&bytes(&BTreeMap::from([(1u8, 7u32)]))), "no 7 here");
        // postcard's own errors keep their text.
        assert!(decode_err::<bool>(&[5]).contains("bool"), "{}", decode_err::<bool>(&[5]));
    }

    /// [`Shape`] with plain numbers, to write what `Picky` refuses to read.
    #[derive(Serialize)]
    enum Plain {
        #[allow(dead_code)]
        Unit,
        New(u32),
        Tuple(u8, u32),
        Struct {
            a: Option<u32>,
            b: Vec<u32>,
        },
    }

    mod erased {
        pub(super) trait Encode {
            fn bytes(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Encode for T {
            fn bytes(&self) -> Vec<u8> {
                postcard::to_stdvec(self).unwrap()
            }
        }
    }

    #[test]
    fn the_encoding_is_postcards() {
        use std::collections::BTreeMap;
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct All {
            a: (bool, i8, i16, i32, i64, i128, u8),
            b: (u16, u32, u64, u128, f32, f64, char),
            s: String,
            bytes: Vec<u8>,
            map: BTreeMap<String, Option<Vec<u16>>>,
            shapes: Vec<Shape>,
            unit: (),
        }
        let v = All {
            a: (true, -1, -300, -70000, -1 << 40, -1 << 100, 200),
            b: (60000, 1 << 30, 1 << 60, 1 << 120, 1.5, -2.25, 'é'),
            s: "hello".into(),
            bytes: vec![0, 255, 7],
            map: BTreeMap::from([("k".to_string(), Some(vec![1, 2])), ("z".to_string(), None)]),
            shapes: vec![
                Shape::Unit,
                Shape::New(Picky(3)),
                Shape::Tuple(9, Picky(4)),
                Shape::Struct { a: Some(Picky(5)), b: vec![Picky(6)] },
            ],
            unit: (),
        };
        let mut ours = Vec::new();
        encode(&v, &mut ours).unwrap();
        assert_eq!(ours, postcard::to_stdvec(&v).unwrap());
        assert_eq!(decode::<All>(&ours, Vec::new()).unwrap(), v);
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
