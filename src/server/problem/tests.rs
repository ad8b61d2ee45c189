//! Every library error and every API refusal has its own documented problem type.
use super::*;

/// Whether the caller's input is at fault (a 4xx), by an exhaustive match: a new
/// variant stops this compiling until it is placed here and given an example below.
fn client_fault(e: &Error) -> bool {
    match e {
        Error::InvalidName { .. }
        | Error::InvalidArgument { .. }
        | Error::TooLarge { .. }
        | Error::NotJson { .. }
        | Error::NotFound { .. }
        | Error::UnknownQueue { .. }
        | Error::InvalidToken { .. }
        | Error::TokenMismatch { .. }
        | Error::InvalidTransition { .. }
        | Error::NotAwaiting { .. }
        | Error::InvalidResumeToken { .. }
        | Error::ResumeTokenUsed { .. }
        | Error::WorkerExists { .. }
        | Error::ResourceBusy { .. }
        | Error::ResourceCapacity { .. }
        | Error::UnknownWorker { .. } => true,
        Error::InvalidConfig { .. }
        | Error::Settings(_)
        | Error::EvictionPolicy { .. }
        | Error::Authentication { .. }
        | Error::Permission { .. }
        | Error::LeaseLost { .. }
        | Error::DataLost { .. }
        | Error::Protocol { .. }
        | Error::Listener { .. }
        | Error::UnknownOutcome { .. }
        | Error::Unavailable { .. }
        | Error::Redis(_)
        | Error::Pool(_) => false,
    }
}

/// One example of every library error variant (see [`client_fault`]).
fn every_library_error() -> Vec<Error> {
    vec![
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
        Error::UnknownQueue { queue: "q".into() },
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
        Error::NotAwaiting {
            queue: "q".into(),
            id: "e".into(),
            state: "running".into(),
        },
        Error::InvalidResumeToken { reason: "forged" },
        Error::ResumeTokenUsed {
            queue: "q".into(),
            id: "e".into(),
            resumed_at: chrono::Utc::now(),
            state: "queued".into(),
        },
        Error::WorkerExists {
            worker_id: "w".into(),
        },
        Error::UnknownWorker {
            worker_id: "w".into(),
        },
        Error::ResourceBusy {
            resource: "browser".into(),
            capacity: 1,
            holders: Vec::new(),
        },
        Error::ResourceCapacity {
            resource: "browser".into(),
            capacity: 1,
            requested: 2,
            held: 1,
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
        Error::Listener {
            operation: "accepting connections",
            detail: "Too many open files (os error 24)".into(),
        },
        Error::UnknownOutcome {
            operation: "enqueue",
            detail: "timeout".into(),
        },
        Error::Unavailable {
            operation: "enqueue",
            detail: "Connection refused".into(),
        },
        Error::Redis(redis::RedisError::from((redis::ErrorKind::Io, "refused"))),
        Error::Pool("max_size 0".into()),
    ]
}

#[test]
fn every_library_error_has_its_own_documented_type() {
    let mut slugs = Vec::new();
    for e in every_library_error() {
        let p = library(&e);
        assert_ne!(p.kind.slug, "internal", "{e:?} falls through to internal");
        // Refusals of bad input are 4xx; only server-side trouble is 5xx.
        assert_eq!(client_fault(&e), p.kind.status.is_client_error(), "{e:?}");
        slugs.push(p.kind.slug);
    }
    slugs.dedup();
    assert!(slugs.len() >= 15);
}

/// Nothing sent is a 503 (nothing happened), sent without a reply a 504 (it may have):
/// both say when to retry.
#[test]
fn unavailable_and_unknown_outcome_differ_and_both_say_when_to_retry() {
    let cases = [
        (
            Error::Unavailable {
                operation: "enqueue",
                detail: "Connection refused (os error 111)".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/redis-unavailable",
        ),
        (
            Error::UnknownOutcome {
                operation: "enqueue",
                detail: "timed out".into(),
            },
            StatusCode::GATEWAY_TIMEOUT,
            "/problems/unknown-outcome",
        ),
    ];
    for (e, status, slug) in cases {
        let p = library(&e);
        assert_eq!((p.kind.status, p.kind.slug), (status, &slug[10..]), "{e:?}");
        let response = ApiError::Library(e).into_response();
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(RETRY_AFTER_SECS)),
            "{slug}"
        );
    }
}
