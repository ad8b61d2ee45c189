//! `POST /v1/attempts/snooze` and a failure's `retry_after_ms` over HTTP: the replies, the
//! execution view (`snoozes`, `available_at`), the stale token after a snooze, bad input
//! (nothing written), `max_snoozes` in queue settings, and `/metrics`.

use crate::http_common::{snapshot, start};
use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn instant(v: &serde_json::Value) -> i64 {
    v.as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| panic!("not an instant: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snooze_requeues_counts_and_makes_the_token_stale() {
    let s = start("http_snooze").await;
    let timings = json!({"timings": {"max_attempts": 1, "max_snoozes": 3}});
    s.enqueue("q", "job", timings).await;
    let token = s.claim("q", "w1").await;
    let r = s
        .post(
            "/v1/attempts/snooze",
            json!({"token": token, "after_ms": "150ms", "reason": "429 from the provider"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["snoozes"].as_u64()),
        (Some("snoozed"), Some(1))
    );
    assert_eq!(r.body["slot_released"], true);
    let at = instant(&r.body["available_at"]);

    let e = s.get("/v1/queues/q/executions/job").await.body;
    assert_eq!(e["state"], "queued");
    assert_eq!(
        (e["snoozes"].as_u64(), e["continuations"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(instant(&e["available_at"]), at);
    assert_eq!(e["timings"]["max_snoozes"], 3);

    // The snoozed attempt's token is stale.
    for call in ["heartbeat", "complete"] {
        let late = s
            .post(&format!("/v1/attempts/{call}"), json!({"token": token}))
            .await;
        assert_eq!(late.status, StatusCode::CONFLICT, "{call}: {late:?}");
        assert_eq!(late.problem(), "stale-attempt", "{call}");
    }

    // The event names the time and the reason.
    let events = s.get("/v1/queues/q/executions/job/events").await.body;
    let snoozed = events
        .as_array()
        .or_else(|| events["events"].as_array())
        .and_then(|list| list.iter().find(|e| e["reason"] == "snoozed"))
        .cloned()
        .unwrap_or_else(|| panic!("no snoozed event: {events}"));
    let detail = snoozed["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("until ") && detail.ends_with("(snooze 1 of 3): 429 from the provider"),
        "{detail}"
    );

    // Counted in /metrics (by the replica that holds the partition).
    support::wait_until(Duration::from_secs(10), "the snooze is counted", || async {
        let text = s.metrics().await;
        text.lines().any(|l| l == "unstuck_snoozes_total 1")
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snoozes_and_retry_afters_are_refused_with_nothing_written() {
    let s = start("http_snooze_bad").await;
    s.enqueue("q", "job", json!({})).await;
    let token = s.claim("q", "w1").await;
    let before = snapshot(&s.ledger).await;
    let past = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let far = (Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let soon = (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let bad = [
        (json!({"token": token, "reason": "x"}), "invalid-argument"),
        (
            json!({"token": token, "after_ms": 1000, "until": soon, "reason": "x"}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "until": past, "reason": "x"}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "until": far, "reason": "x"}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "after_ms": 0, "reason": "x"}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "after_ms": "8d", "reason": "x"}),
            "invalid-argument",
        ),
        (
            json!({"token": token, "after_ms": 1000, "reason": ""}),
            "invalid-argument",
        ),
    ];
    for (body, problem) in bad {
        let r = s.post("/v1/attempts/snooze", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {r:?}");
        assert_eq!(r.problem(), problem, "{body}");
    }
    let missing_reason = s
        .post(
            "/v1/attempts/snooze",
            json!({"token": token, "after_ms": 1000}),
        )
        .await;
    assert_eq!(
        missing_reason.status,
        StatusCode::BAD_REQUEST,
        "{missing_reason:?}"
    );
    for body in [
        json!({"token": token, "message": "x", "retry_after_ms": 0}),
        json!({"token": token, "message": "x", "retryable": false, "retry_after_ms": 1000}),
    ] {
        let r = s.post("/v1/attempts/fail", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {r:?}");
        assert_eq!(r.problem(), "invalid-argument", "{body}");
    }
    assert_eq!(
        snapshot(&s.ledger).await,
        before,
        "a refused call wrote something"
    );

    // A valid retry_after wins over the backoff.
    let r = s
        .post(
            "/v1/attempts/fail",
            json!({"token": token, "message": "429", "retry_after_ms": "1h"}),
        )
        .await;
    assert_eq!(r.body["outcome"], "retry_scheduled", "{r:?}");
    let wait = instant(&r.body["available_at"]) - Utc::now().timestamp_millis();
    assert!((3_500_000..=3_600_000).contains(&wait), "{wait}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_snoozes_is_a_queue_setting_and_an_enqueue_option() {
    let s = start("http_max_snoozes").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/queues/q",
            Some(json!({"timings": {"max_snoozes": 7}})),
        )
        .await;
    assert!(r.status.is_success(), "{r:?}");
    let q = s.get("/v1/queues/q").await.body;
    assert_eq!(q["timings"]["max_snoozes"], 7, "{q}");
    s.enqueue("q", "default", json!({})).await;
    let e = s.get("/v1/queues/q/executions/default").await.body;
    assert_eq!(e["timings"]["max_snoozes"], 7);
    let r = s
        .post(
            "/v1/queues/q/executions",
            json!({"id": "x", "timings": {"max_snoozes": 10001}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    s.stop().await;
}
