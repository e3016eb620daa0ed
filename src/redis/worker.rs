//! The worker process of a broker pool.

/// Environment variable that turns a run of the program into a worker of a broker pool.
pub const WORKER_ENV: &str = "MP_REDIS_WORKER";
/// The pool's authkey for a worker started with [`WORKER_ENV`].
pub const AUTHKEY_ENV: &str = "MP_REDIS_AUTHKEY";
