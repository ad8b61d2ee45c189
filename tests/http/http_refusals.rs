//! What `unstuck serve` refuses: every scope allowed and refused on its routes, no token or
//! a forged one, a non-loopback listener without tokens, and a table of bad requests —
//! each answered with its status and problem type, none writing anything.

use crate::http_common;

use http_common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use unstuck::server::Server;

/// One request of each kind of route, and the scope it needs.
fn routes() -> Vec<(
    Method,
    &'static str,
    Option<serde_json::Value>,
    &'static str,
)> {
    vec![
        (Method::GET, "/v1/queues", None, "read"),
        (
            Method::GET,
            "/v1/queues/q/executions?state=queued",
            None,
            "read",
        ),
        (Method::GET, "/v1/workers", None, "read"),
        (Method::GET, "/v1/executions", None, "read"),
        (Method::GET, "/v1/events/recent", None, "read"),
        (Method::GET, "/v1/watchdog/activity", None, "read"),
        (Method::GET, "/v1/watchdog", None, "read"),
        (Method::GET, "/metrics", None, "read"),
        (
            Method::PUT,
            "/v1/queues/q",
            Some(json!({"capacity": 3})),
            "orchestrator",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions",
            Some(json!({"payload": 1})),
            "orchestrator",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions/x/cancel",
            Some(json!({})),
            "orchestrator",
        ),
        (
            Method::PUT,
            "/v1/queues/q/executions/x/pin",
            None,
            "orchestrator",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions/x/retry",
            Some(json!({})),
            "orchestrator",
        ),
        (
            Method::POST,
            "/v1/queues/q/claims",
            Some(json!({"worker_id": "w"})),
            "worker",
        ),
        (
            Method::POST,
            "/v1/workers",
            Some(json!({"queues": ["q"]})),
            "worker",
        ),
    ]
}

fn allows(scope: &str, need: &str) -> bool {
    scope == "admin" || scope == need || (scope == "orchestrator" && need == "read")
}

#[tokio::test]
async fn each_scope_is_allowed_its_routes_and_refused_the_others() {
    let s = start_with_tokens("http_scopes").await;
    for (scope, token) in [
        ("admin", ADMIN),
        ("orchestrator", ORCHESTRATOR),
        ("worker", WORKER),
        ("read", READ),
    ] {
        for (method, path, body, need) in routes() {
            let r = s.call_as(Some(token), method.clone(), path, body).await;
            if allows(scope, need) {
                assert!(
                    r.status.is_success() || r.status == StatusCode::NOT_FOUND,
                    "{scope} on {method} {path}: {r:?}"
                );
            } else {
                assert_eq!(
                    (r.status, r.problem()),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{scope} on {method} {path}"
                );
                assert_eq!(r.body["scope"], need);
            }
        }
    }
    // No token, a wrong one, a malformed header: 401 everywhere but the open routes.
    for token in [None, Some("not-a-token-at-all"), Some("")] {
        let r = s.call_as(token, Method::GET, "/v1/queues", None).await;
        assert_eq!(
            (r.status, r.problem()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
    let r = s
        .http
        .get(s.url("/v1/queues"))
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The scheme name is case-insensitive; the secret goes alone, never as `scope:secret`.
    let r = s
        .http
        .get(s.url("/v1/queues"))
        .header("authorization", format!("bearer {READ}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let whole = format!("read:{READ}");
    let r = s
        .call_as(Some(&whole), Method::GET, "/v1/queues", None)
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not the whole entry"), "{detail}");
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let r = s.call_as(None, Method::GET, open, None).await;
        assert_eq!(r.status, StatusCode::OK, "{open}");
    }
    s.stop().await;
}

/// Every operation `/openapi.json` lists is routed, under the scope it documents: a token
/// of another scope is refused `403` naming that scope (never `404 no-route` or `405`),
/// and an operation documented without a token answers without one.
#[tokio::test]
async fn every_documented_operation_is_served_under_its_documented_scope() {
    let s = start_with_tokens("http_documented").await;
    let doc = s
        .call_as(None, Method::GET, "/openapi.json", None)
        .await
        .body;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (template, item) in paths {
        let path = template
            .replace("{queue}", "q")
            .replace("{id}", "x")
            .replace("{worker}", "w")
            .replace("{slug}", "not-found");
        for (method, op) in item.as_object().expect("path item") {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let need = op["security"][0]["bearer"][0].as_str();
            let r = match need {
                Some(need) => {
                    let other = if need == "worker" { READ } else { WORKER };
                    s.call_as(Some(other), method.clone(), &path, None).await
                }
                None => s.call_as(None, method.clone(), &path, None).await,
            };
            match need {
                Some(need) => {
                    assert_eq!(
                        (r.status, r.problem()),
                        (StatusCode::FORBIDDEN, "forbidden"),
                        "{method} {template}"
                    );
                    assert_eq!(r.body["scope"], need, "{method} {template}");
                }
                // The resume token in the path is the credential: a made-up one is answered
                // as unknown, never as unauthorized.
                None if template == "/v1/resume/{resume_token}" => assert_eq!(
                    (r.status, r.problem()),
                    (StatusCode::NOT_FOUND, "invalid-resume-token"),
                    "{method} {template} without a token"
                ),
                None => assert!(
                    r.status.is_success(),
                    "{method} {template} without a token: {r:?}"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 36, "{checked} operations");
    s.stop().await;
}

#[tokio::test]
async fn without_tokens_only_loopback_is_accepted_and_bad_tokens_are_refused() {
    let open = settings("http_open", |s| s.server.listen = "0.0.0.0:0".into());
    match Server::bind(open.ledger, open.server, open.watchdog).await {
        Err(unstuck::Error::InvalidConfig { key, .. }) => assert_eq!(key, "server.listen"),
        other => panic!("expected a refusal of a public listener without tokens, got {other:?}"),
    }
    let public_with_tokens = settings("http_public", |s| {
        s.server.listen = "0.0.0.0:0".into();
        s.server.tokens = vec![format!("admin:{ADMIN}")];
    });
    assert!(
        Server::bind(
            public_with_tokens.ledger,
            public_with_tokens.server,
            public_with_tokens.watchdog,
        )
        .await
        .is_ok()
    );
    for bad in [
        "admin",
        "root:averylongsecret1",
        "admin:short",
        "worker:has a space in it",
    ] {
        let s = settings("http_badtok", |s| s.server.tokens = vec![bad.into()]);
        match Server::bind(s.ledger, s.server, s.watchdog).await {
            Err(unstuck::Error::InvalidConfig { key, value, .. }) => {
                assert_eq!(key, "server.tokens");
                assert!(!value.contains(bad), "the secret is never echoed: {value}");
            }
            other => panic!("{bad}: expected InvalidConfig, got {other:?}"),
        }
    }
}

/// (method, path, content type, body, status, problem type)
type BadRequest = (Method, String, &'static str, Vec<u8>, u16, &'static str);

#[tokio::test]
async fn bad_requests_are_refused_with_their_problem_and_write_nothing() {
    let s = start("http_bad").await;
    s.enqueue("q", "existing", json!({})).await;
    let token = s.claim("q", "w1").await;
    let before = snapshot(&s.ledger).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let json_ct = "application/json";
    let cases: Vec<BadRequest> = vec![
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            b"{not json".to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            "text/plain",
            b"{}".to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"payload": 1, "colour": "red"}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"id": 5}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"id": "a/b"}"#.to_vec(),
            400,
            "invalid-name",
        ),
        (
            Method::POST,
            "/v1/queues/has%20space/executions".into(),
            json_ct,
            b"{}".to_vec(),
            400,
            "invalid-name",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"timings": {"heartbeat_timeout": 0}}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"timings": {"heartbeat_timeout": "soon"}}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"timings": {"deadline": "400 days"}}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"timings": {"max_attempts": 0}}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"timings": {"max_attempts": -1}}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            br#"{"delay": -5}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            format!(r#"{{"payload": "{}"}}"#, "p".repeat(1_100_000)).into_bytes(),
            413,
            "too-large",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions".into(),
            json_ct,
            format!(r#"{{"payload": "{big}"}}"#).into_bytes().repeat(9),
            413,
            "body-too-large",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions/batch".into(),
            json_ct,
            br#"{"items": []}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/executions/batch".into(),
            json_ct,
            br#"{"items": [{"id": "ok"}, {"id": "bad id"}]}"#.to_vec(),
            400,
            "invalid-name",
        ),
        (
            Method::PUT,
            "/v1/queues/q".into(),
            json_ct,
            br#"{"capacity": 0}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::PUT,
            "/v1/queues/q".into(),
            json_ct,
            br#"{"capacity": "many"}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/queues/q/executions?state=sleeping".into(),
            json_ct,
            vec![],
            400,
            "invalid-argument",
        ),
        (
            Method::GET,
            "/v1/queues/q/executions".into(),
            json_ct,
            vec![],
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/queues/q/executions?state=queued&limit=0".into(),
            json_ct,
            vec![],
            400,
            "invalid-argument",
        ),
        (
            Method::GET,
            "/v1/queues/q/executions?state=queued&cursor=zzz".into(),
            json_ct,
            vec![],
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/claims".into(),
            json_ct,
            br#"{"worker_id": "w", "wait_ms": 31000}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/claims".into(),
            json_ct,
            br#"{"worker_id": "w", "max": 0}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::POST,
            "/v1/queues/q/claims".into(),
            json_ct,
            br#"{"max": 1}"#.to_vec(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/attempts/heartbeat".into(),
            json_ct,
            br#"{"token": "q/x"}"#.to_vec(),
            400,
            "invalid-token",
        ),
        (
            Method::POST,
            "/v1/attempts/heartbeat".into(),
            json_ct,
            format!(
                r#"{{"token": "{token}", "checkpoint": "{}"}}"#,
                "c".repeat(1_100_000)
            )
            .into_bytes(),
            413,
            "too-large",
        ),
        (
            Method::POST,
            "/v1/attempts/complete".into(),
            json_ct,
            format!(r#"{{"token": "{}"}}"#, other_nonce(&token)).into_bytes(),
            409,
            "token-mismatch",
        ),
        (
            Method::POST,
            "/v1/attempts/fail".into(),
            json_ct,
            format!(r#"{{"token": "{token}"}}"#).into_bytes(),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/workers".into(),
            json_ct,
            br#"{"worker_id": "bad/id", "queues": []}"#.to_vec(),
            400,
            "invalid-name",
        ),
        (
            Method::POST,
            "/v1/workers".into(),
            json_ct,
            br#"{"queues": ["ok"], "heartbeat_interval": 0}"#.to_vec(),
            400,
            "invalid-argument",
        ),
        (
            Method::GET,
            "/v1/events?last_event_id=nonsense".into(),
            json_ct,
            vec![],
            400,
            "bad-request",
        ),
        (
            Method::DELETE,
            "/v1/queues/q".into(),
            json_ct,
            vec![],
            405,
            "method-not-allowed",
        ),
    ];
    assert!(cases.len() >= 20);
    for (method, path, content_type, body, status, problem) in cases {
        let r = s.raw(method.clone(), &path, content_type, &body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {:?}", r.body);
        if !problem.is_empty() {
            assert_eq!(r.problem(), problem, "{method} {path}");
            assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }
    // A body above server.body_limit names the limit, on a route whose body is required
    // and on one whose body is optional.
    let huge = format!(r#"{{"payload": "{big}"}}"#).into_bytes().repeat(9);
    for path in [
        "/v1/queues/q/executions",
        "/v1/queues/q/executions/existing/cancel",
    ] {
        let r = s.raw(Method::POST, path, json_ct, &huge).await;
        assert_eq!(
            (r.status.as_u16(), r.problem()),
            (413, "body-too-large"),
            "{path}"
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("16777216 bytes"), "{path}: {detail}");
    }
    assert_eq!(snapshot(&s.ledger).await, before, "a refused request wrote");
    s.stop().await;
}

/// `max_concurrent_requests` counts requests in flight: a waiting long poll holds a place,
/// an open event stream does not (its place is freed once its headers are sent), and a
/// request beyond the limit is `503 saturated` with `Retry-After`.
#[tokio::test]
async fn waiting_long_polls_fill_max_concurrent_requests_and_open_streams_do_not() {
    let s = start_with(settings("http_inflight", |s| {
        s.server.max_concurrent_requests = 2;
    }))
    .await;
    // Two open event streams: each answered with its headers, neither holds a place.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let r = s.http.get(s.url("/v1/events")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        streams.push(r);
    }
    assert_eq!(s.get("/v1/queues").await.status, StatusCode::OK);
    // Two long polls waiting on an empty queue hold both places. A poll that lost a race
    // with a probe for a place (503) is sent again.
    let poll = |i: usize| {
        let http = s.http.clone();
        let url = s.url("/v1/queues/q/claims");
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"worker_id": format!("w{i}"), "wait_ms": 10000}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let mut polls: Vec<_> = (0..2).map(poll).collect();
    let mut refused = None;
    for _ in 0..500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        for (i, p) in polls.iter_mut().enumerate() {
            if p.is_finished() {
                *p = poll(i);
            }
        }
        let r = s.get("/v1/queues").await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE && polls.iter().all(|p| !p.is_finished()) {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a third request is refused while two long polls wait");
    assert_eq!(r.problem(), "saturated");
    assert!(r.headers.contains_key("retry-after"));
    // The probes and the metrics scrape are outside the limit.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path} while saturated: {r:?}");
    }
    assert!(polls.iter().all(|p| !p.is_finished()), "still saturated");
    // Two enqueues (through the library: HTTP is full) answer the polls; the places are
    // free again.
    for _ in 0..2 {
        s.ledger
            .enqueue("q", &json!({}), unstuck::EnqueueOptions::default())
            .await
            .unwrap();
    }
    for poll in polls {
        let status = poll.await.unwrap().unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::NO_CONTENT,
            "{status}"
        );
    }
    assert_eq!(s.get("/v1/queues").await.status, StatusCode::OK);
    drop(streams);
    s.stop().await;
}
