//! Awaiting over HTTP: `POST /v1/attempts/await` (worker), `POST .../resume`
//! (orchestrator or admin), `POST /v1/resume/{resume_token}` (no bearer), their refusals,
//! and the claim that continues with `resume_input`.

use crate::http_common;

use http_common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use unstuck::State;

#[tokio::test]
async fn a_worker_awaits_and_an_orchestrator_resumes_it() {
    let s = start_with_tokens("http_await").await;
    s.enqueue("q", "a", json!({})).await;
    let token = s.claim("q", "w1").await;
    let r = s
        .call_as(
            Some(WORKER),
            Method::POST,
            "/v1/attempts/await",
            Some(
                json!({"token": token, "reason": "approval", "wait_deadline_ms": "1h",
                   "checkpoint": {"step": 2}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["outcome"], "awaiting");
    assert_eq!(r.body["slot_released"], true);
    assert!(r.body["resume_token"].as_str().unwrap().starts_with("q~a~"));
    assert!(r.body["wait_deadline_at"].is_string());
    let shown = s.get("/v1/queues/q/executions/a").await;
    assert_eq!(shown.body["state"], "awaiting");
    assert_eq!(shown.body["wait"]["reason"], "approval");
    assert_eq!(shown.body["continuations"], 1);
    let listed = s.get("/v1/queues/q/executions?state=awaiting").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body["items"][0]["id"], "a", "{listed:?}");

    // The token is stale: a late heartbeat is a 409 naming the state.
    let late = s
        .call_as(
            Some(WORKER),
            Method::POST,
            "/v1/attempts/heartbeat",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.problem(), "stale-attempt");
    assert_eq!(late.body["state"], "awaiting");

    // A worker may not resume; an orchestrator may.
    let path = "/v1/queues/q/executions/a/resume";
    let body = json!({"input": {"approved": true}});
    let refused = s
        .call_as(Some(WORKER), Method::POST, path, Some(body.clone()))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let r = s
        .call_as(Some(ORCHESTRATOR), Method::POST, path, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["state"].as_str(), r.body["already"].as_bool()),
        (Some("queued"), Some(false))
    );
    let again = s
        .call_as(Some(ORCHESTRATOR), Method::POST, path, None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["already"], true);
    assert_eq!(again.body["resumed_at"], r.body["resumed_at"]);

    let claimed = s
        .call_as(
            Some(WORKER),
            Method::POST,
            "/v1/queues/q/claims",
            Some(json!({"worker_id": "w2"})),
        )
        .await;
    let claim = &claimed.body["claims"][0];
    assert_eq!(claim["resume_input"], json!({"approved": true}));
    assert_eq!(claim["checkpoint"], json!({"step": 2}));
    assert_eq!(claim["attempt"], 2);
    s.stop().await;
}

#[tokio::test]
async fn the_resume_token_needs_no_bearer_and_works_once() {
    let s = start_with_tokens("http_await_token").await;
    s.enqueue("q", "a", json!({})).await;
    let token = s.claim("q", "w1").await;
    let r = s
        .post(
            "/v1/attempts/await",
            json!({"token": token, "reason": "webhook", "wait_deadline_ms": 60_000}),
        )
        .await;
    let resume_token = r.body["resume_token"].as_str().unwrap().to_owned();
    let forged = format!("q~a~{}", "0".repeat(64));
    let before = snapshot(&s.ledger).await;
    for bad in [forged.as_str(), "garbage"] {
        let r = s
            .call_as(None, Method::POST, &format!("/v1/resume/{bad}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
        assert_eq!(r.problem(), "invalid-resume-token");
    }
    assert_eq!(snapshot(&s.ledger).await, before, "nothing written");
    let path = format!("/v1/resume/{resume_token}");
    let r = s
        .call_as(
            None,
            Method::POST,
            &path,
            Some(json!({"input": {"ok": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["id"], "a");
    let used = s.call_as(None, Method::POST, &path, None).await;
    assert_eq!(used.status, StatusCode::CONFLICT, "{used:?}");
    assert_eq!(used.problem(), "resume-token-used");
    assert_eq!(used.body["state"], "queued");
    s.stop().await;
}

#[tokio::test]
async fn bad_awaits_and_resumes_are_refused() {
    let s = start_with_tokens("http_await_bad").await;
    s.enqueue("q", "a", json!({})).await;
    let token = s.claim("q", "w1").await;
    let before = snapshot(&s.ledger).await;
    for (body, problem) in [
        (
            json!({"token": token, "reason": "x", "wait_deadline_ms": 0}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "reason": "x", "wait_deadline_ms": "8d"}),
            "invalid-argument",
        ),
        (json!({"token": token, "reason": "x"}), "bad-request"),
    ] {
        let r = s.post("/v1/attempts/await", body).await;
        assert_eq!(r.problem(), problem, "{r:?}");
    }
    assert_eq!(snapshot(&s.ledger).await, before, "nothing written");
    // A resume of work that is not awaiting: a 409 naming its state.
    let r = s
        .call(Method::POST, "/v1/queues/q/executions/a/resume", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.problem(), "not-awaiting");
    assert_eq!(r.body["state"], "dispatched");
    assert!(r.body["detail"].as_str().unwrap().contains("dispatched"));
    let e = s.ledger.get("q", "a").await.unwrap();
    assert_eq!(e.state, State::Dispatched);
    s.stop().await;
}

#[tokio::test]
async fn queues_take_and_show_their_wait_settings() {
    let s = start_with_tokens("http_await_queue").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/queues/q",
            Some(json!({"max_wait": "2h", "on_wait_expiry": "requeue"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["max_wait_ms"], 7_200_000);
    assert_eq!(r.body["on_wait_expiry"], "requeue");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_waits_resumes_and_expiries() {
    let s = start("http_await_metrics").await;
    for (id, wait) in [("resumed", 60_000), ("expires", 200), ("waits", 60_000)] {
        s.enqueue("m", id, json!({})).await;
        let token = s.claim("m", "w1").await;
        let r = s
            .post(
                "/v1/attempts/await",
                json!({"token": token, "reason": "approval", "wait_deadline_ms": wait}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let r = s
        .post("/v1/queues/m/executions/resumed/resume", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "metrics caught up",
        || async {
            let text = s.metrics().await;
            sample(&text, "unstuck_waits_total", &["event=\"awaiting\""]) == Some(3.0)
                && sample(
                    &text,
                    "unstuck_executions",
                    &["queue=\"m\"", "state=\"awaiting\""],
                ) == Some(1.0)
                && sample(&text, "unstuck_waits_total", &["event=\"resumed\""]) == Some(1.0)
                && sample(
                    &text,
                    "unstuck_watchdog_actions_total",
                    &["to=\"failed\"", "reason=\"wait_expired\""],
                ) == Some(1.0)
        },
    )
    .await;
    s.stop().await;
}
