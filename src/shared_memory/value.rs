//! `Value<T>` and `Array<T>`: plain-old-data in shared memory with a lock beside it (Python's
//! `multiprocessing.Value` and `Array`, whose `get_lock()` is that lock), and `RawValue<T>` and
//! `RawArray<T>`, the same memory with no lock (Python's `RawValue` and `RawArray`).
//!
//! Layout of the region: a 32-byte header (magic, element size, length, the lock's state), then
//! the elements. The lock is an [`RLock`], as Python's default for `Value` and `Array`, so the
//! thread holding `get_lock()` reads and writes through `get`/`set` (Python's
//! `with v.get_lock(): v.value += 1`). `get`/`set`/`lock`/`with_lock` hold the lock; if its
//! holder died, they take the lock over, log a warning and go on (the data may be half-updated by
//! the dead process).
//!
//! A guard from `lock` (and `with_lock`, which uses one) hands out `&mut T` into the shared
//! memory. While it lives, the same thread's other accesses to that value (through any handle)
//! would alias that reference, so they panic instead, as a `RefCell` borrowed twice does; the
//! mark is kept in the lock's shared state (see `sync/lock.rs`), and other threads and
//! processes simply wait for the lock.

use crate::error::{Error, Result};
use crate::mem::{shared_layout, Shared, SharedLayout};
use crate::sync::{LockState, RLock, RLockGuard};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// Plain-old-data: types whose every bit pattern written by this crate is valid and that hold
/// no pointers, so they can live in memory shared between processes.
///
/// # Safety
/// Implement only for `Copy` types without pointers, references or padding-dependent invariants,
/// for which all-zero bytes is a valid value.
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive without pointers; all-zero is a valid value.
        unsafe impl Pod for $t {}
    )* };
}
pod!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64, bool, char);
// SAFETY: an array of Pod is Pod.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

// SAFETY: integers and a LockState (itself valid when zero).
shared_layout! {
    magic: b"VAL1", size: 32;
    pub(crate) unsafe struct Header {
        elem_size: u32,
        len: u64,
        lock: LockState,
    }
}

const HEADER: usize = std::mem::size_of::<Header>();
const LOCK_OFFSET: usize = std::mem::offset_of!(Header, lock);

fn create<T: Pod>(len: usize) -> Result<(Shared<Header>, RLock)> {
    const { assert!(std::mem::align_of::<T>() <= 32, "element alignment above 32 bytes") };
    let shared: Shared<Header> = Shared::new(c"mp-value", len.max(1) * std::mem::size_of::<T>())?;
    let lock_state = shared.project::<LockState>(LOCK_OFFSET);
    // SAFETY: the magic word of the embedded lock is its first u32, inside the header.
    unsafe { (shared.tail_ptr().sub(HEADER - LOCK_OFFSET) as *mut u32).write(LockState::MAGIC) };
    let header = shared.as_mut_ptr();
    // SAFETY: fresh region, no other handle yet: plain writes race with nothing.
    unsafe {
        (*header).elem_size = std::mem::size_of::<T>() as u32;
        (*header).len = len as u64;
    }
    Ok((shared, RLock::from_state(lock_state)))
}

fn attach<T: Pod, E: serde::de::Error>(
    shared: Shared<Header>,
) -> std::result::Result<(Shared<Header>, RLock), E> {
    let h = shared.get();
    let need = (h.len as usize).max(1).checked_mul(std::mem::size_of::<T>());
    if h.elem_size as usize != std::mem::size_of::<T>() || need.is_none_or(|n| n > shared.tail_len()) {
        return Err(E::custom("shared value has another element type or size than expected"));
    }
    let lock = RLock::from_state(shared.project::<LockState>(LOCK_OFFSET));
    Ok((shared, lock))
}

/// The element count from the header, never more than the mapping holds: the header was
/// checked on arrival, but it lies in memory that other processes can write.
fn elements<T: Pod>(shared: &Shared<Header>) -> usize {
    (shared.get().len as usize).min(shared.tail_len() / std::mem::size_of::<T>().max(1))
}

#[inline]
fn locked(lock: &RLock) -> RLockGuard<'_> {
    lock.acquire().unwrap_or_else(|died| {
        log::warn!("multiproc: {died}; the shared value may be inconsistent");
        died.into_inner()
    })
}

const BORROWED: &str = "a shared Value or Array was accessed by the thread that holds a guard on it \
     (from `lock()` or inside `with_lock`); go through the guard";

/// The lock held for one access by value: refused while this thread has lent the data out.
#[inline]
fn access(lock: &RLock) -> RLockGuard<'_> {
    let level = locked(lock);
    assert!(!lock.lent(), "{BORROWED}");
    level
}

/// The lock held, and the data lent out by reference until [`Loan`] is dropped.
#[inline]
fn lend(lock: &RLock) -> Loan<'_> {
    let level = locked(lock);
    assert!(lock.lend(), "{BORROWED}");
    Loan { _level: level, lock }
}

/// A lock level whose data is lent out; ends the loan, then releases the level, when dropped.
struct Loan<'a> {
    _level: RLockGuard<'a>,
    lock: &'a RLock,
}

impl Drop for Loan<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.end_loan();
    }
}

/// One `T` in shared memory, with a lock (Python's `multiprocessing.Value`).
///
/// ```
/// use multiproc::{Process, Value};
/// fn add(v: Value<i64>, n: i64) {
///     *v.lock() += n;
/// }
/// let v = Value::new(1i64)?;
/// Process::new(add, (v.clone(), 41)).start()?.join()?;
/// assert_eq!(v.get(), 42);
/// // As in Python, the holder of `get_lock()` reads and writes the value.
/// let _held = v.get_lock().acquire().unwrap();
/// v.set(v.get() + 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Value<T: Pod> {
    shared: Shared<Header>,
    lock: RLock,
    _t: PhantomData<T>,
}

/// Holds a [`Value`]'s lock and gives the value by reference; releases the lock when dropped.
///
/// While it lives, this thread's `get`, `set`, `lock` and `with_lock` on the same value panic
/// (they would alias the reference); use the guard.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    _loan: Loan<'a>,
    /// The lock belongs to this thread: the guard stays on it.
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Value<T> {
    /// A shared value holding `init`.
    pub fn new(init: T) -> Result<Value<T>> {
        let (shared, lock) = create::<T>(1)?;
        let v = Value { shared, lock, _t: PhantomData };
        v.set(init);
        Ok(v)
    }

    fn ptr(&self) -> *mut T {
        self.shared.tail_ptr() as *mut T
    }

    /// The recursive lock that guards the value (Python's `get_lock()`, an `RLock` there too):
    /// the thread holding it may still call [`get`](Self::get) and [`set`](Self::set).
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }

    /// Reads the value under the lock (Python's `v.value`).
    ///
    /// # Panics
    /// On the thread that holds a [`ValueGuard`] on this value.
    pub fn get(&self) -> T {
        let _level = access(&self.lock);
        // SAFETY: the lock gives this thread exclusive access and no reference into the value is
        // lent out; the pointer is in bounds and aligned (header of 32 bytes, element alignment
        // <= 32).
        unsafe { self.ptr().read_volatile() }
    }

    /// Writes the value under the lock (Python's `v.value = x`).
    ///
    /// # Panics
    /// On the thread that holds a [`ValueGuard`] on this value.
    pub fn set(&self, value: T) {
        let _level = access(&self.lock);
        // SAFETY: as in `get`.
        unsafe { self.ptr().write_volatile(value) }
    }

    /// Takes the lock and gives the value by reference until the guard is dropped: a
    /// read-modify-write that other processes cannot interleave with (`*v.lock() += 1`; Python's
    /// `with v.get_lock(): v.value += 1`).
    ///
    /// # Panics
    /// If this thread already holds a guard on this value.
    pub fn lock(&self) -> ValueGuard<'_, T> {
        ValueGuard { value: self, _loan: lend(&self.lock), _not_send: PhantomData }
    }

    /// The same memory without the lock (Python's `get_obj()`): reads and writes through it do
    /// not wait for the lock, and other processes' writes may interleave with them.
    pub fn get_obj(&self) -> RawValue<T> {
        RawValue { shared: self.shared.clone(), _t: PhantomData }
    }

    /// Runs `f` on the value with the lock held (as [`lock`](Self::lock), for a closure).
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock and the loan, so no other thread or process reaches
        // the value through a handle, and this thread's other accesses refuse; in bounds and
        // aligned (see `Value::get`).
        unsafe { &*self.value.ptr() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference the guard lends.
        unsafe { &mut *self.value.ptr() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

/// A fixed-length array of `T` in shared memory, with a lock (Python's `multiprocessing.Array`).
///
/// ```
/// let a = multiproc::Array::from_slice(&[1u32, 2, 3])?;
/// a.set(0, 10)?;
/// assert_eq!(a.to_vec(), vec![10, 2, 3]);
/// a.lock().reverse();
/// assert_eq!(a.get(0), Some(3));
/// {
///     // As in Python, the holder of `get_lock()` reads and writes elements.
///     let _held = a.get_lock().acquire().unwrap();
///     a.set(1, a.get(1).unwrap() + 1)?;
/// }
/// assert_eq!(a.to_vec(), vec![3, 3, 10]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Array<T: Pod> {
    shared: Shared<Header>,
    lock: RLock,
    _t: PhantomData<T>,
}

/// Holds an [`Array`]'s lock and gives its elements as a slice; releases the lock when dropped.
///
/// While it lives, this thread's other accesses to the same array panic (they would alias the
/// slice); use the guard.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _loan: Loan<'a>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Array<T> {
    /// An array holding a copy of `items`.
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let (shared, lock) = create::<T>(items.len())?;
        let a = Array { shared, lock, _t: PhantomData };
        a.lock().copy_from_slice(items);
        Ok(a)
    }

    /// An array of `len` copies of `value`.
    pub fn new(len: usize, value: T) -> Result<Array<T>> {
        Self::from_slice(&vec![value; len])
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        elements::<T>(&self.shared)
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The recursive lock that guards the array (Python's `get_lock()`, an `RLock` there too):
    /// the thread holding it may still call `get`, `set` and `to_vec`.
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }

    fn ptr(&self) -> *mut T {
        self.shared.tail_ptr() as *mut T
    }

    /// Takes the lock and gives the elements as a slice until the guard is dropped.
    ///
    /// # Panics
    /// If this thread already holds a guard on this array.
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        ArrayGuard { array: self, _loan: lend(&self.lock), _not_send: PhantomData }
    }

    /// Runs `f` on the elements with the lock held (as [`lock`](Self::lock), for a closure).
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        f(&mut self.lock())
    }

    /// Element `i`, read under the lock.
    ///
    /// # Panics
    /// On the thread that holds an [`ArrayGuard`] on this array.
    pub fn get(&self, i: usize) -> Option<T> {
        let _level = access(&self.lock);
        // SAFETY: `i < len`, and `len` elements fit after the header, aligned (checked at
        // creation and on arrival); the lock is held and nothing is lent out (see `Value::get`).
        (i < self.len()).then(|| unsafe { self.ptr().add(i).read_volatile() })
    }

    /// Writes element `i` under the lock; an error if `i` is out of range (Python's
    /// `IndexError`).
    ///
    /// # Panics
    /// On the thread that holds an [`ArrayGuard`] on this array.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let _level = access(&self.lock);
        if i >= self.len() {
            return Err(Error::invalid(format!("index {i} out of range for an array of {}", self.len())));
        }
        // SAFETY: as in `get`.
        unsafe { self.ptr().add(i).write_volatile(value) };
        Ok(())
    }

    /// A copy of every element, read under the lock.
    ///
    /// # Panics
    /// On the thread that holds an [`ArrayGuard`] on this array.
    pub fn to_vec(&self) -> Vec<T> {
        let _level = access(&self.lock);
        // SAFETY: as in `get`; every index is below `len`.
        (0..self.len()).map(|i| unsafe { self.ptr().add(i).read_volatile() }).collect()
    }

    /// The same memory without the lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> RawArray<T> {
        RawArray { shared: self.shared.clone(), _t: PhantomData }
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the guard holds the lock and the loan (see `ValueGuard::deref`); `len`
        // elements fit after the header, aligned (checked at creation and on arrival).
        unsafe { std::slice::from_raw_parts(self.array.ptr(), self.array.len()) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice the guard lends.
        unsafe { std::slice::from_raw_parts_mut(self.array.ptr(), self.array.len()) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

/// One `T` in shared memory with no lock (Python's `multiprocessing.RawValue`). Each `get` and
/// `set` is one volatile read or write of the whole value: fast, but a read-modify-write from
/// several processes needs a lock of its own (or [`Value`]), and a `T` wider than a machine
/// word may be seen half-written while another process writes it.
///
/// ```
/// use multiproc::{Process, RawValue};
/// fn publish(v: RawValue<u64>) {
///     v.set(42);
/// }
/// let v = RawValue::new(0u64)?;
/// Process::new(publish, (v.clone(),)).start()?.join()?;
/// assert_eq!(v.get(), 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawValue<T: Pod> {
    shared: Shared<Header>,
    _t: PhantomData<T>,
}

impl<T: Pod> RawValue<T> {
    /// A shared value holding `init`.
    pub fn new(init: T) -> Result<RawValue<T>> {
        let (shared, _) = create::<T>(1)?;
        let v = RawValue { shared, _t: PhantomData };
        v.set(init);
        Ok(v)
    }

    fn ptr(&self) -> *mut T {
        self.shared.tail_ptr() as *mut T
    }

    /// Reads the value (Python's `v.value`).
    pub fn get(&self) -> T {
        // SAFETY: in bounds and aligned (header of 32 bytes, element alignment <= 32, size
        // checked at creation and on arrival); T is Pod, so any bytes another process wrote
        // through this type are a valid T; volatile, because other processes write this memory.
        unsafe { self.ptr().read_volatile() }
    }

    /// Writes the value (Python's `v.value = x`).
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { self.ptr().write_volatile(value) }
    }
}

/// A fixed-length array of `T` in shared memory with no lock (Python's
/// `multiprocessing.RawArray`). Each element access is one volatile read or write; whole-array
/// reads and writes may interleave with other processes' writes.
///
/// ```
/// use multiproc::{Process, RawArray};
/// fn fill(a: RawArray<f64>, from: usize) {
///     for i in from..from + 2 {
///         a.set(i, i as f64 * 0.5).unwrap();
///     }
/// }
/// let a = RawArray::<f64>::zeroed(4)?;
/// let ps: Vec<_> = [0, 2].iter().map(|&k| Process::new(fill, (a.clone(), k)).start()).collect::<Result<_, _>>()?;
/// for p in ps {
///     p.join()?;
/// }
/// assert_eq!(a.to_vec(), vec![0.0, 0.5, 1.0, 1.5]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawArray<T: Pod> {
    shared: Shared<Header>,
    _t: PhantomData<T>,
}

impl<T: Pod> RawArray<T> {
    /// An array of `len` elements whose bytes are all zero (Python's `RawArray(type, n)`).
    pub fn zeroed(len: usize) -> Result<RawArray<T>> {
        let (shared, _) = create::<T>(len)?;
        Ok(RawArray { shared, _t: PhantomData })
    }

    /// An array holding a copy of `items` (Python's `RawArray(type, sequence)`).
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        let a = Self::zeroed(items.len())?;
        a.copy_from_slice(items)?;
        Ok(a)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        elements::<T>(&self.shared)
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ptr(&self) -> *mut T {
        self.shared.tail_ptr() as *mut T
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: `i < len`, and `len` elements fit after the header, aligned (checked at
        // creation and on arrival); volatile and Pod as in `RawValue::get`.
        (i < self.len()).then(|| unsafe { self.ptr().add(i).read_volatile() })
    }

    /// Writes element `i`; an error if `i` is out of range (Python's `IndexError`).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        if i >= self.len() {
            return Err(Error::invalid(format!("index {i} out of range for an array of {}", self.len())));
        }
        // SAFETY: as in `get`.
        unsafe { self.ptr().add(i).write_volatile(value) };
        Ok(())
    }

    /// Overwrites every element from `items`, which must have the array's length (Python's
    /// `a[:] = items`).
    pub fn copy_from_slice(&self, items: &[T]) -> Result<()> {
        if items.len() != self.len() {
            return Err(Error::invalid(format!("{} items for an array of {}", items.len(), self.len())));
        }
        for (i, x) in items.iter().enumerate() {
            // SAFETY: as in `get`; `i < len`.
            unsafe { self.ptr().add(i).write_volatile(*x) };
        }
        Ok(())
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        // SAFETY: as in `get`; every index is below `len`.
        (0..self.len()).map(|i| unsafe { self.ptr().add(i).read_volatile() }).collect()
    }
}

macro_rules! raw_handle_impls {
    ($ty:ident) => {
        impl<T: Pod> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { shared: self.shared.clone(), _t: PhantomData }
            }
        }

        impl<T: Pod> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.shared.serialize(s)
            }
        }

        impl<'de, T: Pod> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let (shared, _) = attach::<T, D::Error>(Shared::deserialize(d)?)?;
                Ok($ty { shared, _t: PhantomData })
            }
        }
    };
}

raw_handle_impls!(RawValue);
raw_handle_impls!(RawArray);

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

macro_rules! handle_impls {
    ($ty:ident) => {
        impl<T: Pod> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { shared: self.shared.clone(), lock: self.lock.clone(), _t: PhantomData }
            }
        }

        impl<T: Pod> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.shared.serialize(s)
            }
        }

        impl<'de, T: Pod> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let (shared, lock) = attach::<T, D::Error>(Shared::deserialize(d)?)?;
                Ok($ty { shared, lock, _t: PhantomData })
            }
        }
    };
}

handle_impls!(Value);
handle_impls!(Array);

/// Whether this thread has the value's data lent out (then `Debug` does not read it).
fn lent_here(lock: &RLock) -> bool {
    lock.count() > 0 && lock.lent()
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if lent_here(&self.lock) {
            return write!(f, "<Synchronized wrapper (held by a guard on this thread)>");
        }
        write!(f, "<Synchronized wrapper for {:?}>", self.get())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if lent_here(&self.lock) {
            return write!(f, "<SynchronizedArray wrapper (held by a guard on this thread)>");
        }
        write!(f, "<SynchronizedArray wrapper for {:?}>", self.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // In-process, here rather than beside the cross-process tests: a panic while another thread
    // of the same harness starts a `Fork` child can leave std's panic-hook lock held in that child.
    #[test]
    fn an_access_that_would_alias_a_guard_panics_and_leaves_the_value_usable() {
        let v = Value::new(5u32).unwrap();
        let other_handle = v.clone();
        for attempt in 0..3 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match attempt {
                0 => v.with_lock(|x| *x + other_handle.get()),
                1 => v.with_lock(|_| *v.lock()),
                _ => {
                    let _g = v.lock();
                    other_handle.set(1);
                    0
                }
            }));
            assert!(r.is_err(), "attempt {attempt}: aliasing access went through");
            assert!(v.get_lock().try_acquire().unwrap().is_some(), "attempt {attempt}: lock usable");
            assert_eq!(v.get_lock().count(), 0, "attempt {attempt}: every level released");
            assert_eq!(v.get(), 5);
            assert!(format!("{v:?}").contains('5'));
        }
        let a = Array::from_slice(&[1u8, 2]).unwrap();
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.with_lock(|_| a.to_vec()))).is_err()
        );
        assert_eq!(a.to_vec(), vec![1, 2]);
        let g = a.lock();
        assert!(format!("{a:?}").contains("guard"), "Debug does not read through a live guard");
        assert!(a.get_lock().release().is_err(), "the guard's level cannot be released from under it");
        drop(g);
        assert_eq!(a.get_lock().count(), 0);
    }
}
