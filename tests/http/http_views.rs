//! Every view the API serves is the library's own type serialized: the JSON of a route
//! equals `serde_json::to_value` of what the library call returns, with durations in
//! integer milliseconds (the API's public contract) and the field names the docs list.

use crate::http_common;

use http_common::*;
use serde_json::{Value, json};

/// The library's serde form of a value.
fn wire<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serializable")
}

#[tokio::test]
async fn executions_events_and_enqueue_replies_are_the_library_types_in_milliseconds() {
    let s = start("http_views_exec").await;
    let timings = json!({"heartbeat_timeout": "20s", "deadline": 3_600_000});
    let created = s.enqueue("q", "e1", json!({ "timings": timings })).await;
    let stored = s.ledger.get("q", "e1").await.unwrap();
    assert_eq!(
        created.body,
        json!({
            "queue": "q", "id": "e1", "created": true, "conflict": false,
            "state": "queued", "attempt": 0,
            "created_at": wire(&stored.created_at),
        })
    );
    let cancelled = s
        .post("/v1/queues/q/executions/e1/cancel", json!({"reason": "no"}))
        .await;
    assert_eq!(cancelled.body["outcome"], "cancelled", "{cancelled:?}");
    let retried = s
        .post("/v1/queues/q/executions/e1/retry", json!({"new_id": "e2"}))
        .await;
    assert_eq!(retried.body["id"], "e2", "{retried:?}");

    let one = s.get("/v1/queues/q/executions/e1").await;
    let execution = s.ledger.get("q", "e1").await.unwrap();
    assert_eq!(one.body, wire(&execution));
    assert_eq!(one.body["timings"]["heartbeat_timeout"], 20_000);
    assert_eq!(one.body["timings"]["deadline"], 3_600_000);
    assert_eq!(one.body["timings"]["no_progress_timeout"], Value::Null);
    assert_eq!(one.body["timings"]["max_attempts"], 2);
    assert_eq!(
        one.body["stop"],
        json!({"reason": "cancelled", "timeout": 3_600_000,
               "timeout_configured": true, "timeout_fired": false})
    );
    assert_eq!(one.body["retries"], json!(["e2"]));
    let again = s.get("/v1/queues/q/executions/e2").await;
    assert_eq!(again.body["retry_of"], "q/e1");
    assert_eq!(again.body, wire(&s.ledger.get("q", "e2").await.unwrap()));
    let parsed: unstuck::Execution = serde_json::from_value(again.body.clone()).unwrap();
    assert_eq!(parsed.retry_of, Some(("q".into(), "e1".into())));

    let page = s.get("/v1/queues/q/executions?state=cancelled").await;
    let listed = s
        .ledger
        .list("q", unstuck::State::Cancelled, None, 50)
        .await
        .unwrap();
    assert_eq!(page.body["items"], wire(&listed.items));
    let events = s.get("/v1/queues/q/executions/e1/events").await;
    let library = s.ledger.execution_events("q", "e1").await.unwrap();
    assert_eq!(events.body["events"], wire(&library));
    let first = &library[0];
    assert_eq!(
        events.body["events"][0]["id"],
        format!("{}-{}", first.partition, first.stream_id)
    );
    s.stop().await;
}

#[tokio::test]
async fn queues_and_workers_are_the_library_types_in_milliseconds() {
    let s = start("http_views_queues").await;
    let settings = json!({"capacity": 2, "timings": {"stuck_threshold": "1m"},
                          "retention": {"succeeded": "2h", "max_finished": 10}});
    let set = s
        .call(reqwest::Method::PUT, "/v1/queues/q", Some(settings))
        .await;
    assert_eq!(set.body["timings"]["stuck_threshold"], 60_000, "{set:?}");
    assert_eq!(set.body["timings"]["heartbeat_timeout"], Value::Null);
    assert_eq!(set.body["retention"]["succeeded"], 7_200_000);
    assert_eq!(set.body["retention"]["failed"], Value::Null);
    assert_eq!(set.body["own_capacity"], 2);

    let r = s
        .post(
            "/v1/workers",
            json!({"queues": ["q"], "heartbeat_interval": "5s"}),
        )
        .await;
    let worker = r.body["worker_id"].as_str().unwrap().to_owned();
    s.enqueue("q", "e1", json!({})).await;
    s.claim("q", &worker).await;
    s.post(
        &format!("/v1/workers/{worker}/heartbeat"),
        json!({"running": [{"queue": "q", "id": "e1"}]}),
    )
    .await;

    // The age moves between two reads: compared apart.
    let mut shown = s.get("/v1/queues/q").await.body;
    let mut overview = wire(&s.ledger.queue_overview("q").await.unwrap());
    for view in [&mut shown, &mut overview] {
        let age = view.as_object_mut().unwrap().remove("oldest_queued_age_ms");
        assert_eq!(age, Some(Value::Null), "nothing waits: {view}");
    }
    assert_eq!(shown, overview);
    assert_eq!(
        (shown["capacity"].as_u64(), shown["active"].as_u64()),
        (Some(2), Some(1))
    );

    let listed = s.get("/v1/workers").await;
    let holders = s.ledger.slot_holders().await.unwrap();
    let workers: Vec<_> = s
        .ledger
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.with_held(&holders))
        .collect();
    assert_eq!(listed.body["workers"], wire(&workers));
    let w = &listed.body["workers"][0];
    assert_eq!(w["heartbeat_interval"], 5_000);
    assert_eq!(w["running"], json!([{"queue": "q", "id": "e1"}]));
    assert_eq!(w["held"], json!([{"queue": "q", "id": "e1"}]));
    s.stop().await;
}
