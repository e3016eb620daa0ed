//! `futures_core::Stream` adapters (feature `tokio`): a connection's messages, a queue's items
//! and a pool's `imap` over an input stream.

use crate::error::Result;
use crate::pool::{AsyncResult, Pool, PoolTarget};
use crate::queue::GetError;
use crate::{Connection, Queue};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The messages of a [`Connection`] as a stream ([`Connection::messages`]): each item is one
/// [`recv_async`](Connection::recv_async); the stream ends at end-of-file.
///
/// Dropping the stream at any point loses no message (`recv_async` is cancel-safe).
pub struct Messages<'a, T> {
    conn: &'a Connection,
    next: Option<BoxFuture<'a, Result<T>>>,
    done: bool,
}

impl Connection {
    /// The messages of this end as a `futures_core::Stream` of `Result<T>`, ending at
    /// end-of-file (the peer closed and nothing is left).
    pub fn messages<T: DeserializeOwned + Send + 'static>(&self) -> Messages<'_, T> {
        Messages { conn: self, next: None, done: false }
    }
}

impl<'a, T: DeserializeOwned + Send + 'static> Stream for Messages<'a, T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let conn = self.conn;
        let next = self.next.get_or_insert_with(|| Box::pin(conn.recv_async::<T>()));
        let r = std::task::ready!(next.as_mut().poll(cx));
        self.next = None;
        match r {
            Err(crate::Error::Eof) => {
                self.done = true;
                Poll::Ready(None)
            }
            r => Poll::Ready(Some(r)),
        }
    }
}

/// The items of a [`Queue`] as a never-ending stream ([`Queue::stream`]); each is one
/// [`get_async`](Queue::get_async). It ends only when this handle is closed.
///
/// Dropping the stream at any point loses no item (`get_async` is cancel-safe).
pub struct Items<'a, T> {
    queue: &'a Queue<T>,
    next: Option<BoxFuture<'a, std::result::Result<T, GetError>>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// The items of this queue as a `futures_core::Stream` of `Result<T, GetError>`.
    pub fn stream(&self) -> Items<'_, T> {
        Items { queue: self, next: None }
    }
}

impl<'a, T: Serialize + DeserializeOwned + Send + 'static> Stream for Items<'a, T> {
    type Item = std::result::Result<T, GetError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let queue = self.queue;
        let next = self.next.get_or_insert_with(|| Box::pin(queue.get_async()));
        let r = std::task::ready!(next.as_mut().poll(cx));
        self.next = None;
        match r {
            Err(GetError::Closed) => Poll::Ready(None),
            r => Poll::Ready(Some(r)),
        }
    }
}

/// A pool's `imap` over an input stream ([`Pool::imap_stream`], [`Pool::imap_unordered_stream`]).
///
/// The input is read lazily: at most `4 x processes + 16` tasks are in flight, and the next
/// input item is taken only when one of them has been yielded. A task that cannot be
/// submitted is yielded as its error at its place.
pub struct ImapStream<'a, F, S: Stream, R> {
    pool: &'a Pool,
    f: F,
    input: Option<Pin<Box<S>>>,
    inflight: VecDeque<AsyncResult<R>>,
    window: usize,
    ordered: bool,
}

impl Pool {
    /// `imap` over a `futures_core::Stream`: results in input order, as a stream.
    pub fn imap_stream<F, S>(&self, f: F, input: S) -> ImapStream<'_, F, S, F::Output>
    where
        F: PoolTarget<(S::Item,)>,
        S: Stream,
    {
        ImapStream::new(self, f, input, true)
    }

    /// As [`imap_stream`](Self::imap_stream), results in completion order.
    pub fn imap_unordered_stream<F, S>(&self, f: F, input: S) -> ImapStream<'_, F, S, F::Output>
    where
        F: PoolTarget<(S::Item,)>,
        S: Stream,
    {
        ImapStream::new(self, f, input, false)
    }
}

impl<'a, F, S: Stream, R> ImapStream<'a, F, S, R> {
    fn new(pool: &'a Pool, f: F, input: S, ordered: bool) -> Self {
        let window = 4 * pool.processes() + 16;
        ImapStream { pool, f, input: Some(Box::pin(input)), inflight: VecDeque::new(), window, ordered }
    }
}

impl<F, S, R> Unpin for ImapStream<'_, F, S, R> where S: Stream {}

impl<'a, F, S> Stream for ImapStream<'a, F, S, F::Output>
where
    F: PoolTarget<(S::Item,)>,
    S: Stream,
{
    type Item = Result<F::Output>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while this.inflight.len() < this.window {
            let Some(input) = this.input.as_mut() else { break };
            match input.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => match this.pool.apply_async(this.f, (item,)) {
                    Ok(r) => this.inflight.push_back(r),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                Poll::Ready(None) => this.input = None,
                Poll::Pending => break,
            }
        }
        if this.ordered {
            if let Some(front) = this.inflight.front_mut() {
                let r = std::task::ready!(Pin::new(front).poll(cx));
                this.inflight.pop_front();
                return Poll::Ready(Some(r));
            }
        } else {
            for i in 0..this.inflight.len() {
                if let Poll::Ready(r) = Pin::new(&mut this.inflight[i]).poll(cx) {
                    this.inflight.remove(i);
                    return Poll::Ready(Some(r));
                }
            }
            if !this.inflight.is_empty() {
                return Poll::Pending;
            }
        }
        if this.input.is_none() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
