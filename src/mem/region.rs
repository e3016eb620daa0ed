//! `Region`: an anonymous shared-memory block (memfd + mapping) that travels between processes.
//!
//! Queues, locks and `Value`/`Array` lay `#[repr(C)]` structures of atomics over a region. A
//! region serializes as its descriptor; the receiver maps the same memory. The memory lives as
//! long as any process holds the descriptor or a mapping, and nothing is left in `/dev/shm`.

use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{FdOwned, FdRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// A mapped block of shared memory, with the descriptor that shares it. Clones share the
/// mapping.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    inner: Arc<(OwnedFd, sys::Mapping)>,
}

impl Region {
    /// A new zero-filled region of `len` bytes.
    pub(crate) fn new(name: &CStr, len: usize) -> Result<Region> {
        let fd = sys::memfd(name, len).map_err(Error::io("creating shared memory"))?;
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<Region> {
        let len = sys::file_len(fd.as_fd()).map_err(Error::io("sizing shared memory"))?;
        let map = sys::Mapping::new(fd.as_fd(), len).map_err(Error::io("mapping shared memory"))?;
        Ok(Region { inner: Arc::new((fd, map)) })
    }

    /// Start of the block (page-aligned, so any `#[repr(C)]` header fits its alignment).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.inner.1.as_ptr()
    }

    /// Size of the block in bytes.
    pub(crate) fn len(&self) -> usize {
        self.inner.1.len()
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        FdRef(self.inner.0.as_fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let fd = FdOwned::deserialize(d)?;
        Region::map(fd.0).map_err(serde::de::Error::custom)
    }
}
