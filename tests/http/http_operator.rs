//! The routes for operators and the dashboard, over real HTTP against a real Redis:
//! executions across queues, retry, the newest events, the watchdog's activity, what a
//! token may do, the workers' held slots, and the dashboard's files.

use crate::health_common;
use crate::http_common;
use crate::support;

use std::time::Duration;

use http_common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use unstuck::State;

fn ids(r: &Reply) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["queue"].as_str().unwrap(),
                e["id"].as_str().unwrap()
            )
        })
        .collect()
}

async fn fail(s: &TestServer, queue: &str, id: &str) {
    s.enqueue(queue, id, json!({"timings": {"max_attempts": 1}}))
        .await;
    let token = s.claim(queue, "w-fail").await;
    let beat = json!({"token": token, "checkpoint": {"step": 7}});
    assert_eq!(s.post("/v1/attempts/heartbeat", beat).await.status, 200);
    let r = s
        .post(
            "/v1/attempts/fail",
            json!({"token": token, "message": "boom", "retryable": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[tokio::test]
async fn executions_are_found_across_queues_filtered_and_paged() {
    let s = start("http_find").await;
    fail(&s, "alpha", "a1").await;
    fail(&s, "alpha", "a2").await;
    fail(&s, "beta", "b1").await;
    s.enqueue("beta", "b2", json!({})).await;

    let failed = s.get("/v1/executions?state=failed").await;
    assert_eq!(failed.status, StatusCode::OK, "{failed:?}");
    assert_eq!(ids(&failed), ["alpha/a2", "alpha/a1", "beta/b1"]);
    assert_eq!(failed.body["next_cursor"], Value::Null);

    let first = s.get("/v1/executions?state=failed&limit=2").await;
    assert_eq!(ids(&first), ["alpha/a2", "alpha/a1"]);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let rest = s
        .get(&format!(
            "/v1/executions?state=failed&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), ["beta/b1"]);

    let beta = s.get("/v1/executions?queue=beta").await;
    assert_eq!(ids(&beta), ["beta/b2", "beta/b1"]);
    let by_worker = s.get("/v1/executions?worker=w-fail&queue=alpha").await;
    assert_eq!(ids(&by_worker), ["alpha/a2", "alpha/a1"]);
    let by_reason = s.get("/v1/executions?stop_reason=failed&queue=beta").await;
    assert_eq!(ids(&by_reason), ["beta/b1"]);

    for bad in [
        "/v1/executions?state=sleeping",
        "/v1/executions?limit=0",
        "/v1/executions?cursor=nonsense",
        "/v1/executions?colour=red",
    ] {
        let r = s.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn retry_runs_a_finished_execution_again_linked_to_it() {
    let s = start("http_retry").await;
    fail(&s, "q", "f1").await;
    let r = s.post("/v1/queues/q/executions/f1/retry", json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["id"], "f1.retry1");
    assert_eq!(r.body["state"], "queued");
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        "/v1/queues/q/executions/f1.retry1"
    );
    let new = s.get("/v1/queues/q/executions/f1.retry1").await;
    assert_eq!(new.body["retry_of"], "q/f1");
    assert_eq!(new.body["checkpoint"], json!({"step": 7}));
    let old = s.get("/v1/queues/q/executions/f1").await;
    assert_eq!(old.body["state"], "failed");
    assert_eq!(old.body["retries"], json!(["f1.retry1"]));

    let named = json!({"new_id": "again", "reason": "fixed the card"});
    let r = s
        .post("/v1/queues/q/executions/f1/retry", named.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let replay = s.post("/v1/queues/q/executions/f1/retry", named).await;
    assert_eq!(replay.status, StatusCode::OK, "{replay:?}");
    assert_eq!(replay.body["created"], false);

    s.enqueue("q", "waiting", json!({})).await;
    let refused = s
        .post("/v1/queues/q/executions/waiting/retry", json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.problem(), "invalid-transition");
    let missing = s
        .post("/v1/queues/q/executions/nope/retry", json!({}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let page = s.get("/v1/executions?queue=q&state=queued").await;
    assert_eq!(ids(&page), ["q/waiting", "q/again", "q/f1.retry1"]);
    s.stop().await;
}

#[tokio::test]
async fn pin_and_unpin_an_execution_and_queue_retention_settings() {
    let s = start("http_pin").await;
    s.enqueue("p", "e1", json!({})).await;
    let r = s
        .call(Method::PUT, "/v1/queues/p/executions/e1/pin", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body, json!({"pinned": true, "state": "queued"}));
    assert!(s.ledger.get("p", "e1").await.unwrap().pinned);
    assert_eq!(
        s.get("/v1/queues/p/executions/e1").await.body["pinned"],
        true
    );
    let r = s
        .call(Method::DELETE, "/v1/queues/p/executions/e1/pin", None)
        .await;
    assert_eq!(r.body["pinned"], false);
    assert!(!s.ledger.get("p", "e1").await.unwrap().pinned);
    let missing = s
        .call(Method::PUT, "/v1/queues/p/executions/nope/pin", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let settings = json!({"retention": {"succeeded": "1h", "failed": 60000, "max_finished": 500}});
    let r = s.call(Method::PUT, "/v1/queues/p", Some(settings)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.body["retention"],
        json!({"succeeded": 3_600_000, "cancelled": null, "failed": 60000, "dead": null,
               "timed_out": null, "max_finished": 500})
    );
    let stored = s.ledger.queue_settings("p").await.unwrap().retention;
    assert_eq!(stored.failed, Some(Duration::from_secs(60)));
    let bad = s
        .call(
            Method::PUT,
            "/v1/queues/p",
            Some(json!({"retention": {"dead": "soon"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    s.stop().await;
}

#[tokio::test]
async fn recent_events_are_the_newest_oldest_first() {
    let s = start("http_recent").await;
    for i in 0..5 {
        s.enqueue("r", &format!("e{i}"), json!({})).await;
    }
    s.enqueue("other", "o1", json!({})).await;
    let r = s.get("/v1/events/recent?queue=r&limit=3").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let got: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["e2", "e3", "e4"]);
    let all = s.get("/v1/events/recent").await;
    assert_eq!(all.body["events"].as_array().unwrap().len(), 6);
    // Every page size has one rule (1 to 1000), refused the same way on every route.
    for bad in [
        "/v1/events/recent?limit=0",
        "/v1/events/recent?limit=5000",
        "/v1/workers/events?limit=0",
        "/v1/workers/events?limit=5000&newest=true",
        "/v1/executions?limit=0",
        "/v1/queues/r/executions?state=queued&limit=1001",
    ] {
        let r = s.get(bad).await;
        assert_eq!(
            (r.status, r.problem()),
            (StatusCode::BAD_REQUEST, "invalid-argument"),
            "{bad}"
        );
        assert_eq!(r.body["field"], "limit", "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn activity_counts_watchdog_actions_by_minute_and_their_lag() {
    let s = start("http_activity").await;
    let stale = json!({"timings": {"heartbeat_timeout": 200, "stuck_threshold": 0,
        "backoff_base": "1m"}});
    s.enqueue("act", "lost", stale).await;
    let token = s.claim("act", "w1").await;
    s.post("/v1/attempts/heartbeat", json!({"token": token}))
        .await;
    support::wait_until(Duration::from_secs(10), "lost was retried", || async {
        s.ledger.get("act", "lost").await.unwrap().state == State::Queued
    })
    .await;
    let a = s.get("/v1/watchdog/activity?minutes=5").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body["minutes"].as_array().unwrap().len(), 5);
    // running -> stuck and stuck -> queued: two actions, both heartbeat_lost.
    assert_eq!(a.body["totals"]["heartbeat_lost"], 2, "{a:?}");
    let in_minutes: u64 = a.body["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["actions"]["heartbeat_lost"].as_u64())
        .sum();
    assert_eq!(in_minutes, 2);
    assert_eq!(a.body["lag"]["count"], 2);
    let in_buckets: u64 = a.body["lag"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 2);
    assert!(a.body["lag"]["p99_ms"].is_u64(), "{a:?}");
    assert_eq!(a.body["truncated"], false);
    for bad in [
        "/v1/watchdog/activity?minutes=0",
        "/v1/watchdog/activity?minutes=2000",
    ] {
        assert_eq!(s.get(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn session_says_what_the_token_may_do() {
    let s = start_with_tokens("http_session").await;
    for (token, scope, steer) in [
        (Some(ADMIN), Some("admin"), true),
        (Some(ORCHESTRATOR), Some("orchestrator"), true),
        (Some(READ), Some("read"), false),
        (Some(WORKER), Some("worker"), false),
        (Some("not-a-known-token"), None, false),
        (None, None, false),
    ] {
        let r = s.call_as(token, Method::GET, "/v1/session", None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.body["scope"].as_str(), scope, "{r:?}");
        assert_eq!(r.body["can_steer"], steer, "{r:?}");
        assert_eq!(r.body["can_admin"], scope == Some("admin"), "{r:?}");
        assert_eq!(r.body["open"], false);
        let reads = matches!(scope, Some("admin" | "orchestrator" | "read"));
        assert_eq!(r.body["can_read"], reads, "{r:?}");
    }
    s.stop().await;
    let open = start("http_session_open").await;
    let r = open.get("/v1/session").await;
    assert_eq!(
        r.body,
        json!({"scope": "admin", "open": true, "can_read": true, "can_steer": true, "can_admin": true})
    );
    open.stop().await;
}

#[tokio::test]
async fn workers_list_the_slots_they_hold() {
    let s = start("http_held").await;
    let r = s
        .post("/v1/workers", json!({"worker_id": "wk-1", "queues": ["h"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    s.enqueue("h", "h1", json!({})).await;
    s.claim("h", "wk-1").await;
    let list = s.get("/v1/workers").await;
    let worker = &list.body["workers"][0];
    assert_eq!(worker["worker_id"], "wk-1");
    assert_eq!(worker["held"], json!([{"queue": "h", "id": "h1"}]));
    assert_eq!(worker["running"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let s = start_with_tokens("http_ui").await;
    let page = s.call_as(None, Method::GET, "/ui/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"/ui/app.js\">"),
        "{html}"
    );
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    for file in [
        "app.js",
        "api.js",
        "dom.js",
        "overview.js",
        "executions.js",
        "feed.js",
        "style.css",
    ] {
        let r = s
            .call_as(None, Method::GET, &format!("/ui/{file}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{file}");
        assert!(!r.body.as_str().unwrap().is_empty(), "{file}");
    }
    let js = s.call_as(None, Method::GET, "/ui/app.js", None).await;
    assert_eq!(
        js.headers["content-type"].to_str().unwrap(),
        "text/javascript; charset=utf-8"
    );
    let missing = s.call_as(None, Method::GET, "/ui/missing.js", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Every module the page imports is one the server has.
    for file in ["app.js", "overview.js", "executions.js", "feed.js"] {
        let text = s
            .call_as(None, Method::GET, &format!("/ui/{file}"), None)
            .await;
        for import in text
            .body
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("import"))
        {
            let name = import
                .rsplit("\"./")
                .next()
                .unwrap()
                .trim_end_matches("\";");
            let r = s
                .call_as(None, Method::GET, &format!("/ui/{name}"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{file} imports {name}");
        }
    }
    s.stop().await;
}

/// The value of the gauge `line_start` (a metric name with its labels) in a scrape.
fn gauge(scrape: &str, line_start: &str) -> i64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {line_start} in the scrape:\n{scrape}"))
        .trim()
        .parse()
        .unwrap()
}

/// What `/metrics` says of the verdict: healthy, and the reasons whose gauge is 1 (in the
/// order of the codes).
fn scraped_health(scrape: &str) -> (bool, Vec<&'static str>) {
    let reasons = unstuck::watchdog::HealthCode::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| {
            gauge(
                scrape,
                &format!("unstuck_health_degraded{{reason=\"{c}\"}}"),
            ) == 1
        })
        .collect();
    (gauge(scrape, "unstuck_healthy") == 1, reasons)
}

#[tokio::test]
async fn watchdog_route_and_metrics_give_the_library_health_verdict() {
    for case in health_common::CASES {
        let s = start_with(settings(&format!("health_{case}"), |s| {
            // The cases bring their own replica (or none).
            s.server.watchdog = false;
        }))
        .await;
        let _replica = health_common::set_up(&s.ledger, case).await;
        let library = unstuck::watchdog::status(&s.ledger).await.unwrap().health;
        let codes: Vec<&str> = library.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, health_common::expected(case), "{case}");

        let r = s.get("/v1/watchdog").await;
        assert_eq!(r.status, StatusCode::OK, "{case}: {r:?}");
        assert_eq!(r.body["health"], json!(library), "{case}");
        assert_eq!(
            r.body["health"]["verdict"],
            if case == "healthy" {
                "healthy"
            } else {
                "degraded"
            }
        );
        let scrape = s.get("/metrics").await;
        let scrape = scrape.body.as_str().unwrap();
        assert_eq!(
            scraped_health(scrape),
            (case == "healthy", health_common::expected(case).to_vec()),
            "{case}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn watchdog_route_and_metrics_say_redis_unreachable_with_a_verdict() {
    let mut redis = unstuck::testkit::RedisProcess::start(Default::default()).unwrap();
    let mut config = settings("health_unreachable", |s| s.server.watchdog = false);
    config.ledger.redis_url = Some(redis.url().to_owned());
    let s = start_with(config).await;
    assert_eq!(s.get("/v1/watchdog").await.status, StatusCode::OK);
    redis.kill_hard();

    let r = s.get("/v1/watchdog").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.problem(), "redis-unavailable");
    assert_eq!(r.body["health"]["verdict"], "degraded", "{r:?}");
    assert_eq!(r.body["health"]["reasons"][0]["code"], "redis_unreachable");
    let summary = r.body["health"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("degraded: Redis unreachable ("),
        "{summary}"
    );
    let scrape = s.get("/metrics").await;
    assert_eq!(
        scraped_health(scrape.body.as_str().unwrap()),
        (false, vec!["redis_unreachable"])
    );
    // No clean stop to wait for: its Redis is gone.
    s.shutdown.cancel();
}

#[tokio::test]
async fn an_executions_events_reply_has_its_whole_timeline_after_the_stream_trimmed() {
    let s = start_with(settings("http_timeline", |s| {
        s.ledger.events_max_len = 100;
    }))
    .await;
    s.enqueue("q", "t1", json!({ "timings": { "max_attempts": 1 } }))
        .await;
    let filler: Vec<Value> = (0..100).map(|_| json!({ "payload": {} })).collect();
    for _ in 0..4 {
        let r = s
            .post("/v1/queues/q/executions/batch", json!({ "items": filler }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let token = s.claim("q", "w1").await;
    let r = s
        .post(
            "/v1/attempts/fail",
            json!({ "token": token, "message": "boom", "retryable": false }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let r = s.get("/v1/queues/q/executions/t1/events").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let reasons = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}:{}", e["reason"].as_str().unwrap(), e["source"]))
            .collect()
    };
    assert_eq!(reasons(&r.body["events"]), ["claimed:null", "failed:null"]);
    assert_eq!(
        reasons(&r.body["timeline"]),
        [
            "enqueued:\"history\"",
            "claimed:\"event\"",
            "failed:\"event\""
        ]
    );
    // The same timeline as the library's (which `unstuck show` prints).
    let (_, _, timeline) = s.ledger.timeline("q", "t1").await.unwrap();
    assert_eq!(r.body["timeline"], json!(timeline));
    s.stop().await;
}
