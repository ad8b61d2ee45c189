//! Errors of the library: what went wrong and what the caller should do about it.

use std::time::Duration;

/// How every message prints a duration: `1s 500ms`, `30s`, `5m`, the form settings take.
pub(crate) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The message of [`Error::Permission`]: what is missing, and the `ACL SETUSER` rules that
/// grant it.
fn permission_message(user: &str, commands: &[String], keys: &[String]) -> String {
    let mut missing = Vec::new();
    let mut grant = Vec::new();
    if !commands.is_empty() {
        missing.push(format!("commands {}", commands.join(", ")));
        grant.extend(commands.iter().map(|c| format!("+{c}")));
    }
    if !keys.is_empty() {
        missing.push(format!("keys {}", keys.join(", ")));
        // Every key of a namespace starts with `{<namespace>:`.
        let patterns: Vec<String> = keys
            .iter()
            .filter_map(|k| k.split_once(':').map(|(tag, _)| format!("~{tag}:*")))
            .collect();
        for pattern in patterns {
            if !grant.contains(&pattern) {
                grant.push(pattern);
            }
        }
    }
    format!(
        "Redis user {user:?} may not use {} that unstuck needs; grant them with \
         `ACL SETUSER {user} {}` (the Security section of docs/redis.md lists every permission)",
        missing.join(" and "),
        grant.join(" ")
    )
}

/// `queue/id (attempt n)` of each holder, for [`Error::ResourceBusy`].
fn holder_list(holders: &[crate::ledger::Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{}/{} (attempt {})", h.queue, h.id, h.attempt))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can refuse or fail at. Bad input is refused before any write.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace, queue name, execution id or worker id broke the naming rules.
    #[error("invalid {what} {value:?}: expected {expected}")]
    InvalidName {
        /// What was named: `namespace`, `queue name`, `execution id`, `worker id`.
        what: &'static str,
        /// The name given (cut when very long).
        value: String,
        /// The rule it broke.
        expected: String,
    },
    /// An argument of a call (an enqueue option, a batch size, a page size, a duration)
    /// is out of range or malformed: fix the call. Nothing was written.
    #[error("invalid {name} {value}: expected {expected}")]
    InvalidArgument {
        /// The argument, as the API names it (`heartbeat_timeout`, `items`, `limit`).
        name: String,
        /// The value given, as text.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A configuration value is out of range, malformed, or contradicts another: fix the
    /// configuration (file, environment or struct) before starting.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidConfig {
        /// The key with its section, as in the settings file (`ledger.partitions`).
        key: String,
        /// The value found, as text.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The settings file or `UNSTUCK_*` environment could not be read into settings; the
    /// message names the key and what was expected.
    #[error("bad settings: {0} (durations are written like 500ms, 30s, 5m)")]
    Settings(String),
    /// A payload, result or checkpoint is larger than the configured limit.
    #[error("{what} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// What was too large: `payload`, `result`, `checkpoint`, ...
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The configured limit (`max_payload_bytes`).
        limit: usize,
    },
    /// A payload, result or checkpoint is not valid JSON.
    #[error("{what} is not valid JSON: {reason}")]
    NotJson {
        /// What was not JSON.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// No execution with this id exists in this queue.
    #[error("no execution {id:?} in queue {queue:?}")]
    NotFound {
        /// The queue.
        queue: String,
        /// The id looked for.
        id: String,
    },
    /// No queue of this name was ever used or configured (pausing or resuming it would
    /// name nothing): check the name, or create it by an enqueue or its settings.
    #[error("no queue {queue:?}: it was never used or configured")]
    UnknownQueue {
        /// The name given.
        queue: String,
    },
    /// An attempt token that does not parse.
    #[error("malformed attempt token {token:?}: {reason}")]
    InvalidToken {
        /// The token given (cut when very long).
        token: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token names the current attempt number but not its secret, or a future attempt:
    /// it was never issued for this execution.
    #[error(
        "attempt token does not match execution {queue}/{id} (current attempt {current_attempt})"
    )]
    TokenMismatch {
        /// The queue of the execution.
        queue: String,
        /// The execution id.
        id: String,
        /// The attempt the execution is on now.
        current_attempt: u32,
    },
    /// The operation is not allowed in the execution's current state.
    #[error("cannot {operation} execution {queue}/{id}: {reason}")]
    InvalidTransition {
        /// What was asked (`acknowledge cancellation of`, ...).
        operation: &'static str,
        /// The queue of the execution.
        queue: String,
        /// The execution id.
        id: String,
        /// Why the state does not allow it.
        reason: String,
    },
    /// A resume of an execution that is not awaiting (and was not resumed from its latest
    /// wait): nothing to resume. The state says what happened to it instead.
    #[error("execution {queue}/{id} is {state}, not awaiting: there is nothing to resume")]
    NotAwaiting {
        /// The queue of the execution.
        queue: String,
        /// The execution id.
        id: String,
        /// Its state now, as the API spells it.
        state: String,
    },
    /// A resume token that was never issued (forged, mistyped, or of a wait replaced by a
    /// later one): nothing was resumed.
    #[error("resume token not recognised: {reason}")]
    InvalidResumeToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A resume token that already resumed its wait: it works once.
    #[error(
        "resume token already used: execution {queue}/{id} was resumed at {resumed_at}          and is {state} now"
    )]
    ResumeTokenUsed {
        /// The queue of the execution.
        queue: String,
        /// The execution id.
        id: String,
        /// When the token resumed it.
        resumed_at: chrono::DateTime<chrono::Utc>,
        /// Its state now.
        state: String,
    },
    /// A worker id was registered before; ids must be unique per process start.
    #[error("worker {worker_id:?} is already registered; use a fresh id per process start")]
    WorkerExists {
        /// The id registered before.
        worker_id: String,
    },
    /// Every unit of a resource is held (after the acquire's wait, if any): wait for a
    /// release, or ask the holders' owners.
    #[error(
        "resource {resource:?} is busy: all {capacity} units held by {}",
        holder_list(holders)
    )]
    ResourceBusy {
        /// The resource.
        resource: String,
        /// Its capacity.
        capacity: u32,
        /// Who holds its units.
        holders: Vec<crate::ledger::Holder>,
    },
    /// An acquire named a capacity other than the one the resource has while units are
    /// held: acquire without a capacity, or with the one set.
    #[error(
        "resource {resource:?} has capacity {capacity} ({held} held); an acquire asked for          {requested}: the capacity changes only when nobody holds it"
    )]
    ResourceCapacity {
        /// The resource.
        resource: String,
        /// Its capacity now.
        capacity: u32,
        /// The capacity asked for.
        requested: u32,
        /// Units held now.
        held: u32,
    },
    /// The worker is not (or no longer) in the registry.
    #[error("worker {worker_id:?} is not registered")]
    UnknownWorker {
        /// The id not found.
        worker_id: String,
    },
    /// Redis would evict keys under memory pressure, silently deleting leases and indexes.
    #[error(
        "Redis maxmemory-policy is {policy:?}; unstuck needs \"noeviction\" because eviction \
         silently deletes leases and indexes. Fix: `redis-cli CONFIG SET maxmemory-policy \
         noeviction` and set `maxmemory-policy noeviction` in redis.conf"
    )]
    EvictionPolicy {
        /// The policy Redis reported.
        policy: String,
    },
    /// Redis refused the credentials of the URL (a wrong password, an unknown or disabled
    /// user), or wants a password and the URL gives none. The password is never printed.
    #[error(
        "Redis refused to authenticate user {user:?}: {detail}; check the user and password \
         in ledger.redis_url (redis://user:password@host:port/)"
    )]
    Authentication {
        /// The ACL user the URL names (`default` when it names none).
        user: String,
        /// What Redis refused.
        detail: String,
    },
    /// The Redis ACL user may not run some of the commands unstuck needs, or not on all
    /// the namespace's keys. Found at connect, before any call.
    #[error("{}", permission_message(user, commands, keys))]
    Permission {
        /// The ACL user.
        user: String,
        /// Commands (or `command|subcommand`) the user may not run, as Redis names them.
        commands: Vec<String>,
        /// Keys of the namespace the user may not read or write.
        keys: Vec<String>,
    },
    /// The watchdog lease of this partition is not held by this replica (it expired, or
    /// another replica took it under a newer epoch): nothing was written.
    #[error("replica {replica} does not hold the lease of partition {partition}")]
    LeaseLost {
        /// The partition.
        partition: u16,
        /// The replica that no longer holds it.
        replica: String,
    },
    /// Redis lost the namespace's data: the marker the watchdog replicas keep in it is gone
    /// or changed (Redis restarted empty, or was flushed). The replica refuses to act until
    /// it is restarted, so an empty Redis is noticed instead of watched as if nothing
    /// happened.
    #[error(
        "Redis lost the data of namespace {namespace:?} (its marker is gone or changed: \
         restarted empty or flushed?); this watchdog replica refuses to act until it is \
         restarted: check Redis persistence (appendonly yes) first"
    )]
    DataLost {
        /// The namespace.
        namespace: String,
    },
    /// A script replied with something this version does not understand, or data read
    /// from Redis could not be parsed (a damaged hash, a foreign event).
    #[error("unexpected data from {script}: {detail}")]
    Protocol {
        /// The script or the kind of data (`round`, `execution hash`, `event stream`).
        script: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The call was sent but no reply came back (a response timeout, a connection dropped
    /// mid-call): it may or may not have taken effect. Every write is idempotent on its
    /// ids or tokens, so retrying the same call is safe and converges: a replay reports
    /// the first outcome.
    #[error("outcome of {operation} unknown: {detail}; retrying the same call is safe")]
    UnknownOutcome {
        /// The script or operation that was in flight.
        operation: &'static str,
        /// What happened to the reply.
        detail: String,
    },
    /// Redis could not be reached, so the call was never sent: nothing was written, and
    /// retrying freely is safe. The connection was refused, the host did not resolve, a
    /// reconnect was under way and failed, or no pooled connection could be had.
    #[error("Redis unavailable: {operation} was not sent ({detail}); nothing was written")]
    Unavailable {
        /// The script or operation that could not be sent.
        operation: &'static str,
        /// Why Redis could not be reached.
        detail: String,
    },
    /// Redis answered with an error, or the connection failed in a way that does not tell
    /// whether a call reached Redis (see [`Error::is_transient`]).
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// The HTTP server's listening socket failed once bound (accepting connections, or
    /// telling its own address): an operating-system error, not a configuration one (a
    /// `server.listen` that cannot be bound is [`Error::InvalidConfig`]).
    #[error("the HTTP listener failed ({operation}): {detail}")]
    Listener {
        /// What the listener was doing: `accepting connections`, `reading its address`.
        operation: &'static str,
        /// The operating system's error.
        detail: String,
    },
    /// The pool of connections for blocking reads could not be built.
    #[error("redis pool: {0}")]
    Pool(String),
}

/// A Redis error met outside a script call (a read, a probe): one that proves the request
/// never left becomes [`Error::Unavailable`].
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if not_sent(&e) {
            Error::Unavailable {
                operation: "redis call",
                detail: e.to_string(),
            }
        } else {
            Error::Redis(e)
        }
    }
}

/// True when `e` proves the request was never written to Redis.
///
/// redis-rs (1.x) reports a failed connect — refused (or, for a unix socket, no such
/// file), no local address to connect from, a host that does not resolve — as the call's
/// error: the `ConnectionManager` awaits its (re)connection before it writes, so a call
/// made while it is disconnected fails with the connect error and sends nothing. Those
/// kinds never arise on an established connection. What stays ambiguous is left out on
/// purpose: `BrokenPipe` (redis-rs's "connection closed", given both to a call made after
/// the connection closed and to one in flight when it closed) and `TimedOut` (a connect
/// timeout and a response timeout alike). The Cluster client retries a request after a
/// dropped connection, so `conn.rs` hides its refusals from this test.
pub(crate) fn not_sent(e: &redis::RedisError) -> bool {
    use std::io::ErrorKind as Io;
    if e.is_connection_refusal() {
        return true;
    }
    let Some(io) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>())
    else {
        return false;
    };
    match io.kind() {
        Io::AddrNotAvailable => true,
        // A name that does not resolve: std and tokio report getaddrinfo's failure with
        // no kind of its own, so the message is all there is to go on.
        _ => io.to_string().contains("failed to lookup address"),
    }
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
            Error::Pool(_) | Error::Unavailable { .. } | Error::UnknownOutcome { .. } => true,
            _ => false,
        }
    }

    /// True when the call may have taken effect although it failed (see
    /// [`Error::UnknownOutcome`]).
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Error::UnknownOutcome { .. })
    }

    /// True when Redis could not be reached and the call was never sent: nothing was
    /// written (see [`Error::Unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// A call-argument error reported as a configuration error under `section` (the
    /// global default timings are checked with the same rules as an enqueue's).
    pub(crate) fn in_section(self, section: &str) -> Self {
        match self {
            Error::InvalidArgument {
                name,
                value,
                expected,
            } => Error::InvalidConfig {
                key: format!("{section}.{name}"),
                value,
                expected,
            },
            other => other,
        }
    }

    /// A Redis error from a write: one that proves nothing was sent is
    /// [`Error::Unavailable`]; a response timeout or a connection dropped (perhaps
    /// mid-call) leaves the outcome unknown. The order matters: redis-rs counts a refused
    /// connection as "dropped" too.
    pub(crate) fn from_call(operation: &'static str, e: redis::RedisError) -> Self {
        if not_sent(&e) {
            Error::Unavailable {
                operation,
                detail: e.to_string(),
            }
        } else if e.is_timeout() || e.is_connection_dropped() {
            Error::UnknownOutcome {
                operation,
                detail: e.to_string(),
            }
        } else {
            Error::Redis(e)
        }
    }

    /// No pooled connection for a blocking read could be had (the pool timed out, or its
    /// connect failed): nothing was sent.
    pub(crate) fn pool(operation: &'static str, e: deadpool_redis::PoolError) -> Self {
        Error::Unavailable {
            operation,
            detail: e.to_string(),
        }
    }

    /// True when the execution does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
