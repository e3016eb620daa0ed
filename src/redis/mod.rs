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
//! Delivery is the reliable-list pattern: a worker takes a task id with `BLMOVE` from the
//! pool's list into a list of its own, atomically, and removes it in the same script that
//! pushes the result; a worker whose heartbeat key lapses has its list moved back. Streams
//! consumer groups (`XREADGROUP`/`XAUTOCLAIM`) would do the same with idle times instead of
//! heartbeats; lists were chosen because a dead worker is then noticed in one heartbeat
//! timeout whatever its tasks' lengths, and a task that runs long on a live worker is never
//! taken from it. A [`JoinableQueue`] item, with no worker process to watch, is leased
//! instead: a sorted set of deadlines, expired entries put back by the next `get`.
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
pub use queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, TryGetError, TryPutError,
};
pub use worker::{PROCESSES_ENV, WORKER_ENV};

/// The authkey environment variable a remote worker reads (hex, or the raw bytes of the value
/// when it is not hex).
pub use worker::AUTHKEY_ENV;

/// The build id of this program's executable (its GNU build-id note, or a hash of the whole
/// file when it has none): what a worker compares with its pool's before running anything.
pub fn build_id() -> &'static str {
    message::build_id()
}
