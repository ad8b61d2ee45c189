//! The long-lived requests of `unstuck serve`: long-poll claims answered by an enqueue and
//! empty (`204`) at their timeout, the event stream resumed after a dropped connection
//! without losing an event, and a graceful shutdown while both are open.

use crate::http_common;
use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use http_common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use unstuck::watchdog;

const WAIT: Duration = Duration::from_secs(20);

async fn long_poll(s: &TestServer, queue: &str, wait_ms: u64) -> (StatusCode, Value, Duration) {
    let began = Instant::now();
    let r = s
        .post(
            &format!("/v1/queues/{queue}/claims"),
            json!({"worker_id": "poller", "wait_ms": wait_ms}),
        )
        .await;
    (r.status, r.body, began.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_by_an_enqueue_and_is_empty_at_its_timeout() {
    let s = start("http_poll").await;
    let (status, _, waited) = long_poll(&s, "q", 300).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");

    let poll = tokio::spawn({
        let (base, http) = (s.base.clone(), s.http.clone());
        async move {
            let began = Instant::now();
            let r = http
                .post(format!("{base}/v1/queues/q/claims"))
                .json(&json!({"worker_id": "poller", "wait_ms": "10s"}))
                .send()
                .await
                .unwrap();
            (
                r.status(),
                r.json::<Value>().await.unwrap(),
                began.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.enqueue("q", "wanted", json!({})).await;
    let (status, body, waited) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["claims"][0]["id"], "wanted");
    assert!(
        waited < Duration::from_secs(10),
        "answered by the enqueue: {waited:?}"
    );
    s.stop().await;
}

/// Reads SSE messages from a response until `want` have arrived: their (id, event JSON).
async fn read_events(response: reqwest::Response, want: usize) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("events keep coming")
            .expect("the stream is open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

async fn subscribe(s: &TestServer, query: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = s.http.get(s.url(&format!("/v1/events{query}")));
    if let Some(id) = last {
        request = request.header("Last-Event-ID", id);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_event_stream_misses_nothing() {
    let s = start_with(settings("http_sse", |s| s.server.watchdog = false)).await;
    // Queues in different partitions, so the resume spans partitions.
    let queues: Vec<String> = (0..40)
        .map(|i| format!("q{i}"))
        .fold(Vec::new(), |mut acc, q| {
            if acc.len() < 3
                && acc
                    .iter()
                    .all(|a: &String| s.ledger.partition_of(a) != s.ledger.partition_of(&q))
            {
                acc.push(q);
            }
            acc
        });
    let first = subscribe(&s, "", None).await;
    for (i, q) in queues.iter().enumerate() {
        s.enqueue(q, &format!("a{i}"), json!({})).await;
    }
    let seen = read_events(first, 2).await; // then the connection drops
    let last_id = seen.last().unwrap().0.clone();
    for (i, q) in queues.iter().enumerate() {
        s.enqueue(q, &format!("b{i}"), json!({})).await;
    }
    let resumed = subscribe(&s, "", Some(&last_id)).await;
    let rest = read_events(resumed, 4).await;
    let ids: BTreeSet<String> = seen
        .iter()
        .chain(&rest)
        .map(|(_, e)| e["execution_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..queues.len())
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    assert_eq!(ids, expected, "every event seen across the reconnect");
    assert!(
        rest.iter().all(|(id, _)| *id != last_id),
        "the last seen event is not sent again"
    );

    // A queue filter only sends that queue's events.
    let filtered = subscribe(&s, &format!("?queue={}", queues[1]), None).await;
    s.enqueue(&queues[0], "elsewhere", json!({})).await;
    s.enqueue(&queues[1], "here", json!({})).await;
    let only = read_events(filtered, 1).await;
    assert_eq!(only[0].1["execution_id"], "here");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_long_polls_ends_streams_and_hands_leases_back() {
    let s = start("http_shutdown").await;
    support::wait_until(WAIT, "the replica holds partitions", || async {
        watchdog::status(&s.ledger)
            .await
            .unwrap()
            .unwatched()
            .is_empty()
    })
    .await;
    let polls: Vec<_> = (0..3)
        .map(|i| {
            let (base, http) = (s.base.clone(), s.http.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/v1/queues/q/claims"))
                    .json(&json!({"worker_id": format!("w{i}"), "wait_ms": 25_000}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let stream = subscribe(&s, "", None).await;
    let reader = tokio::spawn(async move {
        let mut body = stream.bytes_stream();
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ledger = s.ledger.clone();
    let began = Instant::now();
    s.stop().await;
    for poll in polls {
        assert_eq!(poll.await.unwrap(), StatusCode::NO_CONTENT);
    }
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the event stream ended")
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let after = watchdog::status(&ledger).await.unwrap();
    assert_eq!(after.unwatched().len(), 16, "leases handed back");
}
