//! One execution's life through the ledger API: enqueue, claim, heartbeat, complete; the
//! idempotent enqueue; generated ids and FIFO claims; delayed availability; the server clock.

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use unstuck::*;

use ledger_common::{raw, server_ms};

const KEEP_GOING: HeartbeatReply = HeartbeatReply::Ok {
    cancel_requested: false,
    cancel_reason: None,
};

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[tokio::test]
async fn enqueue_claim_heartbeat_complete() {
    let ledger = support::ledger("lifecycle_full").await;
    let deadline = Duration::from_secs(600);
    let payload = json!({"report": "2026-11", "pages": [1, 2, 3]});
    let enqueued = ledger
        .enqueue(
            "reports",
            &payload,
            EnqueueOptions::new().id("r-1").deadline(deadline),
        )
        .await
        .unwrap();
    assert!(enqueued.created && !enqueued.conflict);
    assert_eq!(
        (enqueued.id.as_str(), enqueued.state, enqueued.attempt),
        ("r-1", State::Queued, 0)
    );
    // The same request again is a replay; the same id for other work is a conflict.
    let replay = EnqueueOptions::new().id("r-1").deadline(deadline);
    let again = ledger.enqueue("reports", &payload, replay).await.unwrap();
    assert_eq!((again.created, again.conflict), (false, false));
    let other_payload = ledger
        .enqueue(
            "reports",
            &json!({"report": "2026-12"}),
            EnqueueOptions::new().id("r-1"),
        )
        .await
        .unwrap();
    assert_eq!(
        (other_payload.created, other_payload.conflict),
        (false, true)
    );
    let other_timing = EnqueueOptions::new().id("r-1").deadline(deadline * 2);
    let other_timing = ledger
        .enqueue("reports", &payload, other_timing)
        .await
        .unwrap();
    assert_eq!((other_timing.created, other_timing.conflict), (false, true));
    let unset_timing = ledger
        .enqueue("reports", &payload, EnqueueOptions::new().id("r-1"))
        .await
        .unwrap();
    assert!(!unset_timing.conflict, "timings not given are not compared");

    let claim = ledger.claim("reports", "worker-a").await.unwrap().unwrap();
    assert_eq!(
        (claim.queue(), claim.id(), claim.attempt()),
        ("reports", "r-1", 1)
    );
    assert_eq!(claim.payload, payload);
    assert_eq!(claim.checkpoint, None);
    assert_eq!(
        claim.deadline_at,
        Some(enqueued.created_at + chrono::Duration::from_std(deadline).unwrap())
    );
    let dispatched = ledger.get("reports", "r-1").await.unwrap();
    assert_eq!(dispatched.state, State::Dispatched);
    assert_eq!(dispatched.worker.as_deref(), Some("worker-a"));
    assert_eq!(dispatched.started_at, None);
    assert_eq!(ledger.slots_in_use("reports").await.unwrap(), 1);
    assert_eq!(ledger.pending_count("reports").await.unwrap(), 0);

    let beat = Heartbeat::new()
        .progress("page 1")
        .checkpoint(json!({"page": 1}));
    assert_eq!(
        ledger.heartbeat(&claim.token, beat).await.unwrap(),
        KEEP_GOING
    );
    let running = ledger.get("reports", "r-1").await.unwrap();
    assert_eq!(running.state, State::Running);
    assert_eq!(running.progress.as_deref(), Some("page 1"));
    assert_eq!(running.checkpoint, Some(json!({"page": 1})));
    assert!(running.started_at.is_some());
    assert_eq!(running.last_heartbeat_at, running.started_at);

    // A later heartbeat stays in running and replaces progress and checkpoint.
    let beat = Heartbeat::new()
        .progress("page 2")
        .checkpoint(json!({"page": 2}));
    assert_eq!(
        ledger.heartbeat(&claim.token, beat).await.unwrap(),
        KEEP_GOING
    );
    let running = ledger.get("reports", "r-1").await.unwrap();
    assert_eq!(running.state, State::Running);
    assert_eq!(running.progress.as_deref(), Some("page 2"));
    assert_eq!(running.checkpoint, Some(json!({"page": 2})));

    let result = json!({"url": "s3://reports/2026-11.pdf"});
    assert_eq!(
        ledger.complete(&claim.token, Some(&result)).await.unwrap(),
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );
    let done = ledger.get("reports", "r-1").await.unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.result, Some(result));
    assert_eq!(done.attempt, 1);
    let finished_at = done.finished_at.expect("finished_at is set");
    assert!(finished_at >= running.last_heartbeat_at.unwrap());
    assert_eq!(
        done.stop,
        Some(StopMetadata {
            reason: StopReason::Succeeded,
            timeout: Some(deadline),
            timeout_configured: true,
            timeout_fired: false,
        })
    );
    let history: Vec<(State, &str, u32)> = done
        .history
        .iter()
        .map(|t| (t.state, t.reason.as_str(), t.attempt))
        .collect();
    assert_eq!(
        history,
        [
            (State::Queued, "enqueued", 0),
            (State::Dispatched, "claimed", 1),
            (State::Running, "started", 1),
            (State::Succeeded, "completed", 1),
        ]
    );
    assert!(done.history.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(done.history[0].at, done.created_at);
    assert_eq!(done.history[3].at, finished_at);
    assert_eq!(ledger.slots_in_use("reports").await.unwrap(), 0);
    let succeeded = ledger
        .list("reports", State::Succeeded, None, 10)
        .await
        .unwrap();
    assert_eq!(succeeded.items, vec![done]);
    support::invariants::assert_ok(&ledger, &["reports"]).await;
}

#[tokio::test]
async fn no_deadline_means_no_timeout_configured() {
    let ledger = support::ledger("lifecycle_nodeadline").await;
    let token = ledger_common::running(&ledger, "q", "x", EnqueueOptions::new()).await;
    ledger.complete(&token, None).await.unwrap();
    let done = ledger.get("q", "x").await.unwrap();
    assert_eq!(done.result, None);
    assert_eq!(done.deadline_at, None);
    assert_eq!(
        done.stop,
        Some(StopMetadata {
            reason: StopReason::Succeeded,
            timeout: None,
            timeout_configured: false,
            timeout_fired: false,
        })
    );
}

#[tokio::test]
async fn enqueue_with_an_existing_id_returns_the_existing_execution() {
    let ledger = support::ledger("lifecycle_idem").await;
    let first = ledger
        .enqueue(
            "q",
            &json!({"v": 1}),
            EnqueueOptions::new().id("same").max_attempts(3),
        )
        .await
        .unwrap();
    assert!(first.created);
    let before = ledger.get("q", "same").await.unwrap();
    let events_before = ledger_common::events_of(&ledger, "q").await.len();

    let again = ledger
        .enqueue(
            "q",
            &json!({"v": 2}),
            EnqueueOptions::new()
                .id("same")
                .max_attempts(7)
                .delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(
        (again.state, again.attempt, again.created_at),
        (first.state, first.attempt, first.created_at)
    );
    assert_eq!(ledger.get("q", "same").await.unwrap(), before);
    assert_eq!(before.payload, json!({"v": 1}));
    assert_eq!(before.timings.max_attempts, 3);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    assert_eq!(
        ledger_common::events_of(&ledger, "q").await.len(),
        events_before
    );

    // Also once it is running: the existing execution is reported, untouched.
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    let again = ledger
        .enqueue("q", &json!({"v": 3}), EnqueueOptions::new().id("same"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!((again.state, again.attempt), (State::Dispatched, 1));
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    assert_eq!(
        ledger.get("q", "same").await.unwrap().payload,
        json!({"v": 1})
    );
    ledger.complete(&claim.token, None).await.unwrap();
}

#[tokio::test]
async fn generated_ids_are_uuid_v7_and_claimed_first_in_first_out() {
    let ledger = support::ledger("lifecycle_fifo").await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let e = ledger
            .enqueue("fifo", &json!({"n": n}), EnqueueOptions::new())
            .await
            .unwrap();
        assert!(e.created);
        let uuid = uuid::Uuid::parse_str(&e.id).expect("a generated id is a UUID");
        assert_eq!(uuid.get_version_num(), 7, "{} is not a UUIDv7", e.id);
        ids.push(e.id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "generated ids are unique");

    let mut claimed = Vec::new();
    while let Some(claim) = ledger.claim("fifo", "w").await.unwrap() {
        assert_eq!(claim.payload, json!({"n": claimed.len()}));
        claimed.push(claim.id().to_owned());
    }
    assert_eq!(claimed, ids, "claimed in the order enqueued");
}

#[tokio::test]
async fn a_delayed_execution_is_not_claimable_until_its_delay_passed() {
    let ledger = support::ledger("lifecycle_delay").await;
    let mut conn = raw().await;
    let delay = Duration::from_millis(300);
    let before = server_ms(&mut conn).await;
    ledger
        .enqueue(
            "q",
            &json!(1),
            EnqueueOptions::new().id("later").delay(delay),
        )
        .await
        .unwrap();
    let after = server_ms(&mut conn).await;

    let batch = ledger.claim_many("q", "w", 5).await.unwrap();
    assert!(batch.claims.is_empty());
    assert!(!batch.queue_full);
    let next = ms(batch
        .next_available_at
        .expect("next_available_at is reported"));
    assert!(
        (before + 300..=after + 300).contains(&next),
        "available at {next}, enqueued between {before} and {after}"
    );
    assert_eq!(ledger.get("q", "later").await.unwrap().state, State::Queued);

    // Work available now is claimed past the delayed one.
    ledger
        .enqueue("q", &json!(2), EnqueueOptions::new().id("now"))
        .await
        .unwrap();
    let batch = ledger.claim_many("q", "w", 5).await.unwrap();
    let ids: Vec<&str> = batch.claims.iter().map(Claim::id).collect();
    assert_eq!(ids, ["now"]);
    assert_eq!(batch.next_available_at.map(ms), Some(next));

    ledger_common::wait_for_server_after(&conn, next - 1).await;
    let claim = ledger.claim("q", "w").await.unwrap();
    assert_eq!(claim.map(|c| c.id().to_owned()).as_deref(), Some("later"));
    let batch = ledger.claim_many("q", "w", 5).await.unwrap();
    assert_eq!((batch.claims.len(), batch.next_available_at), (0, None));
}

/// Invariant 8: timestamps are read from Redis `TIME`, never from the client.
#[tokio::test]
async fn timestamps_come_from_the_server_clock() {
    let ledger = support::ledger("lifecycle_clock").await;
    let mut conn = raw().await;
    let t0 = server_ms(&mut conn).await;
    let enqueued = ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("c"))
        .await
        .unwrap();
    let t1 = server_ms(&mut conn).await;
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    let t2 = server_ms(&mut conn).await;
    ledger
        .heartbeat(&claim.token, Heartbeat::new())
        .await
        .unwrap();
    let t3 = server_ms(&mut conn).await;
    ledger.complete(&claim.token, None).await.unwrap();
    let t4 = server_ms(&mut conn).await;

    let e = ledger.get("q", "c").await.unwrap();
    let within = |what: &str, at: Option<DateTime<Utc>>, lo: i64, hi: i64| {
        let at = ms(at.unwrap_or_else(|| panic!("{what} is set")));
        assert!(
            (lo..=hi).contains(&at),
            "{what} {at} is outside the server clock window {lo}..={hi}"
        );
    };
    within(
        "created_at (enqueue reply)",
        Some(enqueued.created_at),
        t0,
        t1,
    );
    within("created_at", Some(e.created_at), t0, t1);
    within("dispatched_at", e.dispatched_at, t1, t2);
    within("started_at", e.started_at, t2, t3);
    within("last_heartbeat_at", e.last_heartbeat_at, t2, t3);
    within("finished_at", e.finished_at, t3, t4);
}
