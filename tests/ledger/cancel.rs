//! Cancellation: queued work ends at once; active work is asked to stop, sees the request
//! on its heartbeat and acknowledges it (or fails, which then ends it as cancelled).

use crate::ledger_common;
use crate::support;

use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

use ledger_common::{events_of, running};

const RELEASED: CompleteOutcome = CompleteOutcome::Recorded {
    slot_released: true,
};

#[tokio::test]
async fn cancelling_queued_work_ends_it_at_once() {
    let ledger = support::ledger("cx_queued").await;
    for id in ["a", "b"] {
        ledger
            .enqueue("q", &json!({}), EnqueueOptions::new().id(id))
            .await
            .unwrap();
    }
    assert_eq!(
        ledger.cancel("q", "a", "no longer needed").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let a = ledger.get("q", "a").await.unwrap();
    assert_eq!(a.state, State::Cancelled);
    assert_eq!(a.attempt, 0);
    assert_eq!(a.last_error.as_deref(), Some("no longer needed"));
    assert_eq!(a.stop.as_ref().unwrap().reason, StopReason::Cancelled);
    assert!(a.finished_at.is_some());
    assert_eq!(a.history.last().unwrap().reason, "cancelled");

    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    let queued = ledger.list("q", State::Queued, None, 10).await.unwrap();
    assert_eq!(queued.items.len(), 1);
    assert_eq!(queued.items[0].id, "b");
    let cancelled = ledger.list("q", State::Cancelled, None, 10).await.unwrap();
    assert_eq!(cancelled.items, vec![a.clone()]);

    // The claim skips it; a second cancel is a no-op reporting the first outcome.
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.id(), "b");
    assert!(ledger.claim("q", "w").await.unwrap().is_none());
    let events = events_of(&ledger, "q").await.len();
    assert_eq!(
        ledger.cancel("q", "a", "again").await.unwrap(),
        CancelOutcome::AlreadyTerminal {
            state: State::Cancelled,
            stop_reason: StopReason::Cancelled
        }
    );
    assert_eq!(ledger.get("q", "a").await.unwrap(), a);
    assert_eq!(events_of(&ledger, "q").await.len(), events);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn cancelling_active_work_asks_the_worker_which_acknowledges() {
    let ledger = support::ledger("cx_active").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let CancelOutcome::Requested {
        requested_at,
        already: false,
    } = ledger.cancel("q", "x", "operator said stop").await.unwrap()
    else {
        panic!("expected a first cancellation request");
    };
    let requested = ledger.get("q", "x").await.unwrap();
    assert_eq!(
        requested.state,
        State::Running,
        "still running until acknowledged"
    );
    assert_eq!(requested.cancel_requested_at, Some(requested_at));
    assert_eq!(requested.last_error.as_deref(), Some("operator said stop"));
    assert_eq!(requested.history.last().unwrap().reason, "cancel_requested");
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);

    let reply = ledger.heartbeat(&token, Heartbeat::new()).await.unwrap();
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: true,
            cancel_reason: None,
        }
    );
    assert!(reply.should_stop());

    // Asking again reports the first request and changes nothing.
    let before = ledger.get("q", "x").await.unwrap();
    let events = events_of(&ledger, "q").await.len();
    assert_eq!(
        ledger.cancel("q", "x", "really stop").await.unwrap(),
        CancelOutcome::Requested {
            requested_at,
            already: true
        }
    );
    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    assert_eq!(events_of(&ledger, "q").await.len(), events);

    assert_eq!(ledger.acknowledge_cancel(&token).await.unwrap(), RELEASED);
    let cancelled = ledger.get("q", "x").await.unwrap();
    assert_eq!(cancelled.state, State::Cancelled);
    assert_eq!(cancelled.stop.unwrap().reason, StopReason::Cancelled);
    assert_eq!(
        cancelled.history.last().unwrap().reason,
        "cancel_acknowledged"
    );
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert_eq!(
        ledger
            .list("q", State::Cancelled, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        ledger.acknowledge_cancel(&token).await.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: State::Cancelled,
            stop_reason: StopReason::Cancelled
        }
    );
    assert_eq!(
        ledger.heartbeat(&token, Heartbeat::new()).await.unwrap(),
        HeartbeatReply::Terminal {
            state: State::Cancelled,
            stop_reason: StopReason::Cancelled
        }
    );
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_dispatched_execution_can_be_cancelled_before_it_starts() {
    let ledger = support::ledger("cx_dispatched").await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("x"))
        .await
        .unwrap();
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert!(matches!(
        ledger.cancel("q", "x", "stop").await.unwrap(),
        CancelOutcome::Requested { already: false, .. }
    ));
    assert_eq!(ledger.get("q", "x").await.unwrap().state, State::Dispatched);
    assert_eq!(
        ledger.acknowledge_cancel(&claim.token).await.unwrap(),
        RELEASED
    );
    assert_eq!(ledger.get("q", "x").await.unwrap().state, State::Cancelled);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_cancellation_requested_before_the_start_is_seen_at_the_first_heartbeat() {
    let ledger = support::ledger("cx_before_start").await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("x"))
        .await
        .unwrap();
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    ledger.cancel("q", "x", "stop").await.unwrap();
    let beat = Heartbeat::new().progress("1");
    assert_eq!(
        ledger.heartbeat(&claim.token, beat).await.unwrap(),
        HeartbeatReply::Ok {
            cancel_requested: true,
            cancel_reason: None,
        }
    );
    assert_eq!(ledger.get("q", "x").await.unwrap().state, State::Running);
    support::invariants::assert_ok(&ledger, &["q"]).await;
    assert_eq!(
        ledger.acknowledge_cancel(&claim.token).await.unwrap(),
        RELEASED
    );
    assert_eq!(ledger.get("q", "x").await.unwrap().state, State::Cancelled);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn acknowledging_a_cancellation_nobody_requested_is_refused() {
    let ledger = support::ledger("cx_unrequested").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let before = ledger.get("q", "x").await.unwrap();
    let events = events_of(&ledger, "q").await.len();
    match ledger.acknowledge_cancel(&token).await {
        Err(Error::InvalidTransition { queue, id, .. }) => {
            assert_eq!((queue.as_str(), id.as_str()), ("q", "x"))
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    assert_eq!(events_of(&ledger, "q").await.len(), events);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
}

#[tokio::test]
async fn failing_after_a_cancellation_request_ends_cancelled_without_retry() {
    let ledger = support::ledger("cx_fail").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new().max_attempts(5)).await;
    ledger.cancel("q", "x", "stop please").await.unwrap();
    assert_eq!(
        ledger.fail(&token, "interrupted", true).await.unwrap(),
        FailOutcome::Cancelled {
            slot_released: true
        }
    );
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Cancelled, 1));
    assert_eq!(e.stop.unwrap().reason, StopReason::Cancelled);
    assert_eq!(e.last_error.as_deref(), Some("interrupted"));
    assert_eq!(e.history.last().unwrap().reason, "failed_after_cancel");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert!(ledger.claim("q", "w").await.unwrap().is_none());
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn completing_after_a_cancellation_request_still_succeeds() {
    // The work finished before the worker saw the request: the result is kept.
    let ledger = support::ledger("cx_complete").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    ledger.cancel("q", "x", "stop").await.unwrap();
    assert_eq!(
        ledger.complete(&token, Some(&json!(42))).await.unwrap(),
        RELEASED
    );
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!((e.state, e.result), (State::Succeeded, Some(json!(42))));
    support::invariants::assert_ok(&ledger, &["q"]).await;
}
