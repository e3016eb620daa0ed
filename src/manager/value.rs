//! `Value` and `Array`: [`ValueProxy<T>`] and [`ArrayProxy<T>`] (Python's `manager.Value` and
//! `manager.Array`), one value or a fixed-length sequence kept in the server.

use super::list::write_seq;
use super::protocol::{decode, encode_into, RemoteError, RemoteErrorKind};
use super::proxy::{decode_reply, BaseProxy};
use super::registry::{Builtin, Call, Reply, Served};
use super::wire_bytes::{encode_one, Bytes};
use crate::error::Result;
use crate::sync::lock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

/// The server side of a `Value`: one encoded value.
pub(crate) struct ServedValue {
    value: Mutex<Box<[u8]>>,
}

impl ServedValue {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        Ok(Arc::new(ServedValue { value: Mutex::new(args.into()) }))
    }
}

methods! {
    enum ValueMethod for ServedValue as "Value" { get, set, swap }
}

impl Builtin<ValueMethod> for ServedValue {
    fn serve(&self, method: ValueMethod, Call { args, out, .. }: Call<'_, '_>) -> Reply {
        let mut v = lock(&self.value);
        match method {
            ValueMethod::get => out.extend_from_slice(&v),
            ValueMethod::set => *v = args.into(),
            ValueMethod::swap => {
                out.extend_from_slice(&v);
                *v = args.into();
            }
        }
        Ok(())
    }
}

/// A proxy to one value in a manager's server (Python's `manager.Value(typecode, value)`,
/// whose `.value` is [`get`](Self::get) / [`set`](Self::set)).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let v = manager.value(3.5f64)?;
/// v.set(4.25)?;
/// assert_eq!(v.get()?, 4.25);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ValueProxy<T> {
    base: BaseProxy,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value (Python's `v.value`).
    pub fn get(&self) -> Result<T> {
        self.base.call(ValueMethod::get.name(), &())
    }

    /// Replaces the value (Python's `v.value = x`).
    pub fn set(&self, value: impl Borrow<T>) -> Result<()> {
        self.base.call_raw(ValueMethod::set.name(), &encode_one(value.borrow())?, decode_reply)
    }

    /// Replaces the value and returns the previous one, in one call.
    pub fn swap(&self, value: impl Borrow<T>) -> Result<T> {
        self.base.call_raw(ValueMethod::swap.name(), &encode_one(value.borrow())?, decode_reply)
    }
}

proxy_impls!(ValueProxy<T>, "ValueProxy", "Value");

/// The server side of an `Array`: a fixed number of encoded items.
pub(crate) struct ServedArray {
    items: Mutex<Vec<Box<[u8]>>>,
}

impl ServedArray {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let items: Vec<&[u8]> = decode(args)?;
        Ok(Arc::new(ServedArray { items: Mutex::new(items.into_iter().map(Box::from).collect()) }))
    }
}

methods! {
    enum ArrayMethod for ServedArray as "Array" { len, get, set, slice }
}

impl Builtin<ArrayMethod> for ServedArray {
    fn serve(&self, method: ArrayMethod, Call { args, out, .. }: Call<'_, '_>) -> Reply {
        let mut items = lock(&self.items);
        let out_of_range = || RemoteError::new(RemoteErrorKind::Index, "array index out of range");
        match method {
            ArrayMethod::len => encode_into(&(items.len() as u64), out)?,
            ArrayMethod::get => {
                let i: u64 = decode(args)?;
                out.extend_from_slice(items.get(i as usize).ok_or_else(out_of_range)?);
            }
            ArrayMethod::set => {
                let (i, v): (u64, &[u8]) = decode(args)?;
                *items.get_mut(i as usize).ok_or_else(out_of_range)? = v.into();
            }
            ArrayMethod::slice => {
                let (start, end): (u64, u64) = decode(args)?;
                let end = (end as usize).min(items.len());
                let start = (start as usize).min(end);
                write_seq(out, items[start..end].iter().map(|b| &**b));
            }
        }
        Ok(())
    }
}

/// A proxy to a fixed-length array in a manager's server (Python's `manager.Array(typecode,
/// sequence)` and its `ArrayProxy`).
///
/// ```
/// let manager = multiproc::Manager::start()?;
/// let a = manager.array(vec![0u8; 4])?;
/// a.set(2, 7)?;
/// assert_eq!(a.to_vec()?, vec![0, 0, 7, 0]);
/// assert_eq!(a.len()?, 4);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ArrayProxy<T> {
    base: BaseProxy,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The number of items (Python's `len(a)`).
    pub fn len(&self) -> Result<usize> {
        self.base.call::<_, u64>(ArrayMethod::len.name(), &()).map(|n| n as usize)
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index` (Python's `a[index]`).
    pub fn get(&self, index: usize) -> Result<T> {
        self.base.call(ArrayMethod::get.name(), &(index as u64))
    }

    /// Replaces the item at `index` (Python's `a[index] = x`).
    pub fn set(&self, index: usize, value: impl Borrow<T>) -> Result<()> {
        let v = encode_one(value.borrow())?;
        self.base.call(ArrayMethod::set.name(), &(index as u64, Bytes(&v)))
    }

    /// The items in `range`, clamped to the array (Python's `a[i:j]`).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>> {
        self.base.call(ArrayMethod::slice.name(), &super::list::range_to(range))
    }

    /// All the items (Python's `a[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.slice(..)
    }
}

proxy_impls!(ArrayProxy<T>, "ArrayProxy", "Array");
