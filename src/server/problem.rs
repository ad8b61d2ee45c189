//! Errors as RFC 9457 `application/problem+json`: one stable `type` per library error and
//! per refusal of the HTTP layer, mapped in one place so no error can fall through to a
//! `500` unnoticed (a test walks every variant).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::ledger::{State, StopReason};

/// Everything a request can be refused with.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A library error: each variant has its status and type.
    Library(Error),
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
    /// The token's attempt is no longer current.
    StaleAttempt { current_attempt: u32, state: State },
    /// The execution already ended: its first outcome.
    AlreadyTerminal {
        state: State,
        stop_reason: StopReason,
    },
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

/// Seconds a client should wait before retrying a `503`.
const RETRY_AFTER_SECS: u32 = 1;

struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
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
    use StatusCode as S;
    let detail = e.to_string();
    match e {
        Error::InvalidName { what, .. } => {
            Problem::new(S::BAD_REQUEST, "invalid-name", "Invalid name", detail)
                .with("field", json!(what))
        }
        Error::InvalidArgument { name, .. } => Problem::new(
            S::BAD_REQUEST,
            "invalid-argument",
            "Invalid argument",
            detail,
        )
        .with("field", json!(name)),
        Error::InvalidConfig { key, .. } => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "invalid-config",
            "Invalid server configuration",
            detail,
        )
        .with("field", json!(key)),
        Error::Settings(_) => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "invalid-config",
            "Invalid server configuration",
            detail,
        ),
        Error::TooLarge { what, limit, .. } => {
            Problem::new(S::PAYLOAD_TOO_LARGE, "too-large", "Too large", detail)
                .with("field", json!(what))
                .with("limit", json!(limit))
        }
        Error::NotJson { what, .. } => {
            Problem::new(S::BAD_REQUEST, "not-json", "Not JSON", detail).with("field", json!(what))
        }
        Error::NotFound { queue, id } => {
            Problem::new(S::NOT_FOUND, "not-found", "No such execution", detail)
                .with("queue", json!(queue))
                .with("id", json!(id))
        }
        Error::InvalidToken { .. } => Problem::new(
            S::BAD_REQUEST,
            "invalid-token",
            "Malformed attempt token",
            detail,
        )
        .with("field", json!("token")),
        Error::TokenMismatch {
            current_attempt, ..
        } => Problem::new(
            S::CONFLICT,
            "token-mismatch",
            "Attempt token was never issued",
            detail,
        )
        .with("current_attempt", json!(current_attempt)),
        Error::InvalidTransition { .. } => Problem::new(
            S::CONFLICT,
            "invalid-transition",
            "Not allowed in this state",
            detail,
        ),
        Error::WorkerExists { worker_id } => Problem::new(
            S::CONFLICT,
            "worker-exists",
            "Worker id already registered",
            detail,
        )
        .with("worker_id", json!(worker_id)),
        Error::UnknownWorker { worker_id } => Problem::new(
            S::NOT_FOUND,
            "unknown-worker",
            "Worker not registered",
            detail,
        )
        .with("worker_id", json!(worker_id)),
        Error::EvictionPolicy { .. } => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "eviction-policy",
            "Redis may evict keys",
            detail,
        ),
        Error::Authentication { .. } => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "redis-authentication",
            "Redis refused the server's credentials",
            detail,
        ),
        Error::Permission { .. } => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "redis-permission",
            "The server's Redis user lacks permissions",
            detail,
        ),
        Error::LeaseLost { .. } => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "lease-lost",
            "Watchdog lease lost",
            detail,
        ),
        Error::DataLost { .. } => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "redis-data-lost",
            "Redis lost its data",
            detail,
        ),
        Error::Protocol { .. } => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "protocol",
            "Unreadable data in Redis",
            detail,
        ),
        Error::UnknownOutcome { .. } => Problem::new(
            S::GATEWAY_TIMEOUT,
            "unknown-outcome",
            "Outcome unknown",
            detail,
        ),
        Error::Redis(_) | Error::Pool(_) => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "redis-unavailable",
            "Redis unavailable",
            detail,
        ),
        // A variant added to the library later: reported, never hidden.
        #[allow(unreachable_patterns)]
        _ => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        ),
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::Library(e) => library(e),
            ApiError::Unauthorized => Problem::new(
                S::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send `Authorization: Bearer <token>` with a token from the server's settings".into(),
            ),
            ApiError::Forbidden { scope } => Problem::new(
                S::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!("this route needs a token of scope {scope} (or admin)"),
            )
            .with("scope", json!(scope)),
            ApiError::BadRequest { detail, field } => {
                let p = Problem::new(S::BAD_REQUEST, "bad-request", "Bad request", detail.clone());
                match field {
                    Some(f) => p.with("field", json!(f)),
                    None => p,
                }
            }
            ApiError::IdempotencyConflict { queue, id } => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency-conflict",
                "Id reused for a different request",
                format!(
                    "execution {queue}/{id} exists with a different payload or timings; \
                     use a fresh id (or Idempotency-Key) for different work"
                ),
            )
            .with("queue", json!(queue))
            .with("id", json!(id)),
            ApiError::StaleAttempt {
                current_attempt,
                state,
            } => Problem::new(
                S::CONFLICT,
                "stale-attempt",
                "Attempt no longer current",
                format!(
                    "a newer attempt exists or this one was ended (the execution is {state} \
                     on attempt {current_attempt}): stop, the work is not yours"
                ),
            )
            .with("current_attempt", json!(current_attempt))
            .with("state", json!(state)),
            ApiError::AlreadyTerminal { state, stop_reason } => Problem::new(
                S::CONFLICT,
                "already-terminal",
                "Execution already ended",
                format!("the execution already ended {state} ({stop_reason})"),
            )
            .with("state", json!(state))
            .with("stop_reason", json!(stop_reason.as_str())),
            ApiError::TooLarge { limit } => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Body too large",
                format!("the request body is above the server's limit (server.body_limit, {limit} bytes)"),
            )
            .with("limit", json!(limit)),
            ApiError::NoRoute => Problem::new(
                S::NOT_FOUND,
                "no-route",
                "No such route",
                "see /openapi.json for the routes".into(),
            ),
            ApiError::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take this method; see /openapi.json".into(),
            ),
            ApiError::Saturated => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "saturated",
                "Server busy",
                "too many requests in flight, or shutting down; retry shortly".into(),
            ),
            ApiError::Timeout => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
                "the request took longer than the server's request timeout".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.problem();
        if p.status.is_server_error() && p.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = %p.status, problem = p.slug, detail = %p.detail, "request failed");
        }
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", p.slug)));
        body.insert("title".into(), json!(p.title));
        body.insert("status".into(), json!(p.status.as_u16()));
        body.insert("detail".into(), json!(p.detail));
        body.extend(p.extra);
        let mut response = (p.status, axum::Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if p.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// The problem types this API answers with, for `/problems/{slug}` and the docs.
pub(crate) const TYPES: &[(&str, u16, &str)] = &[
    (
        "invalid-name",
        400,
        "A queue name, execution id or worker id broke the naming rules.",
    ),
    (
        "invalid-argument",
        400,
        "A value is out of range (a timing, a batch size, a limit, a wait).",
    ),
    (
        "bad-request",
        400,
        "Malformed JSON, a wrong type, an unknown field, or a bad query parameter.",
    ),
    (
        "not-json",
        400,
        "A payload, result or checkpoint is not JSON.",
    ),
    ("invalid-token", 400, "The attempt token does not parse."),
    ("unauthorized", 401, "No valid bearer token."),
    (
        "forbidden",
        403,
        "The token's scope does not allow the route.",
    ),
    ("not-found", 404, "No such execution."),
    (
        "unknown-worker",
        404,
        "The worker is not registered (any more): register under a fresh id.",
    ),
    ("no-route", 404, "No such route."),
    (
        "method-not-allowed",
        405,
        "The route does not take this method.",
    ),
    (
        "stale-attempt",
        409,
        "The token's attempt is no longer current: stop, the work is not yours.",
    ),
    (
        "already-terminal",
        409,
        "The execution already ended; its first outcome is given.",
    ),
    (
        "token-mismatch",
        409,
        "The token was never issued for this execution.",
    ),
    (
        "invalid-transition",
        409,
        "The operation is not allowed in the execution's state.",
    ),
    (
        "worker-exists",
        409,
        "The worker id was registered before: use a fresh id per process start.",
    ),
    (
        "too-large",
        413,
        "A payload, result or checkpoint is above max_payload_bytes.",
    ),
    (
        "body-too-large",
        413,
        "The request body is above the server's body limit.",
    ),
    (
        "idempotency-conflict",
        422,
        "The id exists with a different payload or timings.",
    ),
    (
        "invalid-config",
        500,
        "The server's configuration is invalid.",
    ),
    ("lease-lost", 500, "A watchdog lease was lost mid-call."),
    (
        "redis-data-lost",
        503,
        "Redis lost the namespace's data (restarted empty or flushed); the watchdog refuses to act until restarted.",
    ),
    ("protocol", 500, "Data in Redis this version cannot read."),
    ("internal", 500, "An error this version does not classify."),
    (
        "redis-unavailable",
        503,
        "Redis cannot be reached: retry after the Retry-After delay.",
    ),
    (
        "eviction-policy",
        503,
        "Redis may evict keys (maxmemory-policy is not noeviction).",
    ),
    (
        "redis-authentication",
        503,
        "Redis refused the server's credentials (ledger.redis_url).",
    ),
    (
        "redis-permission",
        503,
        "The server's Redis ACL user may not run a command or use a key unstuck needs.",
    ),
    (
        "saturated",
        503,
        "Too many requests in flight, or shutting down.",
    ),
    (
        "timeout",
        503,
        "The request took longer than the server's request timeout.",
    ),
    (
        "unknown-outcome",
        504,
        "The call was sent but no reply came: retrying the same call is safe.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every library error variant: a new variant must be added here, or
    /// this match stops compiling (the `match` below is exhaustive over `Error`).
    fn every_library_error() -> Vec<Error> {
        let examples = vec![
            Error::InvalidName {
                what: "queue name",
                value: "a b".into(),
                expected: "x".into(),
            },
            Error::InvalidArgument {
                name: "limit".into(),
                value: "0".into(),
                expected: "1..".into(),
            },
            Error::InvalidConfig {
                key: "server.listen".into(),
                value: "x".into(),
                expected: "y".into(),
            },
            Error::Settings("bad".into()),
            Error::TooLarge {
                what: "payload",
                size: 2,
                limit: 1,
            },
            Error::NotJson {
                what: "payload",
                reason: "eof".into(),
            },
            Error::NotFound {
                queue: "q".into(),
                id: "e".into(),
            },
            Error::InvalidToken {
                token: "t".into(),
                reason: "short",
            },
            Error::TokenMismatch {
                queue: "q".into(),
                id: "e".into(),
                current_attempt: 2,
            },
            Error::InvalidTransition {
                operation: "x",
                queue: "q".into(),
                id: "e".into(),
                reason: "r".into(),
            },
            Error::WorkerExists {
                worker_id: "w".into(),
            },
            Error::UnknownWorker {
                worker_id: "w".into(),
            },
            Error::EvictionPolicy {
                policy: "allkeys-lru".into(),
            },
            Error::Authentication {
                user: "default".into(),
                detail: "wrong password".into(),
            },
            Error::Permission {
                user: "unstuck".into(),
                commands: vec!["xread".into()],
                keys: Vec::new(),
            },
            Error::DataLost {
                namespace: "prod".into(),
            },
            Error::LeaseLost {
                partition: 1,
                replica: "r".into(),
            },
            Error::Protocol {
                script: "round",
                detail: "d".into(),
            },
            Error::UnknownOutcome {
                operation: "enqueue",
                detail: "timeout".into(),
            },
            Error::Redis(redis::RedisError::from((redis::ErrorKind::Io, "refused"))),
            Error::Pool("exhausted".into()),
        ];
        for e in &examples {
            match e {
                Error::InvalidName { .. }
                | Error::InvalidArgument { .. }
                | Error::InvalidConfig { .. }
                | Error::Settings(_)
                | Error::TooLarge { .. }
                | Error::NotJson { .. }
                | Error::NotFound { .. }
                | Error::InvalidToken { .. }
                | Error::TokenMismatch { .. }
                | Error::InvalidTransition { .. }
                | Error::WorkerExists { .. }
                | Error::UnknownWorker { .. }
                | Error::EvictionPolicy { .. }
                | Error::Authentication { .. }
                | Error::Permission { .. }
                | Error::LeaseLost { .. }
                | Error::DataLost { .. }
                | Error::Protocol { .. }
                | Error::UnknownOutcome { .. }
                | Error::Redis(_)
                | Error::Pool(_) => {}
            }
        }
        examples
    }

    #[test]
    fn every_library_error_has_its_own_documented_type() {
        let mut slugs = Vec::new();
        for e in every_library_error() {
            let p = library(&e);
            assert_ne!(p.slug, "internal", "{e:?} falls through to internal");
            let listed = TYPES.iter().find(|(slug, _, _)| *slug == p.slug);
            let (_, status, _) = listed.unwrap_or_else(|| panic!("{} is not in TYPES", p.slug));
            assert_eq!(*status, p.status.as_u16(), "{e:?}");
            // Refusals of bad input are 4xx; only server-side trouble is 5xx.
            let client_fault = matches!(
                e,
                Error::InvalidName { .. }
                    | Error::InvalidArgument { .. }
                    | Error::TooLarge { .. }
                    | Error::NotJson { .. }
                    | Error::NotFound { .. }
                    | Error::InvalidToken { .. }
                    | Error::TokenMismatch { .. }
                    | Error::InvalidTransition { .. }
                    | Error::WorkerExists { .. }
                    | Error::UnknownWorker { .. }
            );
            assert_eq!(client_fault, p.status.is_client_error(), "{e:?}");
            slugs.push(p.slug);
        }
        slugs.dedup();
        assert!(slugs.len() >= 15);
    }
}
