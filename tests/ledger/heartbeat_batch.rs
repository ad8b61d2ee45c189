//! Batched heartbeats (`Ledger::heartbeat_many`, lua/heartbeat.lua): every beat of a batch
//! gets its own reply in its place, judged as if it came alone; a bad beat fails only
//! itself and writes nothing; a batch over the limit is refused whole with nothing written.

use std::collections::HashMap;

use crate::ledger_common::{forged, raw, running};
use crate::support;

use redis::AsyncCommands;
use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

async fn hash(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> HashMap<String, String> {
    conn.hgetall(key).await.unwrap()
}

fn ok(cancel: bool) -> HeartbeatReply {
    HeartbeatReply::Ok {
        cancel_requested: cancel,
        cancel_reason: None,
    }
}

#[tokio::test]
async fn each_beat_of_a_mixed_batch_gets_its_own_reply_and_nothing_else_changes() {
    let ledger = support::ledger_with("beats_mixed", |c| c.max_payload_bytes = 1024).await;
    let k = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    let q = "q";
    let plain = running(&ledger, q, "plain", EnqueueOptions::new()).await;
    let retried = running(&ledger, q, "retried", EnqueueOptions::new()).await;
    ledger.fail(&retried, "boom", true).await.unwrap(); // a retry waits: the token is stale
    let done = running(&ledger, q, "done", EnqueueOptions::new()).await;
    ledger.complete(&done, None).await.unwrap();
    let genuine = running(&ledger, q, "forged", EnqueueOptions::new()).await;
    let fake = forged(&genuine, genuine.attempt());
    let cancelled = running(&ledger, q, "cancelled", EnqueueOptions::new()).await;
    ledger.cancel(q, "cancelled", "enough").await.unwrap();
    let big = running(&ledger, q, "big", EnqueueOptions::new()).await;
    ledger
        .enqueue(q, &json!({}), EnqueueOptions::new().id("fresh"))
        .await
        .unwrap();
    let fresh = ledger.claim(q, "w").await.unwrap().unwrap().token;

    let untouched = ["retried", "done", "forged", "big"];
    let mut before = HashMap::new();
    for id in untouched {
        before.insert(id, hash(&mut conn, &k.execution(q, id)).await);
    }
    let beats = vec![
        (plain.clone(), Heartbeat::new().progress("step 2")),
        (retried.clone(), Heartbeat::new()),
        (done.clone(), Heartbeat::new()),
        (fake.clone(), Heartbeat::new()),
        (cancelled.clone(), Heartbeat::new()),
        (
            big.clone(),
            Heartbeat::new().checkpoint(json!({"blob": "x".repeat(2000)})),
        ),
        (
            fresh.clone(),
            Heartbeat::new().usage(Usage::new(1).input_tokens(7)),
        ),
    ];
    let replies = ledger.heartbeat_many(&beats).await.unwrap();
    assert_eq!(replies.len(), beats.len());
    assert_eq!(replies[0].as_ref().unwrap(), &ok(false));
    assert!(
        matches!(
            replies[1].as_ref().unwrap(),
            HeartbeatReply::StaleAttempt {
                current_attempt: 1,
                state: State::Queued
            }
        ),
        "{:?}",
        replies[1]
    );
    assert!(
        matches!(
            replies[2].as_ref().unwrap(),
            HeartbeatReply::Terminal {
                state: State::Succeeded,
                ..
            }
        ),
        "{:?}",
        replies[2]
    );
    assert!(
        matches!(replies[3], Err(Error::TokenMismatch { .. })),
        "{:?}",
        replies[3]
    );
    assert_eq!(replies[4].as_ref().unwrap(), &ok(true));
    assert!(
        matches!(replies[5], Err(Error::TooLarge { .. })),
        "{:?}",
        replies[5]
    );
    assert_eq!(replies[6].as_ref().unwrap(), &ok(false));

    // What each beat did, and only that.
    let e = ledger.get(q, "plain").await.unwrap();
    assert_eq!(e.progress.as_deref(), Some("step 2"));
    let e = ledger.get(q, "fresh").await.unwrap();
    assert_eq!(e.state, State::Running, "its first beat started it");
    assert_eq!(e.usage.unwrap().totals.input_tokens, 7);
    for id in untouched {
        assert_eq!(
            hash(&mut conn, &k.execution(q, id)).await,
            before[id],
            "{id} unchanged"
        );
    }
    support::invariants::assert_ok(&ledger, &[q]).await;
}

#[tokio::test]
async fn a_batch_spans_partitions_and_one_over_the_limit_writes_nothing() {
    let ledger = support::ledger("beats_partitions").await;
    let k = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    // Queues in several partitions, one running execution each.
    let queues: Vec<String> = (0..12).map(|i| format!("bq{i}")).collect();
    let mut partitions: Vec<u16> = queues.iter().map(|q| k.partition_of(q)).collect();
    partitions.sort_unstable();
    partitions.dedup();
    assert!(partitions.len() > 1, "the queues span partitions");
    let mut beats = Vec::new();
    for q in &queues {
        let token = running(&ledger, q, "x", EnqueueOptions::new()).await;
        beats.push((token, Heartbeat::new().progress("moved")));
    }
    let replies = ledger.heartbeat_many(&beats).await.unwrap();
    assert!(
        replies.iter().all(|r| r.as_ref().unwrap() == &ok(false)),
        "{replies:?}"
    );
    for q in &queues {
        assert_eq!(
            ledger.get(q, "x").await.unwrap().progress.as_deref(),
            Some("moved")
        );
    }

    // 1001 beats: refused whole, nothing written.
    let before: Vec<_> = {
        let mut v = Vec::new();
        for q in &queues {
            v.push(hash(&mut conn, &k.execution(q, "x")).await);
        }
        v
    };
    let too_many: Vec<_> = (0..=MAX_HEARTBEAT_BATCH)
        .map(|i| {
            (
                beats[i % beats.len()].0.clone(),
                Heartbeat::new().progress("again"),
            )
        })
        .collect();
    assert_eq!(too_many.len(), 1001);
    let refused = ledger.heartbeat_many(&too_many).await;
    assert!(
        matches!(&refused, Err(Error::InvalidArgument { name, .. }) if name == "heartbeats"),
        "{refused:?}"
    );
    for (q, was) in queues.iter().zip(before) {
        assert_eq!(hash(&mut conn, &k.execution(q, "x")).await, was, "{q}");
    }
    // 1000 go through.
    let replies = ledger.heartbeat_many(&too_many[..1000]).await.unwrap();
    assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
    let names: Vec<&str> = queues.iter().map(String::as_str).collect();
    support::invariants::assert_ok(&ledger, &names).await;
}
