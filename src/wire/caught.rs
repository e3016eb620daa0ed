//! Serde errors that keep the user's message.
//!
//! postcard's error type drops the text of `serde::ser::Error::custom` and
//! `serde::de::Error::custom` ("Serde Serialization Error"), so a value whose `Serialize` or
//! `Deserialize` impl refuses with a message of its own would reach the caller without it. Here
//! every value is (de)serialized through a thin wrapper around postcard's serializer and
//! deserializer whose error type, [`Caught`], keeps that message. Where a value sits inside a
//! compound that postcard drives (an element of a sequence, a field), its error has to become
//! postcard's on the way out: then the message waits in a per-thread slot, which
//! [`super::encode`] and [`super::decode`] read when postcard's generic error comes back.

use serde::de::{self, DeserializeSeed, Visitor};
use serde::ser::{self, Serialize};
use std::cell::RefCell;
use std::fmt::{self, Display};

thread_local! {
    /// The message of the last custom error that had to become postcard's.
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A scope of one top-level (de)serialization: saves and restores an enclosing scope's message.
pub(super) struct Scope {
    outer: Option<String>,
}

impl Scope {
    pub(super) fn enter() -> Scope {
        Scope { outer: MESSAGE.with(|m| m.borrow_mut().take()) }
    }

    /// The text of `e`: the user's own message when postcard only kept "a custom error".
    pub(super) fn message<E: Display>(&self, e: Caught<E>, generic: impl Fn(&E) -> bool) -> String {
        match e {
            Caught::Custom(msg) => msg,
            Caught::Inner(e) => match MESSAGE.with(|m| m.borrow_mut().take()) {
                Some(msg) if generic(&e) => msg,
                _ => e.to_string(),
            },
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        MESSAGE.with(|m| *m.borrow_mut() = outer);
    }
}

/// An error of the wrapped (de)serializer, or a custom one with its message.
#[derive(Debug)]
pub(super) enum Caught<E> {
    Inner(E),
    Custom(String),
}

impl<E: Display> Display for Caught<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caught::Inner(e) => e.fmt(f),
            Caught::Custom(msg) => f.write_str(msg),
        }
    }
}

impl<E: std::error::Error> std::error::Error for Caught<E> {}

impl<E: ser::Error> ser::Error for Caught<E> {
    fn custom<T: Display>(msg: T) -> Self {
        Caught::Custom(msg.to_string())
    }
}

impl<E: de::Error> de::Error for Caught<E> {
    fn custom<T: Display>(msg: T) -> Self {
        Caught::Custom(msg.to_string())
    }
}

fn keep(msg: String) -> String {
    MESSAGE.with(|m| *m.borrow_mut() = Some(msg.clone()));
    msg
}

/// Back to the wrapped error type, keeping a custom message in the per-thread slot.
fn to_ser<E: ser::Error>(e: Caught<E>) -> E {
    match e {
        Caught::Inner(e) => e,
        Caught::Custom(msg) => E::custom(keep(msg)),
    }
}

fn to_de<E: de::Error>(e: Caught<E>) -> E {
    match e {
        Caught::Inner(e) => e,
        Caught::Custom(msg) => E::custom(keep(msg)),
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization

/// A serializer that forwards to `S` with [`Caught`] errors.
pub(super) struct Ser<S>(pub(super) S);

/// A value serialized through [`Ser`] by whatever serializer asks for it.
struct Wrap<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Ser(s)).map_err(to_ser)
    }
}

/// A compound (sequence, tuple, map, struct) of the wrapped serializer.
pub(super) struct Compound<C>(C);

/// `Serializer` methods that pass their arguments to the inner serializer; those that begin a
/// compound (`-> SerializeSeq`, ...) wrap it.
macro_rules! forward_ser {
    ($($name:ident($($arg:ident: $ty:ty),*) $(-> $Compound:ident)?),* $(,)?) => {$(
        forward_ser!(@one $name($($arg: $ty),*) $(-> $Compound)?);
    )*};
    (@one $name:ident($($arg:ident: $ty:ty),*)) => {
        fn $name(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
            self.0.$name($($arg),*).map_err(Caught::Inner)
        }
    };
    (@one $name:ident($($arg:ident: $ty:ty),*) -> $Compound:ident) => {
        fn $name(self, $($arg: $ty),*) -> Result<Self::$Compound, Self::Error> {
            self.0.$name($($arg),*).map(Compound).map_err(Caught::Inner)
        }
    };
}

impl<S: ser::Serializer> ser::Serializer for Ser<S> {
    type Ok = S::Ok;
    type Error = Caught<S::Error>;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward_ser!(
        serialize_bool(v: bool),
        serialize_i8(v: i8),
        serialize_i16(v: i16),
        serialize_i32(v: i32),
        serialize_i64(v: i64),
        serialize_i128(v: i128),
        serialize_u8(v: u8),
        serialize_u16(v: u16),
        serialize_u32(v: u32),
        serialize_u64(v: u64),
        serialize_u128(v: u128),
        serialize_f32(v: f32),
        serialize_f64(v: f64),
        serialize_char(v: char),
        serialize_str(v: &str),
        serialize_bytes(v: &[u8]),
        serialize_unit_struct(name: &'static str),
        serialize_none(),
        serialize_unit(),
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str),
        serialize_seq(len: Option<usize>) -> SerializeSeq,
        serialize_tuple(len: usize) -> SerializeTuple,
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct,
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeTupleVariant,
        serialize_map(len: Option<usize>) -> SerializeMap,
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct,
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize)
            -> SerializeStructVariant,
    );

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_some(&Wrap(v)).map_err(Caught::Inner)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_newtype_struct(name, &Wrap(v)).map_err(Caught::Inner)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_newtype_variant(name, index, variant, &Wrap(v)).map_err(Caught::Inner)
    }
    fn collect_str<T: Display + ?Sized>(self, v: &T) -> Result<Self::Ok, Self::Error> {
        self.0.collect_str(v).map_err(Caught::Inner)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = Caught<C::Error>;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
                self.0.$method(&Wrap(v)).map_err(Caught::Inner)
            }
            fn end(self) -> Result<C::Ok, Self::Error> {
                self.0.end().map_err(Caught::Inner)
            }
        }
    };
    ($trait:ident, $method:ident, field) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = Caught<C::Error>;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Self::Error> {
                self.0.$method(key, &Wrap(v)).map_err(Caught::Inner)
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), Self::Error> {
                self.0.skip_field(key).map_err(Caught::Inner)
            }
            fn end(self) -> Result<C::Ok, Self::Error> {
                self.0.end().map_err(Caught::Inner)
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, field);
compound!(SerializeStructVariant, serialize_field, field);

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = Caught<C::Error>;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.0.serialize_key(&Wrap(key)).map_err(Caught::Inner)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        self.0.serialize_value(&Wrap(v)).map_err(Caught::Inner)
    }
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        v: &V,
    ) -> Result<(), Self::Error> {
        self.0.serialize_entry(&Wrap(key), &Wrap(v)).map_err(Caught::Inner)
    }
    fn end(self) -> Result<C::Ok, Self::Error> {
        self.0.end().map_err(Caught::Inner)
    }
}

// ---------------------------------------------------------------------------------------------
// Deserialization

/// A deserializer that forwards to `D` with [`Caught`] errors.
pub(super) struct De<D>(pub(super) D);

/// The caller's visitor, given [`De`]-wrapped access to whatever it visits.
struct Vis<V>(V);

/// The caller's seed, run on a [`De`]-wrapped deserializer.
struct Seed<T>(T);

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T::Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(De(d)).map_err(to_de)
    }
}

/// `Deserializer` methods that pass their arguments (those in parentheses, then the visitor,
/// wrapped) to the inner deserializer.
macro_rules! forward_de {
    ($($name:ident $(($($arg:ident: $ty:ty),*))?),* $(,)?) => {$(
        fn $name<V: Visitor<'de>>(self, $($($arg: $ty,)*)? visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$name($($($arg,)*)? Vis(visitor)).map_err(Caught::Inner)
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for De<D> {
    type Error = Caught<D::Error>;

    forward_de!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
    );

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($name:ident($ty:ty)),* $(,)?) => {$(
        fn $name<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$name::<Caught<E>>(v).map_err(to_de)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none::<Caught<E>>().map_err(to_de)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit::<Caught<E>>().map_err(to_de)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(De(d)).map_err(to_de)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(De(d)).map_err(to_de)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(Access(a)).map_err(to_de)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Access(a)).map_err(to_de)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(Access(a)).map_err(to_de)
    }
}

/// Sequence, map, enum and variant access of the wrapped deserializer.
struct Access<A>(A);

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = Caught<A::Error>;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next_element_seed(Seed(seed)).map_err(Caught::Inner)
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = Caught<A::Error>;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        self.0.next_key_seed(Seed(seed)).map_err(Caught::Inner)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.0.next_value_seed(Seed(seed)).map_err(Caught::Inner)
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = Caught<A::Error>;
    type Variant = Access<A::Variant>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        self.0.variant_seed(Seed(seed)).map(|(v, rest)| (v, Access(rest))).map_err(Caught::Inner)
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = Caught<A::Error>;
    fn unit_variant(self) -> Result<(), Self::Error> {
        self.0.unit_variant().map_err(Caught::Inner)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        self.0.newtype_variant_seed(Seed(seed)).map_err(Caught::Inner)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.tuple_variant(len, Vis(visitor)).map_err(Caught::Inner)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.struct_variant(fields, Vis(visitor)).map_err(Caught::Inner)
    }
}
