//! `POST /v1/attempts/heartbeats`: one request beats many attempts, each answered in its
//! place as the single heartbeat would answer it; a bad beat fails only itself, a batch
//! of the wrong size is refused whole with nothing written.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use unstuck::*;

use crate::http_common::*;

const BEATS: &str = "/v1/attempts/heartbeats";

/// The batch's results, asserting a `200` with one result per beat.
async fn results(s: &TestServer, beats: Vec<Value>) -> Vec<Value> {
    let n = beats.len();
    let r = s.post(BEATS, json!({ "heartbeats": beats })).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let results = r.body["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), n, "{r:?}");
    results
}

#[tokio::test]
async fn each_beat_of_a_batch_gets_its_own_answer_and_only_its_own_effect() {
    let s = start_with(settings("http_beats_mixed", |s| {
        s.ledger.max_payload_bytes = 4096;
    }))
    .await;
    // One at a time, so each claim takes the execution just enqueued.
    let mut tokens = Vec::new();
    for id in ["live", "retried", "done", "forged", "stopme", "big"] {
        s.enqueue("q", id, json!({"timings": {"backoff_base": 0}}))
            .await;
        tokens.push(s.claim("q", &format!("w-{id}")).await);
    }
    let [live, stale, done, forged, stopme, big] = <[String; 6]>::try_from(tokens).unwrap();

    // "retried": attempt 1 fails retryably and attempt 2 is claimed; its token is stale.
    let r = s
        .post(
            "/v1/attempts/fail",
            json!({"token": stale, "message": "flaky"}),
        )
        .await;
    assert_eq!(r.body["outcome"], "retry_scheduled", "{r:?}");
    let current = s.claim("q", "w-retried-2").await;
    assert_ne!(current, stale);
    // "done" succeeded; "stopme" is asked to stop.
    let r = s
        .post("/v1/attempts/complete", json!({"token": done}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = s
        .post("/v1/queues/q/executions/stopme/cancel", json!({}))
        .await;
    assert_eq!(r.body["outcome"], "requested", "{r:?}");

    let oversized = json!({"blob": "x".repeat(5000)});
    let beats = vec![
        json!({"token": live, "progress": "half", "checkpoint": {"at": 5}}),
        json!({"token": stale, "progress": "stale progress"}),
        json!({"token": done, "progress": "late"}),
        json!({"token": other_nonce(&forged), "progress": "forged"}),
        json!({"token": stopme, "progress": "stopping"}),
        json!({"token": big, "progress": "too big", "checkpoint": oversized}),
        json!({"token": "no-slashes"}),
    ];
    let got = results(&s, beats.clone()).await;

    assert_eq!(got[0], json!({"cancel_requested": false}));
    let problem = |i: usize| kind(&got[i]);
    assert_eq!(
        problem(1),
        ("/problems/stale-attempt".into(), 409),
        "{got:?}"
    );
    assert_eq!(
        (
            &got[1]["problem"]["current_attempt"],
            &got[1]["problem"]["state"],
            &got[1]["problem"]["attempt_ended"]
        ),
        (&json!(2), &json!("dispatched"), &json!(true)),
        "{got:?}"
    );
    assert_eq!(
        problem(2),
        ("/problems/already-terminal".into(), 409),
        "{got:?}"
    );
    assert_eq!(got[2]["problem"]["state"], "succeeded", "{got:?}");
    assert_eq!(
        problem(3),
        ("/problems/token-mismatch".into(), 409),
        "{got:?}"
    );
    assert_eq!(got[3]["problem"]["current_attempt"], 1, "{got:?}");
    assert_eq!(
        got[4],
        json!({"cancel_requested": true}),
        "an operator's cancel: no cancel_reason"
    );
    assert_eq!(problem(5), ("/problems/too-large".into(), 413), "{got:?}");
    assert_eq!(
        (&got[5]["problem"]["field"], &got[5]["problem"]["limit"]),
        (&json!("checkpoint"), &json!(4096)),
        "{got:?}"
    );
    assert_eq!(
        problem(6),
        ("/problems/invalid-token".into(), 400),
        "{got:?}"
    );
    for i in [1, 2, 3, 5, 6] {
        let p = &got[i]["problem"];
        assert!(
            p["title"].is_string() && p["detail"].is_string(),
            "{i}: {p}"
        );
    }

    // Each refused beat's problem is the very document the single route answers for it.
    for i in [1, 2, 3, 5, 6] {
        let single = s.post("/v1/attempts/heartbeat", beats[i].clone()).await;
        assert_eq!(
            Some(u64::from(single.status.as_u16())),
            got[i]["problem"]["status"].as_u64(),
            "{i}"
        );
        assert_eq!(single.body, got[i]["problem"], "{i}");
    }

    // What each beat did, and nothing more.
    let e = execution(&s, "live").await;
    assert_eq!(
        (e.state, e.attempt, e.progress.as_deref(), e.checkpoint),
        (State::Running, 1, Some("half"), Some(json!({"at": 5})))
    );
    let e = execution(&s, "retried").await;
    assert_eq!(
        (e.state, e.attempt, e.progress, e.worker.as_deref()),
        (State::Dispatched, 2, None, Some("w-retried-2")),
        "the stale beat moved nothing"
    );
    let e = execution(&s, "done").await;
    assert_eq!((e.state, e.progress), (State::Succeeded, None));
    let e = execution(&s, "forged").await;
    assert_eq!(
        (e.state, e.progress),
        (State::Dispatched, None),
        "a forged token beats nothing"
    );
    let e = execution(&s, "stopme").await;
    assert_eq!(
        (e.state, e.progress.as_deref()),
        (State::Running, Some("stopping"))
    );
    let e = execution(&s, "big").await;
    assert_eq!(
        (e.state, e.progress, e.checkpoint),
        (State::Dispatched, None, None),
        "an oversized beat writes nothing, not even its progress"
    );
    s.stop().await;
}

/// A refused beat's problem type and status.
fn kind(result: &Value) -> (String, u64) {
    (
        result["problem"]["type"].as_str().unwrap_or("").to_owned(),
        result["problem"]["status"].as_u64().unwrap_or(0),
    )
}

async fn execution(s: &TestServer, id: &str) -> Execution {
    s.ledger.get("q", id).await.expect(id)
}

#[tokio::test]
async fn a_batch_of_none_or_more_than_1000_beats_is_refused_whole() {
    let s = start("http_beats_size").await;
    s.enqueue("q", "job", json!({})).await;
    let token = s.claim("q", "w").await;
    let before = snapshot(&s.ledger).await;

    let too_many = vec![json!({"token": token, "progress": "p"}); MAX_HEARTBEAT_BATCH + 1];
    for beats in [too_many, Vec::new()] {
        let n = beats.len();
        let r = s.post(BEATS, json!({ "heartbeats": beats })).await;
        assert_eq!(
            (r.status, r.problem()),
            (StatusCode::BAD_REQUEST, "invalid-argument"),
            "{n} beats"
        );
        assert_eq!(r.body["field"], "heartbeats", "{n} beats: {r:?}");
    }
    assert!(
        snapshot(&s.ledger).await == before,
        "a refused batch wrote nothing"
    );
    let e = s.ledger.get("q", "job").await.unwrap();
    assert_eq!((e.state, e.progress), (State::Dispatched, None));

    // Not the body the route takes: 400 bad-request naming the field.
    let r = s
        .post(BEATS, json!({"heartbeats": [{"token": token, "nope": 1}]}))
        .await;
    assert_eq!(
        (r.status, r.problem()),
        (StatusCode::BAD_REQUEST, "bad-request"),
        "{r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_full_batch_with_modest_checkpoints_fits_the_body_limit() {
    let s = start("http_beats_full").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/queues/q",
            Some(json!({"capacity": MAX_HEARTBEAT_BATCH})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let items: Vec<Value> = (0..MAX_HEARTBEAT_BATCH)
        .map(|i| json!({"id": format!("job-{i}"), "payload": {}}))
        .collect();
    let r = s
        .post("/v1/queues/q/executions/batch", json!({ "items": items }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = s
        .post(
            "/v1/queues/q/claims",
            json!({"worker_id": "w", "max": MAX_HEARTBEAT_BATCH}),
        )
        .await;
    let claims = r.body["claims"].as_array().expect("claims").clone();
    assert_eq!(claims.len(), MAX_HEARTBEAT_BATCH, "{r:?}");
    // 2 KiB of checkpoint a beat: about 2 MB in all.
    let beats: Vec<Value> = claims
        .iter()
        .map(|c| json!({"token": c["token"], "checkpoint": {"notes": "n".repeat(2048)}}))
        .collect();
    let got = results(&s, beats).await;
    assert!(
        got.iter().all(|r| *r == json!({"cancel_requested": false})),
        "every beat renewed"
    );
    let e = s.ledger.get("q", "job-999").await.unwrap();
    assert_eq!(e.state, State::Running);
    assert_eq!(e.checkpoint, Some(json!({"notes": "n".repeat(2048)})));
    s.stop().await;
}

#[tokio::test]
async fn batched_heartbeats_need_a_worker_token() {
    let s = start_with_tokens("http_beats_scope").await;
    s.enqueue("q", "job", json!({})).await;
    let token = s.claim("q", "w").await;
    let body = json!({"heartbeats": [{"token": token, "progress": "p"}]});
    for refused in [READ, ORCHESTRATOR] {
        let r = s
            .call_as(Some(refused), Method::POST, BEATS, Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.problem()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{r:?}"
        );
        assert_eq!(r.body["scope"], "worker");
    }
    let r = s
        .call_as(None, Method::POST, BEATS, Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let e = s.ledger.get("q", "job").await.unwrap();
    assert_eq!(
        (e.state, e.progress),
        (State::Dispatched, None),
        "refused: no beat"
    );
    let r = s
        .call_as(Some(WORKER), Method::POST, BEATS, Some(body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, json!({"results": [{"cancel_requested": false}]}));
    let e = s.ledger.get("q", "job").await.unwrap();
    assert_eq!(
        (e.state, e.progress.as_deref()),
        (State::Running, Some("p"))
    );
    s.stop().await;
}
