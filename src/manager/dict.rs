//! `dict`: [`DictProxy<K, V>`] and the server's dictionary (Python's `DictProxy` over a `dict`).

use super::list::write_seq;
use super::protocol::{decode, encode_into, push_varint, RemoteError};
use super::proxy::{decode_reply, BaseProxy};
use super::registry::{Builtin, Call, Reply, Served};
use super::wire_bytes::{encode_one, encode_pairs, Bytes};
use crate::error::Result;
use crate::sync::lock;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Encoded keys to encoded values, in insertion order (as Python's `dict`).
type EncodedMap = IndexMap<Box<[u8]>, Box<[u8]>>;

/// The server side of a dictionary.
pub(crate) struct ServedDict {
    map: Mutex<EncodedMap>,
}

fn put_option(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
    }
}

impl ServedDict {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let items: Vec<(&[u8], &[u8])> = decode(args)?;
        let map = items.into_iter().map(|(k, v)| (Box::from(k), Box::from(v))).collect();
        Ok(Arc::new(ServedDict { map: Mutex::new(map) }))
    }
}

methods! {
    enum DictMethod for ServedDict as "dict" {
        get, insert, remove, contains, len, keys, values, items, update, setdefault, popitem, clear,
    }
}

impl Builtin<DictMethod> for ServedDict {
    fn serve(&self, method: DictMethod, Call { args, out, .. }: Call<'_, '_>) -> Reply {
        let mut map = lock(&self.map);
        match method {
            DictMethod::get => put_option(out, map.get(args).map(|v| &**v)),
            DictMethod::insert => {
                let (k, v): (&[u8], &[u8]) = decode(args)?;
                let old = map.insert(k.into(), v.into());
                put_option(out, old.as_deref());
            }
            DictMethod::remove => {
                let old = map.shift_remove(args);
                put_option(out, old.as_deref());
            }
            DictMethod::contains => encode_into(&map.contains_key(args), out)?,
            DictMethod::len => encode_into(&(map.len() as u64), out)?,
            DictMethod::keys => write_seq(out, map.keys().map(|k| &**k)),
            DictMethod::values => write_seq(out, map.values().map(|v| &**v)),
            DictMethod::items => {
                push_varint(out, map.len() as u64);
                for (k, v) in map.iter() {
                    out.extend_from_slice(k);
                    out.extend_from_slice(v);
                }
            }
            DictMethod::update => {
                let items: Vec<(&[u8], &[u8])> = decode(args)?;
                for (k, v) in items {
                    map.insert(k.into(), v.into());
                }
            }
            DictMethod::setdefault => {
                let (k, v): (&[u8], &[u8]) = decode(args)?;
                let v = map.entry(k.into()).or_insert_with(|| v.into());
                out.extend_from_slice(v);
            }
            DictMethod::popitem => match map.pop() {
                None => out.push(0),
                Some((k, v)) => {
                    out.push(1);
                    out.extend_from_slice(&k);
                    out.extend_from_slice(&v);
                }
            },
            DictMethod::clear => map.clear(),
        }
        Ok(())
    }
}

/// Marks the key and value types without owning any (and without affecting auto traits).
type KeyValue<K, V> = fn(K, V) -> (K, V);

/// A proxy to a dictionary in a manager's server (Python's `DictProxy`, from `manager.dict()`).
///
/// Keys are compared by their encoding (equal for integers, strings, and structs, enums, tuples
/// and vectors of them). Iteration order is insertion order, as in Python.
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let d = manager.dict::<String, i32>()?;
/// d.insert("a".to_string(), 1)?;
/// d.update([("b".to_string(), 2)])?;
/// assert_eq!(d.get("a".to_string())?, Some(1));
/// assert_eq!(d.to_string(), r#"{"a": 1, "b": 2}"#);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct DictProxy<K, V> {
    base: BaseProxy,
    _t: PhantomData<KeyValue<K, V>>,
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn call_key<R: DeserializeOwned>(&self, method: DictMethod, key: &K) -> Result<R> {
        self.base.call_encoded(method.name(), key, decode_reply)
    }

    fn call_pair<R: DeserializeOwned>(&self, method: DictMethod, key: &K, value: &V) -> Result<R> {
        let (k, v) = (encode_one(key)?, encode_one(value)?);
        self.base.call(method.name(), &(Bytes(&k), Bytes(&v)))
    }

    /// The value of `key`, if present (Python's `d.get(key)`).
    #[doc(alias = "__getitem__")]
    pub fn get(&self, key: impl Borrow<K>) -> Result<Option<V>> {
        self.call_key(DictMethod::get, key.borrow())
    }

    /// Sets `key` to `value`, returning the previous value (Python's `d[key] = value`).
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: impl Borrow<K>, value: impl Borrow<V>) -> Result<Option<V>> {
        self.call_pair(DictMethod::insert, key.borrow(), value.borrow())
    }

    /// Removes `key`, returning its value (Python's `d.pop(key, None)`).
    #[doc(alias = "pop")]
    #[doc(alias = "__delitem__")]
    pub fn remove(&self, key: impl Borrow<K>) -> Result<Option<V>> {
        self.call_key(DictMethod::remove, key.borrow())
    }

    /// Whether `key` is present (Python's `key in d`).
    #[doc(alias = "__contains__")]
    pub fn contains_key(&self, key: impl Borrow<K>) -> Result<bool> {
        self.call_key(DictMethod::contains, key.borrow())
    }

    /// The number of entries (Python's `len(d)`).
    pub fn len(&self) -> Result<usize> {
        self.base.call::<_, u64>(DictMethod::len.name(), &()).map(|n| n as usize)
    }

    /// Whether the dictionary is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order (Python's `list(d.keys())`).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.base.call(DictMethod::keys.name(), &())
    }

    /// The values, in insertion order (Python's `list(d.values())`).
    pub fn values(&self) -> Result<Vec<V>> {
        self.base.call(DictMethod::values.name(), &())
    }

    /// The entries, in insertion order (Python's `list(d.items())` or `d.copy()`).
    #[doc(alias = "copy")]
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.base.call(DictMethod::items.name(), &())
    }

    /// Sets every entry of `items`, in one call (Python's `update`).
    pub fn update<I, KB, VB>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (KB, VB)>,
        KB: Borrow<K>,
        VB: Borrow<V>,
    {
        self.base.call_raw(DictMethod::update.name(), &encode_pairs::<K, V, _, _>(items)?, decode_reply)
    }

    /// The value of `key`, inserting `default` first if it is absent (Python's `setdefault`).
    pub fn setdefault(&self, key: impl Borrow<K>, default: impl Borrow<V>) -> Result<V> {
        self.call_pair(DictMethod::setdefault, key.borrow(), default.borrow())
    }

    /// Removes and returns the last inserted entry (Python's `popitem`), `None` when empty.
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        self.base.call(DictMethod::popitem.name(), &())
    }

    /// Removes every entry (Python's `clear`).
    pub fn clear(&self) -> Result<()> {
        self.base.call(DictMethod::clear.name(), &())
    }
}

proxy_impls!(DictProxy<K, V>, "DictProxy", "dict");

impl<K, V> fmt::Display for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + fmt::Debug,
    V: Serialize + DeserializeOwned + fmt::Debug,
{
    /// The entries as Python's `str(d)` prints them: `{"a": 1, "b": 2}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.items() {
            Ok(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v:?}")?;
                }
                f.write_str("}")
            }
            Err(e) => write!(f, "<DictProxy: {e}>"),
        }
    }
}
