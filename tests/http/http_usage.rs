//! Usage and budgets over HTTP: heartbeat, complete and fail carry usage (seq required,
//! bad usage a 400 with nothing written, replays not counted twice); the execution and
//! the queue usage views; the budget's cancel reason in the heartbeat reply; the queue
//! settings' budgets; `/metrics` has the usage counters by queue and model.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::http_common::*;
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_once_shown_and_exported() {
    let s = start("http_usage").await;
    s.enqueue(
        "u",
        "a",
        json!({"budget": {"tokens": 100, "warning_share": 0.5}}),
    )
    .await;
    let token = s.claim("u", "w").await;
    let beat = |usage: serde_json::Value| json!({"token": token, "usage": usage});

    // Refused: no seq, cached above input, an unknown member. Nothing written.
    let before = snapshot(&s.ledger).await;
    for bad in [
        json!({"input_tokens": 1}),
        json!({"input_tokens": 1, "cached_input_tokens": 2, "seq": 1}),
        json!({"input_tokens": 1, "seq": 1, "tokens": 3}),
        json!({"input_tokens": -1, "seq": 1}),
    ] {
        let r = s.post("/v1/attempts/heartbeat", beat(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
    }
    assert_eq!(snapshot(&s.ledger).await, before, "refusals wrote nothing");

    let one = json!({"input_tokens": 30, "output_tokens": 10, "cost": 5, "model": "m", "seq": 1});
    for _ in 0..2 {
        let r = s.post("/v1/attempts/heartbeat", beat(one.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.body, json!({"cancel_requested": false}));
    }
    let over = json!({"input_tokens": 60, "seq": 2});
    let r = s.post("/v1/attempts/heartbeat", beat(over)).await;
    assert_eq!(
        r.body,
        json!({"cancel_requested": true, "cancel_reason": "budget_exceeded"})
    );
    let e = s.get("/v1/queues/u/executions/a").await.body;
    assert_eq!(e["usage"]["input_tokens"], 90);
    assert_eq!(e["usage"]["output_tokens"], 10);
    assert_eq!(e["usage"]["by_model"]["m"]["cost"], 5);
    assert_eq!(e["budget"]["tokens"], 100);
    assert_eq!(e["cancel_reason"], "budget_exceeded");

    // A fail carrying the last delta ends it cancelled (the request came first).
    let fail =
        json!({"token": token, "message": "stopping", "usage": {"output_tokens": 7, "seq": 3}});
    let r = s.post("/v1/attempts/fail", fail.clone()).await;
    assert_eq!(r.body["outcome"], "cancelled", "{r:?}");
    let r = s.post("/v1/attempts/fail", fail).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a replay: {r:?}");
    let e = s.get("/v1/queues/u/executions/a").await.body;
    assert_eq!(e["stop"]["reason"], "budget_exceeded");
    assert_eq!(e["usage"]["output_tokens"], 17);

    let q = s.get("/v1/queues/u/usage").await;
    assert_eq!(q.status, StatusCode::OK, "{q:?}");
    assert_eq!(q.body["totals"]["input_tokens"], 90);
    assert_eq!(q.body["window"]["output_tokens"], 17);
    assert_eq!(q.body["window_ms"], 86_400_000);
    assert_eq!(q.body["currency"], "USD");
    assert_eq!(q.body["currency"], "USD");

    support::wait_until(Duration::from_secs(10), "usage is exported", || async {
        let text = s.metrics().await;
        sample(
            &text,
            "unstuck_usage_input_tokens_total",
            &["queue=\"u\"", "model=\"m\""],
        ) == Some(30.0)
            && sample(
                &text,
                "unstuck_usage_input_tokens_total",
                &["queue=\"u\"", "model=\"\""],
            ) == Some(60.0)
            && sample(&text, "unstuck_usage_cost_micros_total", &["model=\"m\""]) == Some(5.0)
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_budgets_are_settings_and_a_spent_window_pauses_the_queue() {
    let s = start("http_usage_window").await;
    let settings = json!({
        "budget": {"cost": 1000},
        "window_budget": {"tokens": 50, "window_ms": 600000}
    });
    let r = s
        .call(reqwest::Method::PUT, "/v1/queues/w", Some(settings))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["budget"]["cost"], 1000);
    assert_eq!(r.body["window_budget"]["tokens"], 50);
    let bad = json!({"window_budget": {"tokens": 0}});
    let r = s
        .call(reqwest::Method::PUT, "/v1/queues/w", Some(bad))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    s.enqueue("w", "a", json!({})).await;
    let token = s.claim("w", "w1").await;
    let done = json!({"token": token, "result": 1, "usage": {"output_tokens": 50, "seq": 1}});
    assert_eq!(
        s.post("/v1/attempts/complete", done).await.status,
        StatusCode::OK
    );
    let q = s.get("/v1/queues/w").await.body;
    assert_eq!(q["paused"], true, "{q}");
    assert_eq!(q["pause"]["by"], "budget");
    let u = s.get("/v1/queues/w/usage").await.body;
    assert_eq!(u["window_budget"]["window_ms"], 600000);
    assert_eq!(u["window"]["output_tokens"], 50);
    s.stop().await;
}
