//! [`Pool::map_with`]: a map whose function carries a serde context.

use super::call::{entries_of, MapCall, TaskValue};
use super::{protocol, MapResult, Pool};
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
    /// context per chunk (Python's default chunk size, about four chunks per worker, unless
    /// [`chunksize`](MapCall::chunksize) sets it). A change `f` makes through interior
    /// mutability stays in its chunk's copy. As for [`map`](Self::map), `get` waits for the
    /// values and [`submit`](MapCall::submit) gives a [`MapResult`].
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
    /// let out = pool.map_with(cfg, |c: &Config, x: u64| (x + c.offset) * c.scale, 0..5).get()?;
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
    /// let _ = pool.map_with(2u64, move |c: &u64, x: u64| x * c * k, 0..5).get();
    /// ```
    pub fn map_with<F, C, I>(&self, ctx: C, f: F, items: I) -> MapCall<'_, (C, I), MapResult<F::Output>>
    where
        I: IntoIterator<Item: Serialize + DeserializeOwned + 'static>,
        F: ContextTarget<C, (I::Item,), Output: TaskValue>,
        C: Serialize + DeserializeOwned + 'static,
    {
        MapCall::new(self, f, (ctx, items), |pool, (ctx, items), o| {
            let items: Vec<I::Item> = items.into_iter().collect();
            // Each chunk is one call of `context_chunk` on `(ctx, chunk)`, whose value is the
            // `Vec` of the chunk's values, as a chunk of a plain map gives.
            let entry = entries_of(target::context_chunk::<F, C, I::Item>).apply;
            pool.submit_map(&items, o, entry, |id, entry, chunk| {
                protocol::task_frame(id, entry, &(&ctx, chunk))
            })
        })
    }
}
