//! The same [`Queue`] and [`Pool`](crate::Pool) on a Redis broker, for processes on any machine
//! that reaches the server (cargo feature `redis`).
//!
//! - [`Queue`] / [`JoinableQueue`]: opened by URL and name from any process; FIFO, many
//!   producers and consumers, `maxsize`, `qsize`; items are the crate's serde values (postcard,
//!   as on a local pipe). A [`JoinableQueue`] item that a consumer took and never marked done
//!   comes back after the queue's visibility timeout (at-least-once).
//! - [`PoolBuilder`]: a [`Pool`](crate::Pool) whose tasks travel through the broker to worker
//!   processes of the same program: started here by the builder, or on other machines by
//!   running the same binary with [`WORKER_ENV`] set (`redis://host:port/0#poolname`). The
//!   worker is intercepted before `main`, as the local start methods are.
//!
//! Credentials come from the URL (`redis://user:password@host:port/db`: `AUTH` with a user is
//! an ACL login). Every task and result is authenticated with the pool's authkey
//! (HMAC-SHA256), so whoever can write to the broker still cannot make a worker run anything.
//!
//! Rooms: `link.rs` (connections, reconnecting, errors), `queue.rs`, `pool.rs` (the client's
//! backend), `worker.rs` (the worker process), `message.rs` (signed task/result messages,
//! build id).

mod link;
mod message;
mod pool;
mod queue;
mod worker;

pub use pool::PoolBuilder;
pub use queue::{GetError, JoinableQueue, PutError, Queue};
pub use worker::{PROCESSES_ENV, WORKER_ENV};

/// The authkey environment variable a remote worker reads (hex, or the raw bytes of the value
/// when it is not hex).
pub use worker::AUTHKEY_ENV;

/// The build id of this program's executable (its GNU build-id note, or a hash of the whole
/// file when it has none): what a worker compares with its pool's before running anything.
pub fn build_id() -> &'static str {
    message::build_id()
}
