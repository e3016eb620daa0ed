//! `list`: [`ListProxy<T>`] and the server's list (Python's `ListProxy` over a `list`).

use super::protocol::{self, decode, encode_into, push_varint, RemoteError, RemoteErrorKind};
use super::proxy::{decode_reply, BaseProxy};
use super::registry::{Builtin, Call, Reply, Served};
use super::wire_bytes::{encode_one, encode_seq, Bytes};
use crate::error::Result;
use crate::sync::lock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

struct ListState {
    items: Vec<Box<[u8]>>,
    /// Bumped by every change; lets `sort` replace the contents only if nothing changed.
    version: u64,
}

/// The server side: the encodings of the items, in order.
pub(crate) struct ServedList {
    state: Mutex<ListState>,
}

fn index_error(what: &str) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Index, what.to_string())
}

impl ServedList {
    pub(crate) fn create(args: &[u8]) -> std::result::Result<Arc<dyn Served>, RemoteError> {
        let items: Vec<&[u8]> = decode(args)?;
        let items = items.into_iter().map(Box::from).collect();
        Ok(Arc::new(ServedList { state: Mutex::new(ListState { items, version: 0 }) }))
    }
}

/// Writes items as postcard writes a `Vec<T>`: the count, then each encoding.
pub(crate) fn write_seq<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a [u8]>) {
    push_varint(out, items.len() as u64);
    for i in items {
        out.extend_from_slice(i);
    }
}

methods! {
    enum ListMethod for ServedList as "list" {
        append, len, get, set, slice, extend, insert, pop, delete, remove, index, count, contains, reverse,
        clear, snapshot, replace_if,
    }
}

impl Builtin<ListMethod> for ServedList {
    fn serve(&self, method: ListMethod, Call { args, out, .. }: Call<'_, '_>) -> Reply {
        let mut st = lock(&self.state);
        let len = st.items.len();
        let mutated = match method {
            ListMethod::append => {
                st.items.push(args.into());
                true
            }
            ListMethod::len => {
                encode_into(&(len as u64), out)?;
                false
            }
            ListMethod::get => {
                let i: u64 = decode(args)?;
                let item = st.items.get(i as usize).ok_or_else(|| index_error("list index out of range"))?;
                out.extend_from_slice(item);
                false
            }
            ListMethod::set => {
                let (i, item): (u64, &[u8]) = decode(args)?;
                let slot = st
                    .items
                    .get_mut(i as usize)
                    .ok_or_else(|| index_error("list assignment index out of range"))?;
                *slot = item.into();
                true
            }
            ListMethod::slice => {
                let (start, end): (u64, u64) = decode(args)?;
                let end = (end as usize).min(len);
                let start = (start as usize).min(end);
                write_seq(out, st.items[start..end].iter().map(|b| &**b));
                false
            }
            ListMethod::extend => {
                let items: Vec<&[u8]> = decode(args)?;
                st.items.extend(items.into_iter().map(Box::from));
                true
            }
            ListMethod::insert => {
                let (i, item): (u64, &[u8]) = decode(args)?;
                st.items.insert((i as usize).min(len), item.into());
                true
            }
            ListMethod::pop => {
                let i: Option<u64> = decode(args)?;
                if len == 0 {
                    return Err(index_error("pop from empty list"));
                }
                let i = i.map_or(len - 1, |i| i as usize);
                if i >= len {
                    return Err(index_error("pop index out of range"));
                }
                out.extend_from_slice(&st.items.remove(i));
                true
            }
            ListMethod::delete => {
                let i: u64 = decode(args)?;
                if i as usize >= len {
                    return Err(index_error("list assignment index out of range"));
                }
                st.items.remove(i as usize);
                true
            }
            ListMethod::remove => {
                let at = st.items.iter().position(|x| **x == *args);
                let at = at.ok_or_else(|| {
                    RemoteError::new(RemoteErrorKind::Value, "list.remove(x): x not in list")
                })?;
                st.items.remove(at);
                true
            }
            ListMethod::index => {
                let at = st.items.iter().position(|x| **x == *args);
                let at = at.ok_or_else(|| RemoteError::new(RemoteErrorKind::Value, "x is not in list"))?;
                encode_into(&(at as u64), out)?;
                false
            }
            ListMethod::count => {
                encode_into(&(st.items.iter().filter(|x| ***x == *args).count() as u64), out)?;
                false
            }
            ListMethod::contains => {
                encode_into(&st.items.iter().any(|x| **x == *args), out)?;
                false
            }
            ListMethod::reverse => {
                st.items.reverse();
                true
            }
            ListMethod::clear => {
                st.items.clear();
                true
            }
            ListMethod::snapshot => {
                encode_into(&st.version, out)?;
                write_seq(out, st.items.iter().map(|b| &**b));
                false
            }
            ListMethod::replace_if => {
                let (version, items): (u64, Vec<&[u8]>) = decode(args)?;
                let ok = version == st.version;
                if ok {
                    st.items = items.into_iter().map(Box::from).collect();
                }
                encode_into(&ok, out)?;
                ok
            }
        };
        if mutated {
            st.version += 1;
        }
        Ok(())
    }
}

/// A proxy to a list in a manager's server (Python's `ListProxy`, from `manager.list()`).
///
/// Every method is one round trip to the server and acts on the one shared list, so processes
/// holding proxies to it see each other's changes at once. Items travel and are stored
/// encoded; [`index`](Self::index), [`count`](Self::count), [`remove`](Self::remove) and
/// [`contains`](Self::contains) compare encodings, which is `==` for integers, strings, and
/// structs, enums, tuples and vectors of them (floats compare bit for bit).
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list((0..10).map(|i| i * i))?;
/// assert_eq!(l.to_string(), "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
/// assert!(format!("{l:?}").starts_with("<ListProxy object, typeid 'list' at 0x"));
/// assert_eq!(l.get(4)?, 16);
/// assert_eq!(l.slice(2..5)?, vec![4, 9, 16]);
/// l.append(100)?;
/// assert_eq!(l.len()?, 11);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ListProxy<T> {
    base: BaseProxy,
    _t: PhantomData<fn(T) -> T>,
}

pub(crate) fn range_to(range: impl RangeBounds<usize>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s as u64,
        Bound::Excluded(&s) => s as u64 + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e as u64 + 1,
        Bound::Excluded(&e) => e as u64,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn call<A: Serialize, R: DeserializeOwned>(&self, method: ListMethod, args: &A) -> Result<R> {
        self.base.call(method.name(), args)
    }

    fn call_item<R: DeserializeOwned>(&self, method: ListMethod, item: &T) -> Result<R> {
        self.base.call_encoded(method.name(), item, decode_reply)
    }

    /// The number of items (Python's `len(l)`).
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize> {
        self.call::<_, u64>(ListMethod::len, &()).map(|n| n as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index` (Python's `l[index]`); an `Index` error past the end.
    #[doc(alias = "__getitem__")]
    pub fn get(&self, index: usize) -> Result<T> {
        self.call(ListMethod::get, &(index as u64))
    }

    /// Replaces the item at `index` (Python's `l[index] = item`).
    #[doc(alias = "__setitem__")]
    pub fn set(&self, index: usize, item: impl Borrow<T>) -> Result<()> {
        let bytes = encode_one(item.borrow())?;
        self.call(ListMethod::set, &(index as u64, Bytes(&bytes)))
    }

    /// The items in `range`, clamped to the list as Python's slices are (Python's `l[a:b]`).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>> {
        self.call(ListMethod::slice, &range_to(range))
    }

    /// A copy of the whole list (Python's `l[:]` or `list(l)`).
    #[doc(alias = "copy")]
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.slice(..)
    }

    /// Adds an item at the end (Python's `append`).
    pub fn append(&self, item: impl Borrow<T>) -> Result<()> {
        self.call_item(ListMethod::append, item.borrow())
    }

    /// Adds every item of `items` at the end, in one call (Python's `extend`).
    pub fn extend<I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.base.call_raw(ListMethod::extend.name(), &encode_seq(items)?, decode_reply)
    }

    /// Inserts an item before `index` (at the end if `index` is past it; Python's `insert`).
    pub fn insert(&self, index: usize, item: impl Borrow<T>) -> Result<()> {
        let bytes = encode_one(item.borrow())?;
        self.call(ListMethod::insert, &(index as u64, Bytes(&bytes)))
    }

    /// Removes and returns the last item (Python's `pop()`); an `Index` error when empty.
    pub fn pop(&self) -> Result<T> {
        self.call(ListMethod::pop, &None::<u64>)
    }

    /// Removes and returns the item at `index` (Python's `pop(index)`).
    pub fn pop_at(&self, index: usize) -> Result<T> {
        self.call(ListMethod::pop, &Some(index as u64))
    }

    /// Removes the item at `index` (Python's `del l[index]`).
    #[doc(alias = "__delitem__")]
    pub fn delete(&self, index: usize) -> Result<()> {
        self.call(ListMethod::delete, &(index as u64))
    }

    /// Removes the first item equal to `item` (Python's `remove`); a `Value` error if none is.
    pub fn remove(&self, item: impl Borrow<T>) -> Result<()> {
        self.call_item(ListMethod::remove, item.borrow())
    }

    /// The position of the first item equal to `item` (Python's `index`); a `Value` error if
    /// none is.
    pub fn index(&self, item: impl Borrow<T>) -> Result<usize> {
        self.call_item::<u64>(ListMethod::index, item.borrow()).map(|i| i as usize)
    }

    /// How many items equal `item` (Python's `count`).
    pub fn count(&self, item: impl Borrow<T>) -> Result<usize> {
        self.call_item::<u64>(ListMethod::count, item.borrow()).map(|i| i as usize)
    }

    /// Whether some item equals `item` (Python's `item in l`).
    #[doc(alias = "__contains__")]
    pub fn contains(&self, item: impl Borrow<T>) -> Result<bool> {
        self.call_item(ListMethod::contains, item.borrow())
    }

    /// Reverses the list in place (Python's `reverse`).
    pub fn reverse(&self) -> Result<()> {
        self.call(ListMethod::reverse, &())
    }

    /// Removes every item (Python's `clear`).
    pub fn clear(&self) -> Result<()> {
        self.call(ListMethod::clear, &())
    }

    /// Sorts the list by `T`'s order (Python's `sort`), stably and atomically: the items are
    /// sorted here and written back only if no other client changed the list meanwhile
    /// (otherwise it tries again).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_with(|items| items.sort())
    }

    /// Sorts the list by a key of each item (Python's `sort(key=...)`), stably; for Python's
    /// `reverse=True`, wrap the key in `std::cmp::Reverse`.
    pub fn sort_by_key<K: Ord>(&self, mut key: impl FnMut(&T) -> K) -> Result<()> {
        self.sort_with(|items| items.sort_by_key(&mut key))
    }

    fn sort_with(&self, mut sort: impl FnMut(&mut Vec<T>)) -> Result<()> {
        loop {
            let (version, mut items): (u64, Vec<T>) = self.call(ListMethod::snapshot, &())?;
            sort(&mut items);
            let mut args = Vec::new();
            protocol::encode_value(&version, &mut args)?;
            args.extend_from_slice(&encode_seq::<T, _>(items.iter())?);
            if self.base.call_raw(ListMethod::replace_if.name(), &args, decode_reply::<bool>)? {
                return Ok(());
            }
        }
    }
}

proxy_impls!(ListProxy<T>, "ListProxy", "list");

impl<T: Serialize + DeserializeOwned + fmt::Debug> fmt::Display for ListProxy<T> {
    /// The list's contents, as Python's `str(l)` prints them: `[0, 1, 4]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_vec() {
            Ok(v) => write!(f, "{v:?}"),
            Err(e) => write!(f, "<ListProxy: {e}>"),
        }
    }
}
