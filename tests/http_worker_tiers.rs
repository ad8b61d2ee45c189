//! Worker tiers over HTTP, against a real server whose watchdog expects another version:
//! the worker heartbeat reply carries the restart request, the registry listing and the
//! watchdog status show the tier, the events route lists it, and a reset needs the
//! orchestrator scope.

mod http_common;
mod support;

use std::time::Duration;

use http_common::*;
use reqwest::Method;
use serde_json::json;
use unstuck::watchdog::TierConfig;

#[tokio::test]
async fn a_worker_sees_its_tier_in_the_heartbeat_reply_and_an_operator_resets_it() {
    let mut s = start_with(settings("http_tiers", |s| {
        s.watchdog.expected_worker_version = Some("2.0".into());
        s.watchdog.tiers = TierConfig {
            enabled: true,
            interval: Duration::from_millis(50),
            cooldown_cooperative: Duration::from_secs(3600),
            ..TierConfig::default()
        };
        s.server.tokens = vec![
            format!("orchestrator:{ORCHESTRATOR}"),
            format!("worker:{WORKER}"),
            format!("read:{READ}"),
        ];
    }))
    .await;
    s.token = Some(WORKER.into());
    let reg = s
        .post("/v1/workers", json!({"version": "1.0", "queues": ["q"]}))
        .await;
    let id = reg.body["worker_id"].as_str().unwrap().to_owned();
    let beat = format!("/v1/workers/{id}/heartbeat");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let asked = loop {
        let reply = s.post(&beat, json!({})).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if let Some(request) = reply.body.get("request") {
            break request.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restart request came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(asked, json!("restart"));

    let list = s
        .call_as(Some(READ), Method::GET, "/v1/workers", None)
        .await;
    let r = &list.body["workers"][0]["remediation"];
    assert_eq!(
        (r["tier"].clone(), r["verdict"].clone()),
        (json!(1), json!("outdated")),
        "{list:?}"
    );
    assert_eq!(r["circuit_open"], false);
    let events = s
        .call_as(Some(READ), Method::GET, "/v1/workers/events", None)
        .await;
    assert_eq!(events.body["events"][0]["reason"], "tier_1", "{events:?}");
    assert_eq!(events.body["events"][0]["worker_id"], id.as_str());
    let status = s
        .call_as(Some(READ), Method::GET, "/v1/watchdog", None)
        .await;
    assert_eq!(status.body["workers_in_tier"], 1, "{status:?}");
    assert_eq!(status.body["open_circuits"], json!([]));

    let reset = format!("/v1/workers/{id}/reset");
    let refused = s.post(&reset, json!({})).await;
    assert_eq!(
        refused.status, 403,
        "a worker token may not reset: {refused:?}"
    );
    let done = s
        .call_as(
            Some(ORCHESTRATOR),
            Method::POST,
            &reset,
            Some(json!({"reason": "redeployed"})),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        done.body,
        json!({"previous_tier": 1, "circuit_was_open": false})
    );
    let events = s
        .call_as(Some(READ), Method::GET, "/v1/workers/events", None)
        .await;
    let reasons: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons[..2], ["tier_1", "circuit_reset"], "{events:?}");
    let unknown = s
        .call_as(
            Some(ORCHESTRATOR),
            Method::POST,
            "/v1/workers/nobody/reset",
            None,
        )
        .await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.problem()),
        (404, "unknown-worker")
    );
    s.shutdown.cancel();
}
