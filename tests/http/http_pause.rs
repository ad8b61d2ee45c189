//! Queue pause and resume over HTTP: admin only (worker, orchestrator and read tokens
//! refused, nothing written), the queue view shows the pause, a long-poll claim waits
//! through it and gets the work right after the resume, repeats say they changed
//! nothing, an unknown queue is a 404, and `/metrics` has the gauge and the counts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::http_common::*;
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_pauses_and_resumes_and_a_waiting_claim_gets_the_work_after_resume() {
    let s = start_with_tokens("http_pause").await;
    s.enqueue("p", "a", json!({})).await;
    let pause = json!({"reason": "provider outage"});

    // Refused scopes write nothing.
    let before = snapshot(&s.ledger).await;
    for (token, status) in [
        (Some(WORKER), StatusCode::FORBIDDEN),
        (Some(ORCHESTRATOR), StatusCode::FORBIDDEN),
        (Some(READ), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        for action in ["pause", "resume"] {
            let path = format!("/v1/queues/p/{action}");
            let r = s
                .call_as(token, Method::POST, &path, Some(pause.clone()))
                .await;
            assert_eq!(r.status, status, "{token:?} {action}: {r:?}");
        }
    }
    assert_eq!(snapshot(&s.ledger).await, before, "refusals wrote nothing");

    let r = s.post("/v1/queues/p/pause", pause.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["paused"].as_bool(), r.body["changed"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(r.body["pause"]["by"], "http:admin");
    assert_eq!(r.body["pause"]["reason"], "provider outage");
    let since = r.body["pause"]["since"].clone();
    let again = s
        .post("/v1/queues/p/pause", json!({"reason": "other"}))
        .await;
    assert_eq!(again.body["changed"], false, "{again:?}");
    assert_eq!(again.body["pause"]["reason"], "provider outage");

    let listed = s.get("/v1/queues").await;
    let q = &listed.body["queues"][0];
    assert_eq!(
        (q["name"].as_str(), q["paused"].as_bool()),
        (Some("p"), Some(true)),
        "{q}"
    );
    assert_eq!(
        (&q["pause"]["by"], &q["pause"]["since"]),
        (&json!("http:admin"), &since)
    );
    assert_eq!(
        s.get("/v1/queues/p").await.body["pause"]["reason"],
        "provider outage"
    );

    // A claim gets nothing; a long poll waits through the pause.
    let claim = json!({"worker_id": "w1", "max": 1});
    let r = s
        .call_as(
            Some(WORKER),
            Method::POST,
            "/v1/queues/p/claims",
            Some(claim),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let poll = {
        let (http, url) = (s.http.clone(), s.url("/v1/queues/p/claims"));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(WORKER)
                .json(&json!({"worker_id": "w1", "wait_ms": 20_000}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.ok())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll waits while paused");

    let r = s
        .post("/v1/queues/p/resume", json!({"reason": "back"}))
        .await;
    assert_eq!(
        (r.status, &r.body["changed"]),
        (StatusCode::OK, &json!(true)),
        "{r:?}"
    );
    assert_eq!(
        (r.body["paused"].as_bool(), &r.body["pause"]["since"]),
        (Some(false), &since)
    );
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the resume answers the long poll")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap()["claims"][0]["id"], "a");

    // Resuming again changes nothing; an empty body is allowed.
    let r = s.call(Method::POST, "/v1/queues/p/resume", None).await;
    assert_eq!(
        (r.status, &r.body["changed"]),
        (StatusCode::OK, &json!(false)),
        "{r:?}"
    );
    assert!(
        !s.get("/v1/queues/p").await.body["paused"]
            .as_bool()
            .unwrap()
    );

    // The events name who and why.
    let events = s.get("/v1/events/recent?queue=p").await;
    let details: Vec<(String, String)> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["execution_id"] == "")
        .map(|e| {
            (
                e["reason"].as_str().unwrap().into(),
                e["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        details,
        vec![
            (
                "queue_paused".into(),
                "by http:admin: provider outage".into()
            ),
            ("queue_resumed".into(), "by http:admin: back".into()),
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn pausing_an_unknown_queue_or_without_a_reason_is_refused() {
    let s = start("http_pause_bad").await;
    s.enqueue("p", "a", json!({})).await;
    let before = snapshot(&s.ledger).await;
    let r = s
        .post("/v1/queues/nope/pause", json!({"reason": "x"}))
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::NOT_FOUND, "unknown-queue"),
        "{r:?}"
    );
    assert_eq!(r.body["queue"], "nope");
    let r = s.post("/v1/queues/nope/resume", json!({})).await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::NOT_FOUND, "unknown-queue")
    );
    let r = s.post("/v1/queues/p/pause", json!({})).await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::BAD_REQUEST, "bad-request"),
        "{r:?}"
    );
    let r = s.post("/v1/queues/p/pause", json!({"reason": " "})).await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::BAD_REQUEST, "invalid-argument"),
        "{r:?}"
    );
    assert_eq!(r.body["field"], "reason");
    assert_eq!(snapshot(&s.ledger).await, before, "nothing written");

    // On a server without tokens the caller is named `http:open`.
    let r = s.post("/v1/queues/p/pause", json!({"reason": "x"})).await;
    assert_eq!(r.body["pause"]["by"], "http:open", "{r:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_pause_gauge_and_count_pauses_and_resumes() {
    let s = start("http_pause_metrics").await;
    s.enqueue("pm", "a", json!({})).await;
    s.post("/v1/queues/pm/pause", json!({"reason": "x"})).await;
    let metrics = || async { s.metrics().await };
    let q = "queue=\"pm\"";
    support::wait_until(Duration::from_secs(10), "the pause is sampled", || async {
        let text = metrics().await;
        sample(&text, "unstuck_queue_paused", &[q]) == Some(1.0)
            && sample(
                &text,
                "unstuck_queue_pause_changes_total",
                &[q, "change=\"paused\""],
            ) == Some(1.0)
    })
    .await;
    s.post("/v1/queues/pm/resume", json!({})).await;
    s.post("/v1/queues/pm/resume", json!({})).await; // a no-op: not counted
    support::wait_until(Duration::from_secs(10), "the resume is sampled", || async {
        let text = metrics().await;
        sample(&text, "unstuck_queue_paused", &[q]) == Some(0.0)
            && sample(
                &text,
                "unstuck_queue_pause_changes_total",
                &[q, "change=\"resumed\""],
            ) == Some(1.0)
    })
    .await;
    let text = metrics().await;
    assert_eq!(
        sample(
            &text,
            "unstuck_queue_pause_changes_total",
            &[q, "change=\"paused\""]
        ),
        Some(1.0)
    );
    s.stop().await;
}
