//! Worker tiers over HTTP, against a real server whose watchdog expects another version:
//! the worker heartbeat reply carries the restart request, the registry listing and the
//! watchdog status show the tier, the events route lists it, and a reset needs the
//! orchestrator scope.

use crate::http_common;

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = s.call_as(Some(READ), Method::GET, "/metrics", None).await;
        let text = metrics.body.as_str().unwrap_or("").to_owned();
        if text.contains("unstuck_workers_in_tier{tier=\"1\"} 1")
            && text.contains("unstuck_worker_remediation_events_total{reason=\"tier_1\"} 1")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tier metrics: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let newest = s
        .call_as(
            Some(READ),
            Method::GET,
            "/v1/workers/events?newest=true&limit=1",
            None,
        )
        .await;
    let newest = newest.body["events"].as_array().unwrap().clone();
    assert_eq!(newest.len(), 1);
    // The watchdog may judge the worker again meanwhile: the newest is the last listed
    // before or one listed after it, never an older one.
    let stream_id = |e: &serde_json::Value| -> (u64, u64) {
        let id = e["stream_id"].as_str().unwrap();
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    let listed_before = events.body["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        stream_id(&newest[0]) >= stream_id(&listed_before),
        "{newest:?}"
    );
    let after = s
        .call_as(Some(READ), Method::GET, "/v1/workers/events", None)
        .await;
    assert!(
        after.body["events"]
            .as_array()
            .unwrap()
            .contains(&newest[0]),
        "{newest:?} in {after:?}"
    );
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

/// Reads SSE messages until `want` have arrived: their (id, data JSON).
async fn read_messages(
    response: reqwest::Response,
    want: usize,
) -> Vec<(String, serde_json::Value)> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let (mut buffer, mut out) = (String::new(), Vec::new());
    while out.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events keep coming")
            .expect("the stream is open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let id = message.lines().find_map(|l| l.strip_prefix("id: "));
            let data = message.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id.to_owned(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn worker_events_stream_live_and_resume_from_last_event_id() {
    let s = start_with(settings("http_tiers_live", |s| {
        s.watchdog.expected_worker_version = Some("2.0".into());
        s.watchdog.tiers = TierConfig {
            enabled: true,
            interval: Duration::from_millis(50),
            cooldown_cooperative: Duration::from_secs(3600),
            ..TierConfig::default()
        };
    }))
    .await;
    let live = s
        .http
        .get(s.url("/v1/workers/events/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let reg = s
        .post("/v1/workers", json!({"version": "1.0", "queues": ["q"]}))
        .await;
    let id = reg.body["worker_id"].as_str().unwrap().to_owned();
    let seen = read_messages(live, 1).await;
    assert_eq!(seen[0].1["reason"], "tier_1", "{seen:?}");
    assert_eq!(seen[0].1["worker_id"], id.as_str());

    // Resumed after that event: the next one (an operator's reset) comes, not the first.
    let resumed = s
        .http
        .get(s.url("/v1/workers/events/live"))
        .header("Last-Event-ID", &seen[0].0)
        .send()
        .await
        .unwrap();
    s.post(&format!("/v1/workers/{id}/reset"), json!({})).await;
    let next = read_messages(resumed, 1).await;
    assert_eq!(next[0].1["reason"], "circuit_reset", "{next:?}");
    let bad = s
        .call(
            Method::GET,
            "/v1/workers/events/live?last_event_id=nope",
            None,
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.problem()),
        (400, "bad-request"),
        "{bad:?}"
    );
    s.shutdown.cancel();
}
