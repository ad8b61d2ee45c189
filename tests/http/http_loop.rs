//! Loop detection over HTTP: `max_repeats` as a queue setting and an enqueue option, the
//! heartbeat's `fingerprint` and the execution view's `fingerprint {last, repeats}`, the
//! served watchdog's `looping` verdict (its event names the count), `/metrics` counting it
//! by reason, and bad input refused with nothing written.

use crate::http_common::{sample, snapshot, start};
use crate::support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_identical_fingerprints_is_judged_looping_and_counted() {
    let s = start("http_loop").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/queues/q",
            Some(
                json!({"timings": {"max_repeats": 3, "heartbeat_timeout": "60s",
                "stuck_threshold": "60s"}}),
            ),
        )
        .await;
    assert!(r.status.is_success(), "{r:?}");
    assert_eq!(
        s.get("/v1/queues/q").await.body["timings"]["max_repeats"],
        3
    );
    s.enqueue("q", "agent", json!({})).await;
    let token = s.claim("q", "w1").await;

    for _ in 0..2 {
        let r = s
            .post(
                "/v1/attempts/heartbeat",
                json!({"token": token, "fingerprint": "search(q=foo) -> 0 hits"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let e = s.get("/v1/queues/q/executions/agent").await.body;
    assert_eq!(e["timings"]["max_repeats"], 3);
    assert_eq!(
        e["fingerprint"],
        json!({"last": "search(q=foo) -> 0 hits", "repeats": 2})
    );

    // Bad fingerprints: 400, nothing written.
    let before = snapshot(&s.ledger).await;
    for bad in [String::new(), "f".repeat(129)] {
        let r = s
            .post(
                "/v1/attempts/heartbeat",
                json!({"token": token, "fingerprint": bad}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert_eq!(r.problem(), "invalid-argument");
        assert!(
            r.body["detail"].as_str().unwrap().contains("fingerprint"),
            "{r:?}"
        );
    }
    assert!(snapshot(&s.ledger).await == before, "a refused beat wrote");

    // The third in a row: the served watchdog judges it looping within a round.
    let r = s
        .post(
            "/v1/attempts/heartbeat",
            json!({"token": token, "fingerprint": "search(q=foo) -> 0 hits", "progress": "step 3"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    support::wait_until(Duration::from_secs(10), "stuck looping", || async {
        s.get("/v1/queues/q/executions/agent").await.body["state"] == "stuck"
    })
    .await;
    let events = s.get("/v1/queues/q/executions/agent/events").await.body;
    let list = events
        .get("events")
        .and_then(|v| v.as_array())
        .or(events.as_array())
        .cloned()
        .unwrap_or_default();
    let verdict = list
        .iter()
        .find(|e| e["to"] == "stuck")
        .unwrap_or_else(|| panic!("no stuck event: {events}"));
    assert_eq!(verdict["reason"], "looping", "{verdict}");
    assert_eq!(
        verdict["detail"],
        "same fingerprint 3 times in a row (max_repeats 3)"
    );
    support::wait_until(
        Duration::from_secs(10),
        "the verdict is counted",
        || async {
            let text = s.metrics().await;
            sample(
                &text,
                "unstuck_watchdog_actions_total",
                &["to=\"stuck\"", "reason=\"looping\""],
            ) == Some(1.0)
        },
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_max_repeats_is_refused_with_nothing_written() {
    let s = start("http_loop_bad").await;
    let before = snapshot(&s.ledger).await;
    for bad in [1, 10_001] {
        let r = s
            .post(
                "/v1/queues/q/executions",
                json!({"id": "x", "timings": {"max_repeats": bad}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        let r = s
            .call(
                Method::PUT,
                "/v1/queues/q",
                Some(json!({"timings": {"max_repeats": bad}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    }
    assert!(snapshot(&s.ledger).await == before, "a refused call wrote");
    s.stop().await;
}
