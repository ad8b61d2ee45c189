//! Errors of the library: what went wrong and what the caller should do about it.

use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can refuse or fail at. Bad input is refused before any write.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace, queue name, execution id or worker id broke the naming rules.
    #[error("invalid {what} {value:?}: expected {expected}")]
    InvalidName {
        what: &'static str,
        value: String,
        expected: String,
    },
    /// A configuration or option value is out of range or malformed.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidConfig {
        key: String,
        value: String,
        expected: String,
    },
    /// The settings file or `UNSTUCK_*` environment could not be read into settings; the
    /// message names the key and what was expected.
    #[error("bad settings: {0} (durations are written like 500ms, 30s, 5m)")]
    Settings(String),
    /// A duration option is zero where it must be positive, or absurdly long.
    #[error("invalid duration {value:?} for {key}: expected {expected}")]
    InvalidDuration {
        key: &'static str,
        value: Duration,
        expected: &'static str,
    },
    /// A payload, result or checkpoint is larger than the configured limit.
    #[error("{what} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A payload, result or checkpoint is not valid JSON.
    #[error("{what} is not valid JSON: {reason}")]
    NotJson { what: &'static str, reason: String },
    /// No execution with this id exists in this queue.
    #[error("no execution {id:?} in queue {queue:?}")]
    NotFound { queue: String, id: String },
    /// An attempt token that does not parse.
    #[error("malformed attempt token {token:?}: {reason}")]
    InvalidToken { token: String, reason: &'static str },
    /// The token names the current attempt number but not its secret, or a future attempt:
    /// it was never issued for this execution.
    #[error(
        "attempt token does not match execution {queue}/{id} (current attempt {current_attempt})"
    )]
    TokenMismatch {
        queue: String,
        id: String,
        current_attempt: u32,
    },
    /// The operation is not allowed in the execution's current state.
    #[error("cannot {operation} execution {queue}/{id}: {reason}")]
    InvalidTransition {
        operation: &'static str,
        queue: String,
        id: String,
        reason: String,
    },
    /// A worker id was registered before; ids must be unique per process start.
    #[error("worker {worker_id:?} is already registered; use a fresh id per process start")]
    WorkerExists { worker_id: String },
    /// The worker is not (or no longer) in the registry.
    #[error("worker {worker_id:?} is not registered")]
    UnknownWorker { worker_id: String },
    /// Redis would evict keys under memory pressure, silently deleting leases and indexes.
    #[error(
        "Redis maxmemory-policy is {policy:?}; unstuck needs \"noeviction\" because eviction \
         silently deletes leases and indexes. Fix: `redis-cli CONFIG SET maxmemory-policy \
         noeviction` and set `maxmemory-policy noeviction` in redis.conf"
    )]
    EvictionPolicy { policy: String },
    /// The watchdog lease of this partition is not held by this replica (it expired, or
    /// another replica took it under a newer epoch): nothing was written.
    #[error("replica {replica} does not hold the lease of partition {partition}")]
    LeaseLost { partition: u16, replica: String },
    /// A script replied with something this version does not understand.
    #[error("unexpected reply from script {script}: {detail}")]
    Protocol {
        script: &'static str,
        detail: String,
    },
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A pooled connection for blocking reads could not be had.
    #[error("redis pool: {0}")]
    Pool(String),
}

impl Error {
    /// True when the error came from talking to Redis (worth a retry with backoff),
    /// false when the request itself was refused (retrying will not help).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            Error::Pool(_) => true,
            _ => false,
        }
    }

    /// True when the execution does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
