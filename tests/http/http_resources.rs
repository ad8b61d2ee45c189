//! Resource leases over HTTP: acquire, `409 resource-busy` naming the holders, release,
//! the operator's list and force-release (admin), bad input (nothing written), and
//! `/metrics`.

use crate::http_common::{other_nonce, sample, snapshot, start};
use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_busy_release_list_and_force_release() {
    let s = start("http_resources").await;
    s.enqueue("q", "a", json!({})).await;
    let a = s.claim("q", "w1").await;
    s.enqueue("q", "b", json!({})).await;
    let b = s.claim("q", "w1").await;

    let r = s
        .post(
            "/v1/attempts/acquire",
            json!({"token": a, "resource": "browser", "capacity": 1, "ttl_ms": "1h"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["capacity"].as_u64(), r.body["held"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(r.body["expires_at"].is_string(), "{r:?}");

    let busy = s
        .post(
            "/v1/attempts/acquire",
            json!({"token": b, "resource": "browser"}),
        )
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{busy:?}");
    assert_eq!(busy.problem(), "resource-busy");
    assert_eq!(busy.body["holders"][0]["id"], "a");
    assert_eq!(busy.body["holders"][0]["queue"], "q");
    assert_eq!(busy.body["holders"][0]["attempt"], 1);
    assert!(busy.body["holders"][0]["since"].is_string());

    let list = s.get("/v1/resources").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["resources"][0]["resource"], "browser");
    assert_eq!(list.body["resources"][0]["holders"][0]["id"], "a");
    let one = s.get("/v1/resources/browser").await;
    assert_eq!(one.body["held"], 1);
    let none = s.get("/v1/resources/nobody").await;
    assert_eq!(
        (none.status, none.body["held"].as_u64()),
        (StatusCode::OK, Some(0))
    );

    // A's release frees it; b acquires, waiting.
    let waiting = {
        let (http, url, b) = (s.http.clone(), s.url("/v1/attempts/acquire"), b.clone());
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"token": b, "resource": "browser", "wait_ms": 10000}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = s
        .post(
            "/v1/attempts/release",
            json!({"token": a, "resource": "browser"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["released"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    let again = s
        .post(
            "/v1/attempts/release",
            json!({"token": a, "resource": "browser"}),
        )
        .await;
    assert_eq!(again.body["released"], false);

    // Force-release (an admin route): a reason required, recorded in an event.
    let forced = s
        .post(
            "/v1/resources/browser/release",
            json!({"queue": "q", "id": "b", "reason": "operator test"}),
        )
        .await;
    assert_eq!(forced.status, StatusCode::OK, "{forced:?}");
    assert_eq!(
        (
            forced.body["released"].as_bool(),
            forced.body["attempt"].as_u64()
        ),
        (Some(true), Some(1))
    );
    let events = s.get("/v1/queues/q/executions/b/events").await.body;
    let reasons: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .filter(|r| r.starts_with("resource_"))
        .collect();
    assert_eq!(reasons, ["resource_acquired", "resource_force_released"]);

    // Counted in /metrics by the replica holding the partition.
    support::wait_until(Duration::from_secs(10), "resource metrics", || async {
        let text = s.metrics().await;
        sample(
            &text,
            "unstuck_resource_acquisitions_total",
            &["resource=\"browser\""],
        ) == Some(2.0)
            && sample(
                &text,
                "unstuck_resource_releases_total",
                &["how=\"forced\""],
            ) == Some(1.0)
            && sample(
                &text,
                "unstuck_resource_releases_total",
                &["how=\"released\""],
            ) == Some(1.0)
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resource_requests_are_refused_with_nothing_written() {
    let s = start("http_resources_bad").await;
    s.enqueue("q", "a", json!({})).await;
    let a = s.claim("q", "w1").await;
    let before = snapshot(&s.ledger).await;
    for (body, status, problem) in [
        (json!({"token": a, "resource": "a/b"}), 400, "invalid-name"),
        (
            json!({"token": a, "resource": "r", "capacity": 0}),
            400,
            "invalid-argument",
        ),
        (
            json!({"token": a, "resource": "r", "ttl_ms": 0}),
            400,
            "invalid-argument",
        ),
        (
            json!({"token": a, "resource": "r", "wait_ms": "1m"}),
            400,
            "invalid-argument",
        ),
        (
            json!({"token": a, "resource": "r", "extra": 1}),
            400,
            "bad-request",
        ),
        (
            json!({"token": other_nonce(&a), "resource": "r"}),
            409,
            "token-mismatch",
        ),
    ] {
        let r = s.post("/v1/attempts/acquire", body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {r:?}");
        assert_eq!(r.problem(), problem, "{body}");
    }
    let r = s
        .post(
            "/v1/resources/r/release",
            json!({"queue": "q", "id": "a", "reason": ""}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.problem()), (400, "invalid-argument"));
    assert_eq!(snapshot(&s.ledger).await, before);
    s.stop().await;
}
