//! `Shared<T>`: a `#[repr(C)]` state structure living in a [`Region`], at an offset, that travels
//! between processes with the region's descriptor.

use crate::error::{Error, Result};
use crate::mem::Region;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::CStr;
use std::marker::PhantomData;

/// A state layout that may live in shared memory.
///
/// # Safety
/// `T` must be `#[repr(C)]`, made only of atomics and plain integers, valid when all its bytes
/// are zero, and start with a `u32` magic word equal to [`SharedLayout::MAGIC`] once initialized.
pub(crate) unsafe trait SharedLayout: Sync {
    /// Identifies the layout and its version.
    const MAGIC: u32;
}

/// Declares a state layout for shared memory: a `#[repr(C)]` struct whose first field is the
/// magic word, the four ASCII bytes `magic` (the layout's name and version) read as a big-endian
/// `u32`, implementing [`SharedLayout`] with it, and `size` bytes long (checked at compile time:
/// other processes, other builds included, expect that layout).
///
/// The rest of the trait's contract is the caller's, who writes `unsafe struct` and says in a
/// `// SAFETY:` comment why the fields are atomics and plain integers (or layouts of their own)
/// that are valid when all their bytes are zero.
macro_rules! shared_layout {
    (
        magic: $magic:literal, size: $size:expr;
        $(#[$m:meta])*
        $vis:vis unsafe struct $Name:ident {
            $($(#[$fm:meta])* $field:ident: $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        $vis struct $Name {
            magic: u32,
            $($(#[$fm])* $field: $ty),+
        }

        // SAFETY: `repr(C)` with the `u32` magic word first, as declared here; the caller vouches
        // for the fields (see the macro's documentation).
        unsafe impl $crate::mem::SharedLayout for $Name {
            const MAGIC: u32 = u32::from_be_bytes(*$magic);
        }

        const _: () = assert!(std::mem::size_of::<$Name>() == $size);
    };
}
pub(crate) use shared_layout;

pub(crate) struct Shared<T: SharedLayout> {
    region: Region,
    offset: usize,
    _t: PhantomData<T>,
}

impl<T: SharedLayout> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { region: self.region.clone(), offset: self.offset, _t: PhantomData }
    }
}

impl<T: SharedLayout> Shared<T> {
    /// A new zeroed region holding one `T` (and `extra` bytes after it), magic word set.
    pub(crate) fn new(name: &CStr, extra: usize) -> Result<Shared<T>> {
        let region = Region::new(name, std::mem::size_of::<T>() + extra)?;
        let shared = Shared { region, offset: 0, _t: PhantomData };
        // SAFETY: the region is fresh, page-aligned and at least size_of::<T>() long; no other
        // handle exists yet, so this write races with nothing.
        unsafe { (shared.region.as_ptr() as *mut u32).write(T::MAGIC) };
        Ok(shared)
    }

    /// The `U` at `offset` bytes into the same region (a lock inside a `Value`).
    pub(crate) fn project<U: SharedLayout>(&self, offset: usize) -> Shared<U> {
        assert!(offset + std::mem::size_of::<U>() <= self.region.len());
        assert_eq!((self.offset + offset) % std::mem::align_of::<U>(), 0);
        Shared { region: self.region.clone(), offset: self.offset + offset, _t: PhantomData }
    }

    fn check(self) -> Result<Self> {
        // The offset comes from another process: an end past `usize::MAX` must not wrap around.
        let ok = self.offset.checked_add(std::mem::size_of::<T>()).is_some_and(|end| end <= self.region.len())
            && self.offset % std::mem::align_of::<T>() == 0
            // SAFETY: in bounds and aligned (checked just before).
            && unsafe { (self.region.as_ptr().add(self.offset) as *const u32).read_volatile() } == T::MAGIC;
        if !ok {
            return Err(Error::Decode("shared memory does not hold the expected object".into()));
        }
        Ok(self)
    }

    /// The state as a raw pointer, for the plain writes that set it up before any other handle
    /// exists: a pointer made from [`get`](Self::get)'s shared reference must not be written
    /// through (the fields that are not atomics would be mutated behind a `&T`).
    pub(crate) fn as_mut_ptr(&self) -> *mut T {
        // SAFETY: the offset is in bounds of the mapping (checked at creation and on arrival).
        unsafe { self.region.as_ptr().add(self.offset) as *mut T }
    }

    /// The state.
    pub(crate) fn get(&self) -> &T {
        // SAFETY: the region is mapped for as long as `self` lives, the offset is in bounds and
        // aligned (checked at creation and on arrival), and T is valid in any state its own
        // atomic operations leave it in.
        unsafe { &*(self.region.as_ptr().add(self.offset) as *const T) }
    }

    /// The bytes after the state (`extra` at creation).
    pub(crate) fn tail_ptr(&self) -> *mut u8 {
        // SAFETY: size_of::<T>() bytes past the state are still inside the region.
        unsafe { self.region.as_ptr().add(self.offset + std::mem::size_of::<T>()) }
    }

    /// Bytes available after the state.
    pub(crate) fn tail_len(&self) -> usize {
        self.region.len() - self.offset - std::mem::size_of::<T>()
    }
}

impl<T: SharedLayout> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.region, self.offset as u64).serialize(s)
    }
}

impl<'de, T: SharedLayout> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (region, offset) = <(Region, u64)>::deserialize(d)?;
        Shared { region, offset: offset as usize, _t: PhantomData }.check().map_err(serde::de::Error::custom)
    }
}
