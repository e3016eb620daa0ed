//! Descriptors beside the bytes: the per-thread table that handle (de)serializers use.
//!
//! While [`super::encode`] runs, a handle's `Serialize` impl pushes its descriptor here and
//! writes the index; while [`super::decode`] runs, `Deserialize` takes the descriptor at that
//! index. Scopes nest (a handle may encode another value inside its own impl), each saving and
//! restoring the outer table.

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

const OUTSIDE_SCOPE: &str = "a handle that owns a file descriptor can only be sent through \
     multiproc itself (process arguments, pipes, queues), not with another serializer";

pub(super) struct EncodeScope {
    outer: Option<Vec<RawFd>>,
}

impl EncodeScope {
    pub(super) fn enter() -> Self {
        let outer = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
        EncodeScope { outer }
    }

    pub(super) fn finish(mut self) -> Vec<RawFd> {
        let outer = self.outer.take();
        let mine = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), outer));
        // The outer table is back in place: dropping `self` now would clear it.
        std::mem::forget(self);
        mine.unwrap_or_default()
    }
}

impl Drop for EncodeScope {
    /// An encoding that failed: the outer scope's table (or none) comes back.
    fn drop(&mut self) {
        let outer = self.outer.take();
        OUTGOING.with(|o| *o.borrow_mut() = outer);
    }
}

pub(super) struct DecodeScope {
    outer: Option<Vec<Option<OwnedFd>>>,
}

impl DecodeScope {
    pub(super) fn enter(fds: Vec<OwnedFd>) -> Self {
        let table = fds.into_iter().map(Some).collect();
        let outer = INCOMING.with(|i| i.borrow_mut().replace(table));
        DecodeScope { outer }
    }
}

impl Drop for DecodeScope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        // Unclaimed descriptors are dropped (closed) here.
        INCOMING.with(|i| *i.borrow_mut() = outer);
    }
}

/// Serializes a descriptor as its index in the outgoing table (inside `wire::encode` only).
pub(crate) fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, s: S) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|o| {
        o.borrow_mut().as_mut().map(|table| {
            table.push(fd.as_raw_fd());
            table.len() - 1
        })
    });
    match index {
        Some(i) => s.serialize_u32(i as u32),
        None => Err(S::Error::custom(OUTSIDE_SCOPE)),
    }
}

/// Takes the descriptor whose index comes next in the input (inside `wire::decode` only).
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(d)? as usize;
    INCOMING.with(|i| {
        let mut table = i.borrow_mut();
        let table = table.as_mut().ok_or_else(|| D::Error::custom(OUTSIDE_SCOPE))?;
        let slot = table
            .get_mut(index)
            .ok_or_else(|| D::Error::custom(format!("descriptor index {index} out of range")))?;
        slot.take().ok_or_else(|| D::Error::custom(format!("descriptor index {index} used twice")))
    })
}

/// A descriptor as a serde value (index into the message's descriptor list).
pub(crate) struct FdRef<'a>(pub(crate) BorrowedFd<'a>);

impl serde::Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_fd(self.0, s)
    }
}

/// A received descriptor as a serde value.
pub(crate) struct FdOwned(pub(crate) OwnedFd);

impl<'de> Deserialize<'de> for FdOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_fd(d).map(FdOwned)
    }
}
