//! Targets with captured state: a [`ContextTarget`] together with its serde context.
//!
//! A target must be zero-sized so the child can make it from nothing (see `target.rs`); what a
//! closure would capture travels instead as a *context*, a serde value encoded with the
//! arguments and handed to the function by reference in the child (Python's
//! `functools.partial`, whose bound arguments are pickled with the target).

use super::entries::ProcessOutput;
use super::{spawn, Context, JoinHandle, Process, ProcessBuilder};
use crate::error::Result;
use crate::target::{self, ContextTarget};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A [`ContextTarget`] bound to its context (Python's `functools.partial(f, ctx)`); made by
/// [`partial`].
///
/// The context is encoded when a process is made from it and decoded in the child, which calls
/// `f(&ctx, args...)`; a change the child makes to its copy stays in the child. The context may
/// hold this crate's handles ([`Queue`](crate::Queue), [`Connection`](crate::Connection), ...),
/// as arguments may.
///
/// ```
/// use multiproc::partial;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Scale {
///     factor: u64,
/// }
///
/// fn scaled(s: &Scale, x: u64) -> u64 {
///     x * s.factor
/// }
///
/// let times3 = partial(scaled, Scale { factor: 3 });
/// assert_eq!(times3.call((5,)), 15); // here, as Python's `p(5)`
/// assert_eq!(times3.spawn((7,))?.join()?, 21); // in a child
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Partial<F, C> {
    f: F,
    ctx: C,
}

/// Binds `ctx` to the target `f` (Python's `functools.partial(f, ctx)`): `f` takes `&C` first
/// and is a fn item or a closure that captures nothing; what it would capture goes in `ctx`.
///
/// A capturing closure is refused at compile time here too:
///
/// ```compile_fail
/// let k = 3u64;
/// let _ = multiproc::partial(move |c: &u64, x: u64| x * c * k, 2u64);
/// ```
pub fn partial<F, C, A>(f: F, ctx: C) -> Partial<F, C>
where
    F: ContextTarget<C, A>,
{
    const { target::assert_zero_sized::<F>() };
    Partial { f, ctx }
}

impl<F, C> Partial<F, C> {
    /// The bound context.
    pub fn context(&self) -> &C {
        &self.ctx
    }

    /// The bound context, taken back.
    pub fn into_context(self) -> C {
        self.ctx
    }

    /// Calls `f(&ctx, args...)` in the current process.
    pub fn call<A>(&self, args: A) -> F::Output
    where
        F: ContextTarget<C, A>,
    {
        self.f.call_with(&self.ctx, args)
    }

    /// A process object that will run `f(&ctx, args...)` (Python's
    /// `Process(target=partial(f, ctx), args=args)`); see [`Process::new`].
    pub fn process<A>(self, args: A) -> Process
    where
        F: ContextTarget<C, A>,
        F::Output: ProcessOutput,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        self.process_builder(args).build()
    }

    /// A [`ProcessBuilder`] for `f(&ctx, args...)`, to set the name, daemon flag or start method
    /// first; see [`Process::builder`].
    pub fn process_builder<A>(self, args: A) -> ProcessBuilder
    where
        F: ContextTarget<C, A>,
        F::Output: ProcessOutput,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::new(target::context_call::<F, C, A>, (self.ctx, args))
    }

    /// Runs `f(&ctx, args...)` in a new child process, as [`spawn`](crate::spawn) does.
    pub fn spawn<A>(self, args: A) -> Result<JoinHandle<F::Output>>
    where
        F: ContextTarget<C, A>,
        F::Output: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        spawn(target::context_call::<F, C, A>, (self.ctx, args))
    }

    /// [`spawn`](Self::spawn) with `context`'s start method (Python's
    /// `get_context(method).Process(target=partial(f, ctx))`), as [`Context::spawn`] does.
    pub fn spawn_in<A>(self, context: &Context, args: A) -> Result<JoinHandle<F::Output>>
    where
        F: ContextTarget<C, A>,
        F::Output: Serialize + DeserializeOwned,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        context.spawn(target::context_call::<F, C, A>, (self.ctx, args))
    }
}

impl<F: Copy, C: Clone> Clone for Partial<F, C> {
    fn clone(&self) -> Self {
        Partial { f: self.f, ctx: self.ctx.clone() }
    }
}

impl<F, C: fmt::Debug> fmt::Debug for Partial<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partial")
            .field("target", &std::any::type_name::<F>())
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl Process {
    /// A process object that will run `target(&ctx, args...)`: a target with state, which a
    /// capturing closure cannot be (the same as `partial(target, ctx).process(args)`, see
    /// [`partial`]). [`ProcessBuilder::with_context`] sets the name, daemon flag or start method
    /// first.
    ///
    /// ```
    /// use multiproc::{Process, Queue};
    ///
    /// fn greet(prefix: &String, name: String, out: Queue<String>) {
    ///     out.put(format!("{prefix} {name}")).unwrap();
    /// }
    ///
    /// let out = Queue::new()?;
    /// let p = Process::with_context(greet, "hello".to_string(), ("bob".to_string(), out.clone()));
    /// p.start()?;
    /// assert_eq!(out.get()?, "hello bob");
    /// assert!(p.join()?.success());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_context<F, C, A>(target: F, ctx: C, args: A) -> Process
    where
        F: ContextTarget<C, A>,
        F::Output: ProcessOutput,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::with_context(target, ctx, args).build()
    }
}

impl ProcessBuilder {
    /// A builder for a process that will run `target(&ctx, args...)`; see
    /// [`Process::with_context`].
    ///
    /// ```
    /// use multiproc::{ProcessBuilder, Queue, StartMethod};
    ///
    /// fn greet(prefix: &String, name: String, out: Queue<String>) {
    ///     out.put(format!("{prefix} {name}")).unwrap();
    /// }
    ///
    /// let out = Queue::new()?;
    /// let p = ProcessBuilder::with_context(greet, "hello".to_string(), ("bob".to_string(), out.clone()))
    ///     .start_method(StartMethod::Spawn)
    ///     .start()?;
    /// assert_eq!(out.get()?, "hello bob");
    /// assert!(p.join()?.success());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_context<F, C, A>(target: F, ctx: C, args: A) -> ProcessBuilder
    where
        F: ContextTarget<C, A>,
        F::Output: ProcessOutput,
        C: Serialize + DeserializeOwned + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        partial(target, ctx).process_builder(args)
    }
}
