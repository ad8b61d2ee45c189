//! `unstuck serve` in front of a Redis that is stopped or frozen: a call that never reached
//! Redis is `503 redis-unavailable` (nothing written), one sent without a reply is `504
//! unknown-outcome`; both say when to retry.

use crate::http_common;
use crate::support;

use http_common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A server in front of a Redis of its own, for the tests that stop or freeze it.
async fn server_on(redis: &unstuck::testkit::RedisProcess, name: &str) -> TestServer {
    let url = redis.url();
    start_with(settings(name, |s| {
        s.ledger.redis_url = Some(url.to_owned());
        s.ledger.connection_timeout = std::time::Duration::from_secs(1);
        s.ledger.response_timeout = std::time::Duration::from_millis(500);
    }))
    .await
}

fn retry_after(r: &Reply) -> Option<&str> {
    r.headers.get("retry-after").and_then(|v| v.to_str().ok())
}

/// Redis killed: reads and writes alike are `503 redis-unavailable` with `Retry-After`
/// (the call never reached Redis), and after the restart the write is indeed absent.
#[tokio::test]
async fn a_stopped_redis_is_503_with_retry_after_for_reads_and_writes_and_nothing_is_written() {
    let mut redis = unstuck::testkit::RedisProcess::start(unstuck::testkit::RedisProcessOptions {
        extra_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
    .expect("a redis-server of its own");
    let s = server_on(&redis, "http_redis_stopped").await;
    s.enqueue("q", "before", json!({})).await;
    redis.kill_hard();

    // The first call may meet the closed connection itself; then the client reconnects
    // before every write, and fails before sending.
    support::wait_until(
        std::time::Duration::from_secs(20),
        "a read answers 503",
        || async { s.get("/v1/queues/q/executions/before").await.status == 503 },
    )
    .await;
    let enqueue = s
        .post("/v1/queues/q/executions", json!({"id": "during"}))
        .await;
    let settings = s
        .call(Method::PUT, "/v1/queues/q", Some(json!({"capacity": 3})))
        .await;
    let read = s.get("/v1/queues/q/executions/before").await;
    for r in [&enqueue, &settings, &read] {
        assert_eq!(
            (r.status, r.problem(), retry_after(r)),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "redis-unavailable",
                Some("1")
            ),
            "{r:?}"
        );
    }
    assert!(
        enqueue.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nothing was written")),
        "{enqueue:?}"
    );

    redis.restart().expect("redis restarts on its data");
    support::wait_until(
        std::time::Duration::from_secs(20),
        "the server reaches Redis again",
        || async { s.get("/v1/queues/q/executions/before").await.status == 200 },
    )
    .await;
    let during = s.get("/v1/queues/q/executions/during").await;
    assert_eq!(during.status, StatusCode::NOT_FOUND, "nothing was written");
    s.stop().await;
}

/// Redis frozen (SIGSTOP): the enqueue is sent and no reply comes, so it is
/// `504 unknown-outcome` with `Retry-After`; thawed, the same request converges.
#[tokio::test]
async fn a_write_sent_to_a_frozen_redis_is_504_unknown_outcome() {
    let redis = unstuck::testkit::RedisProcess::start(Default::default())
        .expect("a redis-server of its own");
    let s = server_on(&redis, "http_redis_frozen").await;
    s.enqueue("q", "before", json!({})).await;
    let frozen = support::Frozen::freeze(&redis);
    let sent = s
        .post("/v1/queues/q/executions", json!({"id": "frozen"}))
        .await;
    drop(frozen);
    assert_eq!(
        (sent.status, sent.problem(), retry_after(&sent)),
        (StatusCode::GATEWAY_TIMEOUT, "unknown-outcome", Some("1")),
        "{sent:?}"
    );
    support::wait_until(
        std::time::Duration::from_secs(20),
        "the same enqueue succeeds after SIGCONT",
        || async {
            s.post("/v1/queues/q/executions", json!({"id": "frozen"}))
                .await
                .status
                .is_success()
        },
    )
    .await;
    let listed = s.get("/v1/queues/q").await;
    assert_eq!(listed.body["depth"], json!(2), "{listed:?}");
    s.stop().await;
}
