//! Async forms of the queue's waits (feature `tokio`): the same ring, the same words; a
//! future sleeps through the process-wide waker thread where a blocking call sleeps on the
//! futex.

use super::{recv_handles, GetError, JoinableQueue, PutError, Queue, SimpleQueue, TryPutError};
use crate::sync::aio;
use crate::wire;
use ring::Ring;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use super::ring;

/// Releases the get lock on every path out, a panicking `Deserialize` included.
struct Unlock<'a>(&'a AtomicU32);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        Ring::unlock(self.0);
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the next item, waiting without blocking the thread (the async form of
    /// [`get`](Self::get)). Many futures, in many tasks and processes, may wait on one queue;
    /// each item goes to exactly one of them.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an item is taken only inside the poll that returns it, so a future
    /// dropped at any await point (a `select!` branch that lost, a `timeout` that expired)
    /// has taken nothing, holds no lock and leaves no waiter registered.
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        let s = self.s();
        loop {
            if s.closed.load(SeqCst) {
                return Err(GetError::Closed);
            }
            let lock = s.ring.get_lock_word();
            // The get lock is taken (never held across an await) to read without waiting.
            aio::lock(lock).await;
            let unlock = Unlock(lock);
            let got =
                s.ring.read_locked_now(&mut |seq| recv_handles(s.sockets.1.as_fd(), seq), |bytes, fds| {
                    wire::decode(bytes, fds)
                });
            drop(unlock);
            match got.map_err(|ring::Corrupted(msg)| GetError::Corrupted(msg))? {
                Some(item) => return item.map_err(|e: crate::Error| GetError::Decode(e.to_string())),
                None => {
                    let (seq, waiters) = s.ring.items_words();
                    aio::until(seq, waiters, || s.ring.has_records()).await;
                }
            }
        }
    }

    /// Puts `value`, waiting without blocking the thread while a bounded queue is full (the
    /// async form of [`put`](Self::put); an unbounded queue never waits). As for `put`, its
    /// error is never "full".
    ///
    /// # Cancel safety
    ///
    /// The item is put only inside the poll that returns `Ok`; a future dropped before has put
    /// nothing (the value is dropped with it) and leaves no waiter registered. Where the order
    /// of items matters, await puts one after the other rather than racing them.
    pub async fn put_async(&self, value: T) -> std::result::Result<(), PutError<T>> {
        let s = self.s();
        let mut value = value;
        loop {
            match self.put_nowait(value).map_err(TryPutError::full_or) {
                Ok(()) => return Ok(()),
                Err(Ok(v)) => value = v,
                Err(Err(e)) => return Err(e),
            }
            let (seq, waiters) = s.ring.room_words();
            aio::until(seq, waiters, || s.ring.has_slot()).await;
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Ready once a bounded queue may have room for one more item (at once if it has now).
    ///
    /// Cancel-safe: it takes nothing; dropping it leaves no waiter registered.
    pub(crate) async fn room_async(&self) {
        let ring = &self.s().ring;
        let (seq, waiters) = ring.room_words();
        aio::until(seq, waiters, || ring.has_slot()).await;
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// The async form of [`get`](Self::get); cancel-safe as [`Queue::get_async`].
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        self.0.get_async().await
    }

    /// The async form of [`put`](Self::put) (which never waits); as [`Queue::put_async`].
    pub async fn put_async(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.0.put_async(value).await
    }

    /// A `futures_sink::Sink` putting into this queue, as [`Queue::sink`].
    pub fn sink(&self) -> crate::ItemSink<'_, T> {
        self.0.sink()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Waits, without blocking the thread, until every item put has been marked done (the
    /// async form of [`join`](Self::join)).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only watches the count of unfinished tasks; dropping it leaves no
    /// waiter registered.
    pub async fn join_async(&self) {
        let ring = &self.0.s().ring;
        let (seq, waiters) = ring.tasks_words();
        aio::until(seq, waiters, || ring.tasks_finished()).await;
    }
}
