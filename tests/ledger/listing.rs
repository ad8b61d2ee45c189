//! Reading executions back: `list` by state with cursor paging (queued in claim order,
//! terminal newest first, active through the slots) and `get` with every field.

use crate::ledger_common;
use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use unstuck::*;

use ledger_common::{raw, server_ms, wait_for_server_after};

/// Every page of a listing, followed through its cursors.
async fn pages(ledger: &Ledger, queue: &str, state: State, limit: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ledger
            .list(queue, state, cursor.as_deref(), limit)
            .await
            .unwrap();
        assert!(
            page.items
                .iter()
                .all(|e| e.state == state && e.queue == queue)
        );
        out.push(page.items.into_iter().map(|e| e.id).collect());
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

#[tokio::test]
async fn queued_executions_are_listed_in_claim_order() {
    let ledger = support::ledger("list_queued").await;
    // Ids whose alphabetical order differs from their enqueue order, and one delayed.
    for id in ["m", "c", "x", "a", "q"] {
        ledger
            .enqueue("q", &json!(id), EnqueueOptions::new().id(id))
            .await
            .unwrap();
    }
    ledger
        .enqueue(
            "q",
            &json!("d"),
            EnqueueOptions::new().id("d").delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let listed = pages(&ledger, "q", State::Queued, 2).await;
    assert_eq!(listed.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    let listed: Vec<String> = listed.concat();
    assert_eq!(listed.last().map(String::as_str), Some("d"));
    assert_eq!(
        pages(&ledger, "q", State::Queued, 100).await,
        std::slice::from_ref(&listed)
    );

    let claimed: Vec<String> = ledger
        .claim_many("q", "w", 10)
        .await
        .unwrap()
        .claims
        .iter()
        .map(|c| c.id().to_owned())
        .collect();
    assert_eq!(claimed, listed[..5], "list order is claim order");
    assert_eq!(
        pages(&ledger, "q", State::Queued, 2).await,
        [vec!["d".to_owned()]]
    );
    assert_eq!(
        pages(&ledger, "empty", State::Queued, 2).await,
        [Vec::<String>::new()]
    );
}

#[tokio::test]
async fn terminal_executions_are_listed_newest_first() {
    let ledger = support::ledger("list_terminal").await;
    let conn = raw().await;
    let mut finished = Vec::new();
    for id in ["t1", "t2", "t3", "t4", "t5"] {
        let token = ledger_common::running(&ledger, "q", id, EnqueueOptions::new()).await;
        ledger.complete(&token, None).await.unwrap();
        // Distinct finish instants, so "newest first" is a strict order.
        let at = ledger.get("q", id).await.unwrap().finished_at.unwrap();
        wait_for_server_after(&conn, at.timestamp_millis()).await;
        finished.push(id.to_owned());
    }
    let token = ledger_common::running(&ledger, "q", "f1", EnqueueOptions::new()).await;
    ledger.fail(&token, "no", false).await.unwrap();

    finished.reverse();
    let listed = pages(&ledger, "q", State::Succeeded, 2).await;
    assert_eq!(listed.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(listed.concat(), finished);
    assert_eq!(
        pages(&ledger, "q", State::Failed, 2).await,
        [vec!["f1".to_owned()]]
    );
    assert_eq!(
        pages(&ledger, "q", State::Cancelled, 2).await,
        [Vec::<String>::new()]
    );
    // A cursor past the end gives an empty last page.
    let past = ledger
        .list("q", State::Succeeded, Some("100"), 10)
        .await
        .unwrap();
    assert_eq!((past.items.len(), past.next), (0, None));
}

#[tokio::test]
async fn active_executions_are_listed_through_their_slots() {
    let ledger = support::ledger("list_active").await;
    for n in 0..7 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new().id(format!("e{n}")))
            .await
            .unwrap();
    }
    let claims = ledger.claim_many("q", "w", 5).await.unwrap().claims;
    for claim in &claims[..2] {
        ledger
            .heartbeat(&claim.token, Heartbeat::new())
            .await
            .unwrap();
    }
    let ids = |claims: &[Claim]| -> BTreeSet<String> {
        claims.iter().map(|c| c.id().to_owned()).collect()
    };
    for limit in [1, 2, 100] {
        let running: BTreeSet<String> = pages(&ledger, "q", State::Running, limit)
            .await
            .concat()
            .into_iter()
            .collect();
        assert_eq!(running, ids(&claims[..2]), "limit {limit}");
        let dispatched: Vec<String> = pages(&ledger, "q", State::Dispatched, limit).await.concat();
        assert_eq!(dispatched.len(), 3, "each listed once, limit {limit}");
        let dispatched: BTreeSet<String> = dispatched.into_iter().collect();
        assert_eq!(dispatched, ids(&claims[2..]), "limit {limit}");
    }
    assert!(
        pages(&ledger, "q", State::Stuck, 10)
            .await
            .concat()
            .is_empty()
    );
    assert_eq!(
        pages(&ledger, "q", State::Queued, 10).await.concat().len(),
        2
    );
}

// `HSCAN .. COUNT` is only a hint (a small hash comes back whole): a page of active
// executions must still hold at most `limit` items.
#[tokio::test]
async fn an_active_page_holds_at_most_limit_items() {
    let ledger = support::ledger("list_active_limit").await;
    for n in 0..5 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new())
            .await
            .unwrap();
    }
    assert_eq!(
        ledger.claim_many("q", "w", 5).await.unwrap().claims.len(),
        5
    );
    for limit in [1, 2] {
        let page = ledger
            .list("q", State::Dispatched, None, limit)
            .await
            .unwrap();
        assert!(
            page.items.len() <= limit,
            "a page of limit {limit} holds {} items",
            page.items.len()
        );
    }
}

#[tokio::test]
async fn get_reports_every_field() {
    let ledger = support::ledger("list_get").await;
    let mut conn = raw().await;
    let opts = EnqueueOptions::new()
        .id("g")
        .deadline(Duration::from_secs(3600))
        .no_progress_timeout(Duration::from_secs(120))
        .max_attempts(3)
        .backoff_base(Duration::ZERO);
    let payload = json!({"nested": {"list": [1, 2.5, "three", null, true]}});
    let enqueued = ledger.enqueue("q", &payload, opts).await.unwrap();
    let queued = ledger.get("q", "g").await.unwrap();
    assert_eq!(
        (
            queued.queue.as_str(),
            queued.id.as_str(),
            queued.state,
            queued.attempt
        ),
        ("q", "g", State::Queued, 0)
    );
    assert_eq!(queued.payload, payload);
    assert_eq!(queued.created_at, enqueued.created_at);
    let hour = chrono::Duration::hours(1);
    assert_eq!(queued.deadline_at, Some(queued.created_at + hour));
    for (name, value) in [
        ("dispatched_at", queued.dispatched_at),
        ("started_at", queued.started_at),
        ("last_heartbeat_at", queued.last_heartbeat_at),
        ("progress_changed_at", queued.progress_changed_at),
        ("stuck_since", queued.stuck_since),
        ("cancel_requested_at", queued.cancel_requested_at),
        ("finished_at", queued.finished_at),
    ] {
        assert_eq!(value, None, "{name} of a queued execution");
    }
    assert_eq!(
        (queued.checkpoint, queued.result, queued.progress),
        (None, None, None)
    );
    assert_eq!(
        (queued.worker, queued.stop, queued.last_error),
        (None, None, None)
    );
    assert_eq!(queued.false_alarms, 0);
    assert_eq!(
        queued.timings.no_progress_timeout,
        Some(Duration::from_secs(120))
    );
    assert_eq!(queued.timings.max_attempts, 3);

    // First attempt: a checkpoint, then a retryable failure.
    let first = ledger.claim("q", "worker-a").await.unwrap().unwrap();
    let beat = Heartbeat::new().progress("p1").checkpoint(json!({"cp": 1}));
    ledger.heartbeat(&first.token, beat).await.unwrap();
    ledger.fail(&first.token, "transient", true).await.unwrap();

    // Second attempt, running, with a cancellation requested.
    let second = ledger.claim("q", "worker-b").await.unwrap().unwrap();
    let t0 = server_ms(&mut conn).await;
    ledger
        .heartbeat(&second.token, Heartbeat::new().progress("p2"))
        .await
        .unwrap();
    support::invariants::assert_ok(&ledger, &["q"]).await;
    ledger.cancel("q", "g", "operator").await.unwrap();
    support::invariants::assert_ok(&ledger, &["q"]).await;
    let e = ledger.get("q", "g").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Running, 2));
    assert_eq!(e.worker.as_deref(), Some("worker-b"));
    assert_eq!(e.checkpoint, Some(json!({"cp": 1})), "kept across attempts");
    assert_eq!(e.progress.as_deref(), Some("p2"));
    assert_eq!(e.last_error.as_deref(), Some("operator"));
    assert_eq!(e.result, None);
    let started = e.started_at.unwrap();
    assert!(started.timestamp_millis() >= t0);
    assert!(e.dispatched_at.unwrap() <= started);
    assert_eq!(e.last_heartbeat_at, Some(started));
    assert_eq!(e.progress_changed_at, Some(started));
    assert!(e.cancel_requested_at.unwrap() >= started);
    assert_eq!((e.stuck_since, e.finished_at, e.stop), (None, None, None));
    assert_eq!(
        e.deadline_at, queued.deadline_at,
        "the deadline spans attempts"
    );
    let reasons: Vec<(&str, u32)> = e
        .history
        .iter()
        .map(|t| (t.reason.as_str(), t.attempt))
        .collect();
    assert_eq!(
        reasons,
        [
            ("enqueued", 0),
            ("claimed", 1),
            ("started", 1),
            ("retry_scheduled", 1),
            ("claimed", 2),
            ("started", 2),
            ("cancel_requested", 2),
        ]
    );

    ledger
        .complete(&second.token, Some(&json!({"out": "done"})))
        .await
        .unwrap();
    let done = ledger.get("q", "g").await.unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.result, Some(json!({"out": "done"})));
    assert!(done.finished_at.unwrap() >= e.cancel_requested_at.unwrap());
    let stop = done.stop.unwrap();
    assert_eq!(stop.reason, StopReason::Succeeded);
    assert_eq!(stop.timeout, Some(Duration::from_secs(3600)));
    assert!(stop.timeout_configured && !stop.timeout_fired);
    assert_eq!(done.history.len(), 8);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn history_keeps_the_newest_entries() {
    let ledger = support::ledger_with("list_hist", |c| c.history_len = 3).await;
    let token = ledger_common::running(&ledger, "q", "h", EnqueueOptions::new()).await;
    ledger.complete(&token, None).await.unwrap();
    let reasons: Vec<String> = ledger
        .get("q", "h")
        .await
        .unwrap()
        .history
        .into_iter()
        .map(|t| t.reason)
        .collect();
    assert_eq!(reasons, ["claimed", "started", "completed"]);
}
