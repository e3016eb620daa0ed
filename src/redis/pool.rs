//! The client side of a broker pool.

/// Options for a broker pool.
#[derive(Debug, Default)]
pub struct PoolBuilder {}
