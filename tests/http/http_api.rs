//! Every route of `unstuck serve` and its status codes, over real HTTP against a real
//! Redis; what Redis holds afterwards is read back through the library.

use crate::http_common;
use crate::support;

use http_common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use unstuck::State;

#[tokio::test]
async fn queues_are_set_listed_and_shown() {
    let s = start("http_queues").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/queues/agents",
            Some(
                json!({"capacity": 4, "timings": {"heartbeat_timeout": "20s", "max_attempts": 3}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["capacity"], 4);
    assert_eq!(r.body["timings"]["heartbeat_timeout"], 20_000);
    assert_eq!(r.body["timings"]["max_attempts"], 3);
    assert_eq!(r.body["timings"]["deadline"], Value::Null);
    let settings = s.ledger.queue_settings("agents").await.unwrap();
    assert_eq!(settings.capacity, Some(4));

    s.enqueue("agents", "a1", json!({})).await;
    let one = s.get("/v1/queues/agents").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        (one.body["depth"].as_u64(), one.body["available"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(one.body["oldest_queued_age_ms"].is_u64(), "{one:?}");
    let all = s.get("/v1/queues").await;
    let names: Vec<&str> = all.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agents"]);
    s.stop().await;
}

#[tokio::test]
async fn enqueue_is_created_replayed_or_refused_as_a_conflict() {
    let s = start("http_enqueue").await;
    let body = json!({"id": "run-1", "payload": {"goal": "x"}, "timings": {"deadline": 3_600_000}});
    let created = s.post("/v1/queues/q/executions", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        created.headers["location"].to_str().unwrap(),
        "/v1/queues/q/executions/run-1"
    );
    assert_eq!(
        (
            created.body["created"].as_bool(),
            created.body["state"].as_str()
        ),
        (Some(true), Some("queued"))
    );

    let replay = s.post("/v1/queues/q/executions", body).await;
    assert_eq!(replay.status, StatusCode::OK, "{replay:?}");
    assert_eq!(replay.body["created"], false);

    let conflict = s
        .post(
            "/v1/queues/q/executions",
            json!({"id": "run-1", "payload": {"goal": "y"}}),
        )
        .await;
    assert_eq!(
        conflict.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{conflict:?}"
    );
    assert_eq!(conflict.problem(), "idempotency-conflict");

    // The Idempotency-Key header names the id.
    let keyed = s
        .http
        .post(s.url("/v1/queues/q/executions"))
        .header("Idempotency-Key", "from-header")
        .json(&json!({"payload": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::CREATED);
    assert_eq!(
        s.ledger.get("q", "from-header").await.unwrap().payload,
        json!(7)
    );
    let mismatch = s
        .http
        .post(s.url("/v1/queues/q/executions"))
        .header("Idempotency-Key", "one")
        .json(&json!({"id": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);

    let batch = s
        .post(
            "/v1/queues/q/executions/batch",
            json!({"items": [{"id": "b1"}, {"id": "b2", "delay": "1m"}, {"id": "run-1", "payload": {"goal": "x"}}]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{batch:?}");
    let created: Vec<bool> = batch.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created, [true, true, false]);
    assert_eq!(s.ledger.pending_count("q").await.unwrap(), 4);
    s.stop().await;
}

#[tokio::test]
async fn executions_are_listed_shown_with_events_and_cancelled() {
    let s = start("http_executions").await;
    for id in ["e1", "e2", "e3"] {
        s.enqueue("q", id, json!({})).await;
    }
    let page = s.get("/v1/queues/q/executions?state=queued&limit=2").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let ids: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e1", "e2"]);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let next = s
        .get(&format!(
            "/v1/queues/q/executions?state=queued&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.body["items"][0]["id"], "e3");
    assert_eq!(next.body["next_cursor"], Value::Null);

    let one = s.get("/v1/queues/q/executions/e1").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["timings"]["heartbeat_timeout"], 30_000);
    assert_eq!(one.body["history"][0]["reason"], "enqueued");
    let missing = s.get("/v1/queues/q/executions/nobody").await;
    assert_eq!(
        (missing.status, missing.problem()),
        (StatusCode::NOT_FOUND, "not-found")
    );
    let events = s.get("/v1/queues/q/executions/e1/events").await;
    assert_eq!(events.body["events"][0]["reason"], "enqueued");
    assert!(
        events.body["events"][0]["id"]
            .as_str()
            .unwrap()
            .contains('-')
    );

    // Queued: cancelled at once. Active: requested. Terminal: 409.
    let queued = s
        .post(
            "/v1/queues/q/executions/e3/cancel",
            json!({"reason": "not needed"}),
        )
        .await;
    assert_eq!(queued.body["outcome"], "cancelled", "{queued:?}");
    assert_eq!(
        s.ledger.get("q", "e3").await.unwrap().state,
        State::Cancelled
    );
    s.claim("q", "w1").await;
    let active = s.post("/v1/queues/q/executions/e1/cancel", json!({})).await;
    assert_eq!(
        (
            active.body["outcome"].as_str(),
            active.body["already"].as_bool()
        ),
        (Some("requested"), Some(false))
    );
    let ended = s.post("/v1/queues/q/executions/e3/cancel", json!({})).await;
    assert_eq!(
        (ended.status, ended.problem()),
        (StatusCode::CONFLICT, "already-terminal")
    );
    assert_eq!(ended.body["state"], "cancelled");
    s.stop().await;
}

#[tokio::test]
async fn attempts_heartbeat_complete_fail_and_refuse_stale_tokens() {
    let s = start("http_attempts").await;
    let none = s
        .post("/v1/queues/q/claims", json!({"worker_id": "w1"}))
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT, "nothing to claim");

    s.enqueue("q", "job", json!({"timings": {"backoff_base": 0}}))
        .await;
    let t1 = s.claim("q", "w1").await;
    let beat = s
        .post(
            "/v1/attempts/heartbeat",
            json!({"token": t1, "progress": "half", "checkpoint": {"at": 5}}),
        )
        .await;
    assert_eq!(
        (beat.status, beat.body["cancel_requested"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let failed = s
        .post(
            "/v1/attempts/fail",
            json!({"token": t1, "message": "flaky", "retryable": true}),
        )
        .await;
    assert_eq!(failed.body["outcome"], "retry_scheduled", "{failed:?}");
    assert!(failed.body["available_at"].is_string());

    // The retry waits carrying attempt 1 (its claim makes it 2): a late call of attempt 1
    // is told its attempt is over, and which number comes next.
    let waiting = s.get("/v1/queues/q/executions/job").await;
    assert_eq!(
        (
            waiting.body["state"].as_str(),
            waiting.body["attempt"].as_u64()
        ),
        (Some("queued"), Some(1))
    );
    for call in ["heartbeat", "complete"] {
        let late = s
            .post(&format!("/v1/attempts/{call}"), json!({"token": t1}))
            .await;
        assert_eq!(
            (late.status, late.problem()),
            (StatusCode::CONFLICT, "stale-attempt"),
            "{call}"
        );
        assert_eq!(
            (
                &late.body["attempt_ended"],
                &late.body["current_attempt"],
                &late.body["state"],
                &late.body["next_attempt"]
            ),
            (&json!(true), &json!(1), &json!("queued"), &json!(2)),
            "{call}: {late:?}"
        );
        assert!(
            late.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("your attempt is over")),
            "{late:?}"
        );
    }

    // Attempt 2 resumes from the checkpoint; attempt 1's token is stale now.
    let r = s
        .post("/v1/queues/q/claims", json!({"worker_id": "w2", "max": 5}))
        .await;
    let claim = &r.body["claims"][0];
    assert_eq!(
        (claim["attempt"].as_u64(), &claim["checkpoint"]),
        (Some(2), &json!({"at": 5}))
    );
    let t2 = claim["token"].as_str().unwrap().to_owned();
    let stale = s.post("/v1/attempts/heartbeat", json!({"token": t1})).await;
    assert_eq!(
        (stale.status, stale.problem()),
        (StatusCode::CONFLICT, "stale-attempt")
    );
    assert_eq!(
        (
            stale.body["current_attempt"].as_u64(),
            stale.body["state"].as_str()
        ),
        (Some(2), Some("dispatched"))
    );
    assert_eq!(
        (&stale.body["attempt_ended"], &stale.body["next_attempt"]),
        (&json!(true), &json!(null))
    );

    let no_cancel = s
        .post("/v1/attempts/cancel-ack", json!({"token": t2}))
        .await;
    assert_eq!(
        (no_cancel.status, no_cancel.problem()),
        (StatusCode::CONFLICT, "invalid-transition")
    );
    let done = s
        .post(
            "/v1/attempts/complete",
            json!({"token": t2, "result": {"ok": true}}),
        )
        .await;
    assert_eq!(
        (done.status, done.body["slot_released"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let again = s.post("/v1/attempts/complete", json!({"token": t2})).await;
    assert_eq!(
        (again.status, again.problem()),
        (StatusCode::CONFLICT, "already-terminal")
    );
    assert_eq!(
        (
            again.body["state"].as_str(),
            again.body["stop_reason"].as_str()
        ),
        (Some("succeeded"), Some("succeeded"))
    );
    let e = s.ledger.get("q", "job").await.unwrap();
    assert_eq!(
        (e.state, e.attempt, e.result),
        (State::Succeeded, 2, Some(json!({"ok": true})))
    );

    // A forged nonce, a malformed token, a fatal failure, an acknowledged cancel.
    let forged = other_nonce(&t2);
    let r = s
        .post("/v1/attempts/heartbeat", json!({"token": forged}))
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::CONFLICT, "already-terminal")
    );
    let r = s
        .post("/v1/attempts/heartbeat", json!({"token": "no-slashes"}))
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::BAD_REQUEST, "invalid-token")
    );
    s.enqueue("q", "fatal", json!({})).await;
    let t = s.claim("q", "w3").await;
    let r = s
        .post(
            "/v1/attempts/fail",
            json!({"token": t, "message": "bad input", "retryable": false}),
        )
        .await;
    assert_eq!(r.body["outcome"], "failed");
    s.enqueue("q", "stopme", json!({})).await;
    let t = s.claim("q", "w4").await;
    s.post("/v1/queues/q/executions/stopme/cancel", json!({}))
        .await;
    let r = s.post("/v1/attempts/heartbeat", json!({"token": t})).await;
    assert_eq!(r.body["cancel_requested"], true);
    let r = s.post("/v1/attempts/cancel-ack", json!({"token": t})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        s.ledger.get("q", "stopme").await.unwrap().state,
        State::Cancelled
    );
    s.enqueue("q", "other", json!({})).await;
    let t = s.claim("q", "w5").await;
    let forged = other_nonce(&t);
    let r = s
        .post("/v1/attempts/complete", json!({"token": forged}))
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::CONFLICT, "token-mismatch")
    );
    s.stop().await;
}

#[tokio::test]
async fn workers_register_beat_list_and_leave() {
    let s = start("http_workers").await;
    let r = s
        .post("/v1/workers", json!({"host": "box-1", "pid": 42, "version": "1.2", "queues": ["q"], "heartbeat_interval": "5s"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id = r.body["worker_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("box-1-42-"), "{id}");
    let twice = s
        .post("/v1/workers", json!({"worker_id": id, "queues": []}))
        .await;
    assert_eq!(
        (twice.status, twice.problem()),
        (StatusCode::CONFLICT, "worker-exists")
    );
    let beat = s
        .post(
            &format!("/v1/workers/{id}/heartbeat"),
            json!({"running": [{"queue": "q", "id": "e1"}]}),
        )
        .await;
    assert_eq!(beat.status, StatusCode::OK, "{beat:?}");
    let list = s.get("/v1/workers").await;
    let w = &list.body["workers"][0];
    assert_eq!(
        (w["worker_id"].as_str(), w["heartbeat_interval"].as_u64()),
        (Some(id.as_str()), Some(5000))
    );
    assert_eq!(w["running"], json!([{"queue": "q", "id": "e1"}]));
    let gone = s
        .call(Method::DELETE, &format!("/v1/workers/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = s
        .call(Method::DELETE, &format!("/v1/workers/{id}"), None)
        .await;
    assert_eq!(
        (again.status, again.problem()),
        (StatusCode::NOT_FOUND, "unknown-worker")
    );
    let beat = s
        .post(&format!("/v1/workers/{id}/heartbeat"), json!({}))
        .await;
    assert_eq!(beat.problem(), "unknown-worker");
    assert!(s.ledger.workers().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn the_service_routes_answer() {
    let s = start("http_service").await;
    assert_eq!(s.get("/healthz").await.body["status"], "ok");
    assert_eq!(s.get("/readyz").await.body["status"], "ready");
    let wd = s.get("/v1/watchdog").await;
    assert_eq!(wd.body["partitions"].as_array().map(Vec::len), Some(16));
    support::wait_until(
        std::time::Duration::from_secs(5),
        "the replica holds partitions",
        || async {
            let wd = s.get("/v1/watchdog").await;
            wd.body["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["owner"].is_string())
        },
    )
    .await;
    let doc = s.get("/openapi.json").await;
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in [
        "/v1/queues",
        "/v1/queues/{queue}",
        "/v1/queues/{queue}/executions",
        "/v1/queues/{queue}/executions/batch",
        "/v1/queues/{queue}/executions/{id}",
        "/v1/queues/{queue}/executions/{id}/events",
        "/v1/queues/{queue}/executions/{id}/cancel",
        "/v1/queues/{queue}/executions/{id}/retry",
        "/v1/queues/{queue}/executions/{id}/pin",
        "/v1/executions",
        "/v1/queues/{queue}/claims",
        "/v1/attempts/heartbeat",
        "/v1/attempts/complete",
        "/v1/attempts/fail",
        "/v1/attempts/cancel-ack",
        "/v1/workers",
        "/v1/workers/{worker}/heartbeat",
        "/v1/workers/{worker}",
        "/v1/events",
        "/v1/events/recent",
        "/v1/watchdog",
        "/v1/watchdog/activity",
        "/v1/session",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "openapi.json lacks {path}");
    }
    let metrics = s.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("unstuck_http_requests_total{"), "{text}");
    assert!(text.contains("route=\"/openapi.json\""), "{text}");
    let p = s.get("/problems/stale-attempt").await;
    assert_eq!(p.status, StatusCode::OK);
    let nothing = s.get("/v1/nothing").await;
    assert_eq!(
        (nothing.status, nothing.problem()),
        (StatusCode::NOT_FOUND, "no-route")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_watchdog_actions_false_alarms_and_queues() {
    let s = start("http_metrics").await;
    // One goes stale and is retried; one goes stale and is revived (a false alarm).
    let stale =
        json!({"timings": {"heartbeat_timeout": 200, "stuck_threshold": 0, "backoff_base": "1m"}});
    s.enqueue("m", "lost", stale).await;
    let lost = s.claim("m", "w1").await;
    s.post("/v1/attempts/heartbeat", json!({"token": lost}))
        .await;
    let alive = json!({"timings": {"heartbeat_timeout": 200, "stuck_threshold": "1m"}});
    s.enqueue("m", "alive", alive).await;
    let token = s.claim("m", "w1").await;
    s.post("/v1/attempts/heartbeat", json!({"token": token}))
        .await;
    support::wait_until(
        std::time::Duration::from_secs(10),
        "alive went stuck",
        || async { s.ledger.get("m", "alive").await.unwrap().state == State::Stuck },
    )
    .await;
    s.post("/v1/attempts/heartbeat", json!({"token": token}))
        .await; // revived
    support::wait_until(
        std::time::Duration::from_secs(10),
        "metrics caught up",
        || async {
            let text = s.metrics().await;
            sample(&text, "unstuck_false_alarms_total", &[]) == Some(1.0)
                && sample(
                    &text,
                    "unstuck_executions",
                    &["queue=\"m\"", "state=\"queued\""],
                ) == Some(1.0)
        },
    )
    .await;
    let text = s.metrics().await;
    // "alive" may go stale again after its revival (no more beats): at least twice.
    let stuck = sample(
        &text,
        "unstuck_watchdog_actions_total",
        &["to=\"stuck\"", "reason=\"heartbeat_lost\""],
    )
    .unwrap_or(0.0);
    assert!(stuck >= 2.0, "{text}");
    let retried = sample(
        &text,
        "unstuck_watchdog_actions_total",
        &["to=\"queued\"", "reason=\"heartbeat_lost\""],
    );
    assert_eq!(retried, Some(1.0), "{text}");
    let lags = sample(&text, "unstuck_detection_lag_seconds_count", &[]);
    assert_eq!(lags, Some(stuck + 1.0), "one lag per action: {text}");
    assert_eq!(
        sample(&text, "unstuck_slots_in_use", &["queue=\"m\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "unstuck_partitions_held", &[]),
        Some(16.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "unstuck_systemic_holds_total", &[]),
        Some(0.0),
        "{text}"
    );
    s.stop().await;
}
