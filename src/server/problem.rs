//! Errors as RFC 9457 `application/problem+json`: one stable `type` per library error and
//! per refusal of the HTTP layer, mapped in one place so no error can fall through to a
//! `500` unnoticed (a test walks every variant).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::ledger::AttemptRefused;

/// Everything a request can be refused with.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A library error: each variant has its status and type.
    Library(Error),
    /// The watchdog's status could not be read from Redis: the library error's problem,
    /// with the health verdict it means as a `health` member (`GET /v1/watchdog`).
    Unhealthy(Error, Box<crate::watchdog::Health>),
    /// No valid bearer token.
    Unauthorized,
    /// The token's scope does not allow the route.
    Forbidden { scope: &'static str },
    /// Malformed JSON, a wrong type, an unknown field, a bad query or path parameter.
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    /// The id exists with a different request (the Idempotency-Key was reused).
    IdempotencyConflict { queue: String, id: String },
    /// An attempt call refused: the token's attempt is no longer current, or the execution
    /// already ended (its first outcome).
    Refused(AttemptRefused),
    /// The body is larger than the server accepts.
    TooLarge { limit: usize },
    /// No such route.
    NoRoute,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The server is saturated (too many requests in flight) or shutting down.
    Saturated,
    /// The request took longer than the server's request timeout.
    Timeout,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Library(e)
    }
}

/// Seconds a client should wait before retrying a `503` or a `504` (unknown outcome).
const RETRY_AFTER_SECS: u32 = 1;

/// A problem type: its `type` slug, HTTP status, title and what it means.
#[derive(Debug)]
pub(crate) struct Kind {
    pub(crate) slug: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) meaning: &'static str,
}

struct Problem {
    kind: &'static Kind,
    detail: String,
    extra: Map<String, Value>,
}

impl Problem {
    fn new(kind: &'static Kind, detail: String) -> Self {
        Self {
            kind,
            detail,
            extra: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
}

fn library(e: &Error) -> Problem {
    let detail = e.to_string();
    match e {
        Error::InvalidName { what, .. } => {
            Problem::new(&kind::INVALID_NAME, detail).with("field", json!(what))
        }
        Error::InvalidArgument { name, .. } => {
            Problem::new(&kind::INVALID_ARGUMENT, detail).with("field", json!(name))
        }
        Error::InvalidConfig { key, .. } => {
            Problem::new(&kind::INVALID_CONFIG, detail).with("field", json!(key))
        }
        Error::Settings(_) => Problem::new(&kind::INVALID_CONFIG, detail),
        Error::TooLarge { what, limit, .. } => Problem::new(&kind::TOO_LARGE, detail)
            .with("field", json!(what))
            .with("limit", json!(limit)),
        Error::NotJson { what, .. } => {
            Problem::new(&kind::NOT_JSON, detail).with("field", json!(what))
        }
        Error::NotFound { queue, id } => Problem::new(&kind::NOT_FOUND, detail)
            .with("queue", json!(queue))
            .with("id", json!(id)),
        Error::UnknownQueue { queue } => {
            Problem::new(&kind::UNKNOWN_QUEUE, detail).with("queue", json!(queue))
        }
        Error::InvalidToken { .. } => {
            Problem::new(&kind::INVALID_TOKEN, detail).with("field", json!("token"))
        }
        Error::TokenMismatch {
            current_attempt, ..
        } => Problem::new(&kind::TOKEN_MISMATCH, detail)
            .with("current_attempt", json!(current_attempt)),
        Error::InvalidTransition { .. } => Problem::new(&kind::INVALID_TRANSITION, detail),
        Error::NotAwaiting { queue, id, state } => Problem::new(&kind::NOT_AWAITING, detail)
            .with("queue", json!(queue))
            .with("id", json!(id))
            .with("state", json!(state)),
        Error::InvalidResumeToken { .. } => Problem::new(&kind::INVALID_RESUME_TOKEN, detail),
        Error::ResumeTokenUsed {
            queue,
            id,
            resumed_at,
            state,
        } => Problem::new(&kind::RESUME_TOKEN_USED, detail)
            .with("queue", json!(queue))
            .with("id", json!(id))
            .with("resumed_at", json!(resumed_at))
            .with("state", json!(state)),
        Error::WorkerExists { worker_id } => {
            Problem::new(&kind::WORKER_EXISTS, detail).with("worker_id", json!(worker_id))
        }
        Error::ResourceBusy {
            resource,
            capacity,
            holders,
        } => Problem::new(&kind::RESOURCE_BUSY, detail)
            .with("resource", json!(resource))
            .with("capacity", json!(capacity))
            .with("holders", json!(holders)),
        Error::ResourceCapacity {
            resource,
            capacity,
            held,
            ..
        } => Problem::new(&kind::RESOURCE_CAPACITY, detail)
            .with("resource", json!(resource))
            .with("capacity", json!(capacity))
            .with("held", json!(held)),
        Error::UnknownWorker { worker_id } => {
            Problem::new(&kind::UNKNOWN_WORKER, detail).with("worker_id", json!(worker_id))
        }
        Error::EvictionPolicy { .. } => Problem::new(&kind::EVICTION_POLICY, detail),
        Error::Authentication { .. } => Problem::new(&kind::REDIS_AUTHENTICATION, detail),
        Error::Permission { .. } => Problem::new(&kind::REDIS_PERMISSION, detail),
        Error::LeaseLost { .. } => Problem::new(&kind::LEASE_LOST, detail),
        Error::DataLost { .. } => Problem::new(&kind::REDIS_DATA_LOST, detail),
        Error::Protocol { .. } => Problem::new(&kind::PROTOCOL, detail),
        Error::Listener { .. } => Problem::new(&kind::LISTENER, detail),
        Error::UnknownOutcome { .. } => Problem::new(&kind::UNKNOWN_OUTCOME, detail),
        Error::Unavailable { .. } | Error::Redis(_) | Error::Pool(_) => {
            Problem::new(&kind::REDIS_UNAVAILABLE, detail)
        }
        // A variant added to the library later: reported, never hidden.
        #[allow(unreachable_patterns)]
        _ => Problem::new(&kind::INTERNAL, detail),
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Library(e) => library(e),
            ApiError::Unhealthy(e, health) => library(e).with("health", json!(health)),
            ApiError::Unauthorized => Problem::new(&kind::UNAUTHORIZED, "send `Authorization: Bearer <secret>` with the secret of a token from the server's settings: the part after `scope:`, not the whole entry".into(),
            ),
            ApiError::Forbidden { scope } => Problem::new(&kind::FORBIDDEN, format!("this route needs a token of scope {scope} (or admin)"),
            )
            .with("scope", json!(scope)),
            ApiError::BadRequest { detail, field } => {
                let p = Problem::new(&kind::BAD_REQUEST, detail.clone());
                match field {
                    Some(f) => p.with("field", json!(f)),
                    None => p,
                }
            }
            ApiError::IdempotencyConflict { queue, id } => Problem::new(&kind::IDEMPOTENCY_CONFLICT, format!(
                    "execution {queue}/{id} exists with a different payload or timings; \
                     use a fresh id (or Idempotency-Key) for different work"
                ),
            )
            .with("queue", json!(queue))
            .with("id", json!(id)),
            ApiError::Refused(AttemptRefused::Stale {
                current_attempt,
                state,
            }) => {
                let next_attempt = crate::ledger::next_claim(*current_attempt, *state);
                let detail = match next_attempt {
                    Some(next) => format!(
                        "your attempt is over: it was ended and a retry waits in the queue \
                         (the execution is {state} on attempt {current_attempt}; its claim \
                         makes it attempt {next}): stop, the work is not yours"
                    ),
                    None => format!(
                        "your attempt is over: a newer attempt exists (the execution is \
                         {state} on attempt {current_attempt}): stop, the work is not yours"
                    ),
                };
                Problem::new(&kind::STALE_ATTEMPT, detail)
                    .with("current_attempt", json!(current_attempt))
                    .with("state", json!(state))
                    .with("attempt_ended", json!(true))
                    .with("next_attempt", json!(next_attempt))
            }
            ApiError::Refused(AttemptRefused::Terminal { state, stop_reason }) => {
                Problem::new(
                    &kind::ALREADY_TERMINAL,
                    format!("the execution already ended {state} ({stop_reason})"),
                )
                .with("state", json!(state))
                .with("stop_reason", json!(stop_reason.as_str()))
            }
            ApiError::TooLarge { limit } => Problem::new(&kind::BODY_TOO_LARGE, format!("the request body is above the server's limit (server.body_limit, {limit} bytes)"),
            )
            .with("limit", json!(limit)),
            ApiError::NoRoute => Problem::new(&kind::NO_ROUTE, "see /openapi.json for the routes".into(),
            ),
            ApiError::MethodNotAllowed => Problem::new(&kind::METHOD_NOT_ALLOWED, "this route does not take this method; see /openapi.json".into(),
            ),
            ApiError::Saturated => Problem::new(&kind::SATURATED, "too many requests in flight, or shutting down; retry shortly".into(),
            ),
            ApiError::Timeout => Problem::new(&kind::TIMEOUT, "the request took longer than the server's request timeout".into(),
            ),
        }
    }
}

impl From<AttemptRefused> for ApiError {
    fn from(refused: AttemptRefused) -> Self {
        ApiError::Refused(refused)
    }
}

/// The refusal of an attempt outcome a handler did not accept: `None` (an accepted outcome
/// reached the refusal arm) would be a bug of the handler, answered as an internal error.
impl From<Option<AttemptRefused>> for ApiError {
    fn from(refused: Option<AttemptRefused>) -> Self {
        match refused {
            Some(refused) => ApiError::Refused(refused),
            None => ApiError::Library(Error::Protocol {
                script: "attempt outcome",
                detail: "an accepted outcome was answered as a refusal".into(),
            }),
        }
    }
}

impl ApiError {
    /// The problem document this error is answered with (`type`, `title`, `status`,
    /// `detail` and its extra members) and its status: what a route that answers several
    /// items in one reply puts in an item's place.
    pub(crate) fn document(&self) -> (StatusCode, Value) {
        let p = self.problem();
        let Kind {
            slug,
            status,
            title,
            ..
        } = *p.kind;
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(%status, problem = slug, detail = %p.detail, "request failed");
        }
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{slug}")));
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(p.detail));
        body.extend(p.extra);
        (status, Value::Object(body))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.document();
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Both say "retry": a 503 because nothing happened, an unknown outcome because
        // the same call converges whichever way the lost one went.
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// The problem types this API answers with — slug, status, title, and what it means (for
/// `/problems/{slug}` and the docs) — each also a constant of [`kind`].
macro_rules! kinds {
    ($($name:ident = $slug:literal, $status:ident, $title:literal, $meaning:literal;)*) => {
        /// One constant per problem type.
        pub(crate) mod kind {
            use super::{Kind, StatusCode};
            $(pub(crate) const $name: Kind = Kind {
                slug: $slug,
                status: StatusCode::$status,
                title: $title,
                meaning: $meaning,
            };)*
        }
        /// Every problem type.
        pub(crate) const TYPES: &[Kind] = &[$(kind::$name),*];
    };
}

kinds! {
    INVALID_NAME = "invalid-name", BAD_REQUEST, "Invalid name",
        "A queue name, execution id or worker id broke the naming rules.";
    INVALID_ARGUMENT = "invalid-argument", BAD_REQUEST, "Invalid argument",
        "A value is out of range (a timing, a batch size, a limit, a wait).";
    BAD_REQUEST = "bad-request", BAD_REQUEST, "Bad request",
        "Malformed JSON, a wrong type, an unknown field, or a bad query parameter.";
    NOT_JSON = "not-json", BAD_REQUEST, "Not JSON",
        "A payload, result or checkpoint is not JSON.";
    INVALID_TOKEN = "invalid-token", BAD_REQUEST, "Malformed attempt token",
        "The attempt token does not parse.";
    UNAUTHORIZED = "unauthorized", UNAUTHORIZED, "Unauthorized",
        "No valid bearer token.";
    FORBIDDEN = "forbidden", FORBIDDEN, "Forbidden",
        "The token's scope does not allow the route.";
    NOT_FOUND = "not-found", NOT_FOUND, "No such execution",
        "No such execution.";
    UNKNOWN_QUEUE = "unknown-queue", NOT_FOUND, "No such queue",
        "No queue of this name was ever used or configured.";
    UNKNOWN_WORKER = "unknown-worker", NOT_FOUND, "Worker not registered",
        "The worker is not registered (any more): register under a fresh id.";
    NO_ROUTE = "no-route", NOT_FOUND, "No such route",
        "No such route.";
    METHOD_NOT_ALLOWED = "method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "The route does not take this method.";
    STALE_ATTEMPT = "stale-attempt", CONFLICT, "Attempt no longer current",
        "The token's attempt is over (attempt_ended: true): a newer attempt exists, or it was ended and a retry waits (next_attempt): stop, the work is not yours.";
    ALREADY_TERMINAL = "already-terminal", CONFLICT, "Execution already ended",
        "The execution already ended; its first outcome is given.";
    TOKEN_MISMATCH = "token-mismatch", CONFLICT, "Attempt token was never issued",
        "The token was never issued for this execution.";
    INVALID_TRANSITION = "invalid-transition", CONFLICT, "Not allowed in this state",
        "The operation is not allowed in the execution's state.";
    NOT_AWAITING = "not-awaiting", CONFLICT, "Not awaiting",
        "A resume of an execution that is not awaiting: its state is given.";
    INVALID_RESUME_TOKEN = "invalid-resume-token", NOT_FOUND, "Resume token not recognised",
        "The resume token was never issued, or belongs to a wait a later one replaced.";
    RESUME_TOKEN_USED = "resume-token-used", CONFLICT, "Resume token already used",
        "The resume token already resumed its wait (it works once): when, and the state now, are given.";
    WORKER_EXISTS = "worker-exists", CONFLICT, "Worker id already registered",
        "The worker id was registered before: use a fresh id per process start.";
    RESOURCE_BUSY = "resource-busy", CONFLICT, "Resource busy",
        "Every unit of the resource is held (member holders says by whom): wait and acquire again, or acquire with wait_ms.";
    RESOURCE_CAPACITY = "resource-capacity", CONFLICT, "Resource capacity differs",
        "The acquire named a capacity other than the resource's while units are held: acquire without one, or with the capacity set.";
    TOO_LARGE = "too-large", PAYLOAD_TOO_LARGE, "Too large",
        "A payload, result or checkpoint is above max_payload_bytes.";
    BODY_TOO_LARGE = "body-too-large", PAYLOAD_TOO_LARGE, "Body too large",
        "The request body is above the server's body limit.";
    IDEMPOTENCY_CONFLICT = "idempotency-conflict", UNPROCESSABLE_ENTITY, "Id reused for a different request",
        "The id exists with a different payload or timings.";
    INVALID_CONFIG = "invalid-config", INTERNAL_SERVER_ERROR, "Invalid server configuration",
        "The server's configuration is invalid.";
    LEASE_LOST = "lease-lost", INTERNAL_SERVER_ERROR, "Watchdog lease lost",
        "A watchdog lease was lost mid-call.";
    REDIS_DATA_LOST = "redis-data-lost", SERVICE_UNAVAILABLE, "Redis lost its data",
        "Redis lost the namespace's data (restarted empty or flushed); the watchdog refuses to act until restarted.";
    PROTOCOL = "protocol", INTERNAL_SERVER_ERROR, "Unreadable data in Redis",
        "Data in Redis this version cannot read.";
    LISTENER = "listener", INTERNAL_SERVER_ERROR, "HTTP listener failed",
        "The server's listening socket failed (an operating-system error, not a configuration one).";
    INTERNAL = "internal", INTERNAL_SERVER_ERROR, "Internal error",
        "An error this version does not classify.";
    REDIS_UNAVAILABLE = "redis-unavailable", SERVICE_UNAVAILABLE, "Redis unavailable",
        "Redis cannot be reached and the request was not carried out: nothing was written; retry after the Retry-After delay.";
    EVICTION_POLICY = "eviction-policy", SERVICE_UNAVAILABLE, "Redis may evict keys",
        "Redis may evict keys (maxmemory-policy is not noeviction).";
    REDIS_AUTHENTICATION = "redis-authentication", SERVICE_UNAVAILABLE, "Redis refused the server's credentials",
        "Redis refused the server's credentials (ledger.redis_url).";
    REDIS_PERMISSION = "redis-permission", SERVICE_UNAVAILABLE, "The server's Redis user lacks permissions",
        "The server's Redis ACL user may not run a command or use a key unstuck needs.";
    SATURATED = "saturated", SERVICE_UNAVAILABLE, "Server busy",
        "Too many requests in flight, or shutting down.";
    TIMEOUT = "timeout", SERVICE_UNAVAILABLE, "Request timed out",
        "The request took longer than the server's request timeout.";
    UNKNOWN_OUTCOME = "unknown-outcome", GATEWAY_TIMEOUT, "Outcome unknown",
        "The call was sent to Redis but no reply came, so it may or may not have taken effect: retrying the same call (same id or token) after the Retry-After delay is safe and reports the first outcome.";
}

#[cfg(test)]
mod tests;
