//! `Stream` and `Sink` adapters (feature `tokio`) over connections, queues and the pool's `imap`:
//! the async room above every primitive. The async waits they are built from live beside the
//! wait core (`sync/aio.rs`, `sync/waker.rs`).

pub(crate) mod sink;
pub(crate) mod stream;
