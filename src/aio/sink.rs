//! `futures_sink::Sink` adapters (feature `tokio`): messages sent into a connection, items put
//! into a queue.
//!
//! Both hold at most one item that could not go at once, and send it from `poll_ready`,
//! `poll_flush` and `poll_close`; an item goes out as soon as it can, inside `start_send`
//! when there is room then. So `SinkExt::send` and `feed` lose nothing when dropped: an item
//! they had handed over waits in the sink, and the sink's next call sends it.

use crate::error::Result;
use crate::queue::{PutError, TryPutError};
use crate::{Connection, Queue};
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A waker that does nothing: for the first poll of a send made inside `start_send`, which
/// has no context (the next `poll_*` polls again with the caller's).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn noop_waker() -> Waker {
    Waker::from(Arc::new(Noop))
}

/// Messages sent into a [`Connection`] as a `futures_sink::Sink` ([`Connection::sink`]): each
/// item is one [`send_async`](Connection::send_async).
///
/// # Cancel safety
///
/// - `poll_ready`, `poll_flush`: drive the send of the item handed over last (if it has not
///   gone yet) and are ready once it went; a caller that stops polling them loses nothing: the
///   item stays in the sink.
/// - `start_send`: encodes the item (an encoding error is returned here) and sends it now if
///   the pipe has room; otherwise the item waits in the sink for the next `poll_*`. It never
///   waits.
/// - `poll_close`: `poll_flush`; the connection stays open ([`Connection::close`] closes it).
/// - Dropping the sink while an item still waits in it makes one last attempt without waiting
///   (a socket-sized message whose write had begun is finished, as `send_async` does), then
///   drops the item: flush before dropping the sink to be sure of it.
///
/// ```
/// use multiproc::{Pipe, Sink, Stream};
/// use std::future::poll_fn;
/// use std::pin::pin;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let (a, b) = Pipe::duplex()?;
/// let mut sink = pin!(a.sink::<String>());
/// for word in ["one", "two"] {
///     poll_fn(|cx| sink.as_mut().poll_ready(cx)).await?;
///     sink.as_mut().start_send(word.to_string())?;
/// }
/// poll_fn(|cx| sink.as_mut().poll_flush(cx)).await?;
/// let mut words = pin!(b.messages::<String>());
/// assert_eq!(poll_fn(|cx| words.as_mut().poll_next(cx)).await.unwrap()?, "one");
/// assert_eq!(poll_fn(|cx| words.as_mut().poll_next(cx)).await.unwrap()?, "two");
/// # Ok::<(), multiproc::Error>(())
/// # }).unwrap();
/// ```
///
/// With the `futures` crate, `SinkExt::send`, `send_all` and `StreamExt::forward` do the
/// polling: `stream.forward(conn.sink())`.
pub struct MessageSink<'a, T> {
    conn: &'a Connection,
    pending: Option<BoxFuture<'a, Result<()>>>,
    waker: Waker,
    _item: PhantomData<fn(T)>,
}

impl Connection {
    /// A `futures_sink::Sink` of `T` sending into this end (see [`MessageSink`] for what each
    /// method waits for and what dropping it does).
    pub fn sink<T: Serialize + Send>(&self) -> MessageSink<'_, T> {
        MessageSink { conn: self, pending: None, waker: noop_waker(), _item: PhantomData }
    }
}

impl<T> MessageSink<'_, T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(send) = self.pending.as_mut() else { return Poll::Ready(Ok(())) };
        let r = std::task::ready!(send.as_mut().poll(cx));
        self.pending = None;
        Poll::Ready(r)
    }
}

impl<T> Unpin for MessageSink<'_, T> {}

impl<'a, T: Serialize + Send + 'a> Sink<T> for MessageSink<'a, T> {
    type Error = crate::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<()> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return Err(crate::Error::invalid("start_send before poll_ready said the sink was ready"));
        }
        let conn = this.conn;
        let (msg, fds) = conn.encode_message(&item)?;
        // The item owns the descriptors the message carries: it goes with the send.
        let mut send: BoxFuture<'a, Result<()>> = Box::pin(async move {
            let r = conn.send_encoded_async(msg, fds).await;
            drop(item);
            r
        });
        match send.as_mut().poll(&mut Context::from_waker(&this.waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                this.pending = Some(send);
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
}

impl<T> Drop for MessageSink<'_, T> {
    fn drop(&mut self) {
        if let Some(mut send) = self.pending.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = send.as_mut().poll(&mut Context::from_waker(&self.waker));
            }
        }
    }
}

/// Items put into a [`Queue`] as a `futures_sink::Sink` ([`Queue::sink`]): each item is one
/// [`put_async`](Queue::put_async), waiting for room in a bounded queue. Its error is the
/// queue's [`PutError`] (that of a put that waits, so never "full"), which hands the item back.
///
/// # Cancel safety
///
/// - `start_send`: puts the item now if the queue has room (an unbounded queue always does);
///   otherwise it waits in the sink for the next `poll_*`. It never waits.
/// - `poll_ready`, `poll_flush`: put the waiting item once there is room and are ready then; a
///   caller that stops polling them loses nothing: the item stays in the sink.
/// - `poll_close`: `poll_flush`; the queue stays open ([`Queue::close`] closes this handle).
/// - Dropping the sink while an item still waits in it makes one last `put_nowait`, then drops
///   the item if the queue is still full: flush before dropping the sink to be sure of it.
///
/// ```
/// use multiproc::{Queue, Sink};
/// use std::future::poll_fn;
/// use std::pin::pin;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let q: Queue<u32> = Queue::with_maxsize(1)?;
/// let mut sink = pin!(q.sink());
/// poll_fn(|cx| sink.as_mut().poll_ready(cx)).await.unwrap();
/// sink.as_mut().start_send(1).unwrap();
/// poll_fn(|cx| sink.as_mut().poll_ready(cx)).await.unwrap();
/// sink.as_mut().start_send(2).unwrap(); // full: waits in the sink
/// assert_eq!(q.get()?, 1);
/// poll_fn(|cx| sink.as_mut().poll_flush(cx)).await.unwrap(); // room now: put
/// assert_eq!(q.get()?, 2);
/// # Ok::<(), multiproc::Error>(())
/// # }).unwrap();
/// ```
pub struct ItemSink<'a, T: Serialize + DeserializeOwned> {
    queue: &'a Queue<T>,
    pending: Option<T>,
    room: Option<BoxFuture<'a, ()>>,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A `futures_sink::Sink` putting into this queue (see [`ItemSink`] for what each method
    /// waits for and what dropping it does).
    pub fn sink(&self) -> ItemSink<'_, T> {
        ItemSink { queue: self, pending: None, room: None }
    }
}

impl<T: Serialize + DeserializeOwned> Unpin for ItemSink<'_, T> {}

impl<'a, T: Serialize + DeserializeOwned + 'a> ItemSink<'a, T> {
    fn poll_put(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), PutError<T>>> {
        loop {
            let Some(item) = self.pending.take() else { return Poll::Ready(Ok(())) };
            match self.queue.put_nowait(item).map_err(TryPutError::full_or) {
                Ok(()) => {
                    self.room = None;
                    return Poll::Ready(Ok(()));
                }
                Err(Ok(item)) => {
                    self.pending = Some(item);
                    let queue = self.queue;
                    let room = self.room.get_or_insert_with(|| Box::pin(queue.room_async()));
                    std::task::ready!(room.as_mut().poll(cx));
                    self.room = None;
                }
                Err(Err(e)) => {
                    self.room = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<'a, T: Serialize + DeserializeOwned + 'a> Sink<T> for ItemSink<'a, T> {
    type Error = PutError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::result::Result<(), PutError<T>>> {
        self.get_mut().poll_put(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> std::result::Result<(), PutError<T>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            let msg = "start_send before poll_ready said the sink was ready".to_string();
            return Err(PutError::Encode(item, msg));
        }
        match this.queue.put_nowait(item).map_err(TryPutError::full_or) {
            Ok(()) => Ok(()),
            Err(Ok(item)) => {
                this.pending = Some(item);
                Ok(())
            }
            Err(Err(e)) => Err(e),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::result::Result<(), PutError<T>>> {
        self.get_mut().poll_put(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::result::Result<(), PutError<T>>> {
        self.get_mut().poll_put(cx)
    }
}

impl<T: Serialize + DeserializeOwned> Drop for ItemSink<'_, T> {
    fn drop(&mut self) {
        self.room = None;
        if let Some(item) = self.pending.take() {
            if self.queue.put_nowait(item).is_err() {
                log::debug!("a queue sink dropped with an item the full queue had no room for");
            }
        }
    }
}
