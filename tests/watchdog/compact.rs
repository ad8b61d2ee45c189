//! A running execution stays in Redis's compact hash encoding (listpack) with Redis's
//! default settings, and at or under 1 KiB (unless a text over 64 bytes is stored in it); its history is a ring of short fields that
//! keeps the newest `history_len` transitions in order.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::*;
use watchdog_common::*;

async fn encoding_and_size(l: &Ledger, queue: &str, id: &str) -> (String, u64) {
    let mut raw = raw(l).await;
    let key = keyspace(l).execution(queue, id);
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    (encoding, bytes)
}

#[tokio::test]
async fn a_running_execution_is_compact_even_after_a_retry() {
    let l = support::ledger("compact_running").await;
    let mut raw = raw(&l).await;
    let limit: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hash-max-listpack-value")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(limit[1], "64", "the test server runs with Redis's default");
    let payload = json!({"task": "summarise the incident", "ticket": 4242});
    let opts = EnqueueOptions::new()
        .id("run-1")
        .backoff_base(Duration::ZERO);
    l.enqueue("agents", &payload, opts).await.unwrap();
    let worker = "host-a-4242-01a2314862ea754d8edea47324af4ab7";
    let first = l.claim("agents", worker).await.unwrap().unwrap();
    let beat = Heartbeat::new()
        .progress("step 2 of 5")
        .checkpoint(json!({"step": 2}));
    l.heartbeat(&first.token, beat).await.unwrap();
    let (encoding, bytes) = encoding_and_size(&l, "agents", "run-1").await;
    assert_eq!(encoding, "listpack");
    assert!(bytes <= 1024, "a running execution takes {bytes} bytes");

    // The attempt fails (a short message), is retried, claimed again and runs: 7 entries.
    l.fail(&first.token, "rate limited", true).await.unwrap();
    support::wait_until(Duration::from_secs(5), "claimable again", || async {
        l.pending_count("agents").await.unwrap() == 1
    })
    .await;
    let second = l.claim("agents", worker).await.unwrap().unwrap();
    assert_eq!(second.attempt(), 2);
    l.heartbeat(&second.token, Heartbeat::new().progress("step 3 of 5"))
        .await
        .unwrap();
    let e = l.get("agents", "run-1").await.unwrap();
    let states: Vec<State> = e.history.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            State::Queued,
            State::Dispatched,
            State::Running,
            State::Queued,
            State::Dispatched,
            State::Running
        ]
    );
    let (encoding, bytes) = encoding_and_size(&l, "agents", "run-1").await;
    assert_eq!(encoding, "listpack");
    assert!(
        bytes <= 1024,
        "a retried running execution takes {bytes} bytes"
    );
}

#[tokio::test]
async fn the_history_keeps_the_newest_entries_in_order() {
    let l = support::ledger_with("compact_ring", |c| c.history_len = 4).await;
    let opts = EnqueueOptions::new().id("e").max_attempts(5);
    l.enqueue("q", &json!(1), opts).await.unwrap();
    for _ in 0..2 {
        let c = l.claim("q", "w").await.unwrap().unwrap();
        l.heartbeat(&c.token, Heartbeat::new()).await.unwrap();
        l.fail(&c.token, "again", true).await.unwrap();
        support::wait_until(Duration::from_secs(5), "backoff over", || async {
            l.get("q", "e").await.unwrap().state == State::Queued
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // backoff_base 1s
    }
    // 1 + 2 × (claimed, started, retry_scheduled) = 7 entries; the newest 4 are kept.
    let e = l.get("q", "e").await.unwrap();
    let kept: Vec<(State, &str, u32)> = e
        .history
        .iter()
        .map(|t| (t.state, t.reason.as_str(), t.attempt))
        .collect();
    assert_eq!(
        kept,
        [
            (State::Queued, "retry_scheduled", 1),
            (State::Dispatched, "claimed", 2),
            (State::Running, "started", 2),
            (State::Queued, "retry_scheduled", 2),
        ]
    );
}

#[tokio::test]
async fn a_history_written_by_an_earlier_version_is_still_read() {
    let l = support::ledger("compact_legacy").await;
    l.enqueue("q", &json!(1), EnqueueOptions::new().id("old"))
        .await
        .unwrap();
    // As an earlier version stored it: one text field of lines, no ring.
    let mut raw = raw(&l).await;
    let key = keyspace(&l).execution("q", "old");
    let _: () = redis::cmd("HDEL")
        .arg(&key)
        .arg("h0")
        .arg("hn")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("hist")
        .arg("1796000000000|queued|enqueued|0")
        .query_async(&mut raw)
        .await
        .unwrap();
    let c = l.claim("q", "w").await.unwrap().unwrap();
    l.heartbeat(&c.token, Heartbeat::new()).await.unwrap();
    let e = l.get("q", "old").await.unwrap();
    let reasons: Vec<&str> = e.history.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(reasons, ["enqueued", "claimed", "started"]);
}
