//! One connection to the broker, reopened when it breaks, with bounded waits everywhere.
//!
//! Every command runs with a read timeout (a server that stops answering is an error, never a
//! hang). A broken connection is dropped and opened again on the next call; idempotent calls
//! are retried for up to the link's reconnect window, so a server restarted within it is
//! invisible to callers. A call that may have reached the server is retried only when it is
//! safe to run twice.

use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// How long opening a TCP connection to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a non-blocking command may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a server may be away before calls fail.
pub(crate) const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(10);

/// A broker error as the crate's error: what was being done, and the server's or socket's words.
pub(crate) fn broker_error(what: &str, e: &::redis::RedisError) -> Error {
    Error::Io {
        context: "talking to the Redis broker",
        source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("{what}: {e}")),
    }
}

/// Whether `e` means the connection (not the command) failed.
pub(crate) fn is_connection_error(e: &::redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Splits `redis://host:port/db#name` into the server URL and the name after `#`.
pub(crate) fn split_fragment(url: &str) -> (&str, Option<&str>) {
    match url.split_once('#') {
        Some((u, n)) => (u, Some(n)),
        None => (url, None),
    }
}

/// Pipeline steps the pool's client and its workers take in several places.
pub(crate) trait PipelineSteps {
    /// `SET key value PX ms`, its reply ignored: a key that lapses after `ms` unless set again.
    fn set_px(&mut self, key: String, value: impl ::redis::ToRedisArgs, ms: u64) -> &mut Self;

    /// `LRANGE key 0 -1` and `DEL key`: takes the whole list (one reply, its items).
    fn take_list(&mut self, key: String) -> &mut Self;
}

impl PipelineSteps for ::redis::Pipeline {
    fn set_px(&mut self, key: String, value: impl ::redis::ToRedisArgs, ms: u64) -> &mut Self {
        self.cmd("SET").arg(key).arg(value).arg("PX").arg(ms).ignore()
    }

    fn take_list(&mut self, key: String) -> &mut Self {
        self.cmd("LRANGE").arg(&key).arg(0).arg(-1).cmd("DEL").arg(key).ignore()
    }
}

/// A connection to one server, opened lazily and reopened after failures.
pub(crate) struct Link {
    client: ::redis::Client,
    conn: Option<::redis::Connection>,
    window: Duration,
    connects: u64,
}

impl Link {
    /// A link to the server at `url` (not yet connected); a malformed URL is an error now.
    pub(crate) fn new(url: &str, window: Duration) -> Result<Link> {
        let client = ::redis::Client::open(url)
            .map_err(|e| Error::invalid(format!("not a Redis URL ({url:?}): {e}")))?;
        Ok(Link { client, conn: None, window, connects: 0 })
    }

    /// How many times a connection was opened: a change means the old one broke (and the
    /// server may have restarted without its data).
    pub(crate) fn generation(&self) -> u64 {
        self.connects
    }

    fn connect(&mut self) -> ::redis::RedisResult<&mut ::redis::Connection> {
        if self.conn.is_none() {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            c.set_write_timeout(Some(REPLY_TIMEOUT))?;
            self.conn = Some(c);
            self.connects += 1;
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Runs `f` on the connection with replies awaited for at most `wait` (plus margin).
    /// Connection failures reopen the connection; the call is retried within the reconnect
    /// window when it never reached the server, or always when `idempotent`.
    pub(crate) fn call<R>(
        &mut self,
        what: &str,
        idempotent: bool,
        wait: Option<Duration>,
        mut f: impl FnMut(&mut ::redis::Connection) -> ::redis::RedisResult<R>,
    ) -> Result<R> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let timeout = wait.map_or(REPLY_TIMEOUT, |w| w + REPLY_TIMEOUT);
            let (outcome, reached) = match self.connect() {
                Ok(c) => match c.set_read_timeout(Some(timeout)) {
                    Ok(()) => (f(c), true),
                    Err(e) => (Err(e), false),
                },
                Err(e) => (Err(e), false),
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) => {
                    self.conn = None;
                    let retry = (idempotent || !reached) && start.elapsed() < self.window;
                    if !retry {
                        return Err(broker_error(what, &e));
                    }
                    // Waiting for the server to come back: a bounded backoff between attempts.
                    std::thread::sleep(backoff.min(self.window.saturating_sub(start.elapsed())));
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(broker_error(what, &e)),
            }
        }
    }
}

/// Seconds as Redis's blocking commands take them (0 blocks forever, so never 0).
pub(crate) fn block_secs(d: Duration) -> f64 {
    d.as_secs_f64().max(0.01)
}
