//! The shared-memory plumbing under every primitive: [`Region`], an anonymous block (memfd +
//! mapping) that travels between processes as its descriptor, and [`Shared<T>`], a
//! `#[repr(C)]` state structure at an offset in one.
//!
//! Locks, queues, pipe lanes, the pool's result slots and `Value`/`Array` all lay their state
//! over these; nothing here knows about any of them. Descriptors travel as [`FdRef`] /
//! [`FdOwned`] of the wire, the one room below this one besides `sys` and `error`.
//!
//! [`FdRef`]: crate::wire::FdRef
//! [`FdOwned`]: crate::wire::FdOwned

mod cell;
mod region;

pub(crate) use cell::{shared_layout, Shared, SharedLayout};
pub(crate) use region::Region;
