//! [`Pool::map_with`]: a map whose function carries a serde context.

use super::Pool;
use crate::error::Result;
use crate::target::{self, ContextTarget};
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Pool {
    /// Calls `f(&ctx, item)` on every item and returns the values in input order: a
    /// [`map`](Self::map) whose function has state (rayon's `map_with`; Python's
    /// `pool.map(functools.partial(f, ctx), items)`).
    ///
    /// The context is sent **once per chunk**, with the chunk's items, and decoded once per chunk
    /// in the worker, which calls `f` on each item with it. Python pickles a `partial` per task
    /// (chunk size 1 here); once per worker would need workers to keep state between tasks,
    /// which a worker replaced after a crash or after `maxtasksperchild` does not have, and a
    /// task would no longer be self-contained. Per chunk keeps each task whole and costs one
    /// context per chunk (Python's default chunk size: about four chunks per worker). A change
    /// `f` makes through interior mutability stays in its chunk's copy.
    ///
    /// ```
    /// use multiproc::Pool;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Config {
    ///     offset: u64,
    ///     scale: u64,
    /// }
    ///
    /// let pool = Pool::new(2)?;
    /// let cfg = Config { offset: 1, scale: 10 };
    /// let out = pool.map_with(cfg, |c: &Config, x: u64| (x + c.offset) * c.scale, 0..5)?;
    /// assert_eq!(out, vec![10, 20, 30, 40, 50]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// A closure that captures its configuration is refused at compile time; `map_with` is the
    /// way to pass it:
    ///
    /// ```compile_fail
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let k = 3u64;
    /// let _ = pool.map_with(2u64, move |c: &u64, x: u64| x * c * k, 0..5);
    /// ```
    pub fn map_with<F, C, T, I>(&self, ctx: C, f: F, iterable: I) -> Result<Vec<F::Output>>
    where
        F: ContextTarget<C, (T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: Serialize + DeserializeOwned + Clone + 'static,
        T: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
    {
        let items: Vec<T> = iterable.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.processes());
        self.map_with_items(ctx, f, items, chunksize)
    }

    /// [`map_with`](Self::map_with) with chunks of `chunksize` items (one context per
    /// `chunksize` items; 0 is taken as 1).
    pub fn map_with_chunked<F, C, T, I>(
        &self,
        ctx: C,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<Vec<F::Output>>
    where
        F: ContextTarget<C, (T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: Serialize + DeserializeOwned + Clone + 'static,
        T: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
    {
        self.map_with_items(ctx, f, iterable.into_iter().collect(), chunksize.max(1))
    }

    fn map_with_items<F, C, T>(&self, ctx: C, f: F, items: Vec<T>, chunksize: usize) -> Result<Vec<F::Output>>
    where
        F: ContextTarget<C, (T,)>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        C: Serialize + DeserializeOwned + Clone + 'static,
        T: Serialize + DeserializeOwned + 'static,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = f;
        let total = items.len();
        let mut chunks: Vec<(C, Vec<T>)> = Vec::with_capacity(total.div_ceil(chunksize));
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<T> = items.by_ref().take(chunksize).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push((ctx.clone(), chunk));
        }
        let values = self.starmap_chunked(target::context_chunk::<F, C, T>, chunks, 1)?;
        let mut out = Vec::with_capacity(total);
        out.extend(values.into_iter().flatten());
        Ok(out)
    }
}

/// Python's default `map` chunk size: about four chunks per worker.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(workers.max(1) * 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    #[test]
    fn default_chunksize_is_pythons() {
        // divmod(len, workers * 4), plus one for a remainder
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(16, 4), 1);
        assert_eq!(default_chunksize(17, 4), 2);
        assert_eq!(default_chunksize(0, 4), 1);
    }
}
