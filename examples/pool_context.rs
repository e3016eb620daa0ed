//! Example 8 of the tutorial: a pool used as a context manager.
//!
//! Python:
//! ```python
//! def fun(x):
//!     return x * x
//! with Pool(5) as p:
//!     print(p.map(fun, [1, 2, 3]))
//! ```
//! Prints `[1, 4, 9]`. Leaving the `with` block terminates the pool; in Rust the pool is
//! terminated when it is dropped at the end of the block.

use multiproc::Pool;

fn fun(x: u64) -> u64 {
    x * x
}

pub fn main() -> multiproc::Result<()> {
    {
        let p = Pool::new(5)?;
        println!("{:?}", p.map(fun, [1, 2, 3]).get()?);
    }
    Ok(())
}
