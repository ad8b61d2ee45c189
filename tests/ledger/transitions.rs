//! Failures and retries, terminal replays and attempt tokens: every allowed transition of a
//! worker's calls, and the refusals of the forbidden ones.

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use unstuck::*;

use ledger_common::{events_of, raw, running, server_ms, wait_for_server_after};

const KEEP_GOING: HeartbeatReply = HeartbeatReply::Ok {
    cancel_requested: false,
    cancel_reason: None,
};

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Waits until `available_at` has passed on the server, then claims; the claim must exist.
async fn claim_when_available(ledger: &Ledger, queue: &str, available_at: i64) -> Claim {
    let conn = raw().await;
    wait_for_server_after(&conn, available_at - 1).await;
    ledger.claim(queue, "worker-2").await.unwrap().unwrap()
}

#[tokio::test]
async fn retryable_failures_back_off_and_resume_from_the_last_checkpoint() {
    let ledger = support::ledger("tr_retry").await;
    let mut conn = raw().await;
    let opts = EnqueueOptions::new()
        .max_attempts(3)
        .backoff_base(Duration::from_millis(100))
        .backoff_max(Duration::from_millis(150));
    let first = running(&ledger, "q", "job", opts).await;
    let beat = Heartbeat::new()
        .progress("3")
        .checkpoint(json!({"step": 3}));
    assert_eq!(ledger.heartbeat(&first, beat).await.unwrap(), KEEP_GOING);

    // Attempt 1 fails: back to the queue after backoff_base * 2^0.
    let t0 = server_ms(&mut conn).await;
    let outcome = ledger.fail(&first, "disk full", true).await.unwrap();
    let t1 = server_ms(&mut conn).await;
    let FailOutcome::RetryScheduled {
        available_at,
        slot_released: true,
    } = outcome
    else {
        panic!("expected a retry with the slot released, got {outcome:?}");
    };
    let at = ms(available_at);
    assert!((t0 + 100..=t1 + 100).contains(&at), "{at} vs {t0}..{t1}");
    let queued = ledger.get("q", "job").await.unwrap();
    assert_eq!((queued.state, queued.attempt), (State::Queued, 1));
    assert_eq!(queued.last_error.as_deref(), Some("disk full"));
    assert_eq!(queued.history.last().unwrap().reason, "retry_scheduled");
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);

    // While it waits, the old token is stale and changes nothing.
    let stale = HeartbeatReply::StaleAttempt {
        current_attempt: 1,
        state: State::Queued,
    };
    // The waiting retry still carries attempt 1 (its claim makes it 2), so the reply
    // names the caller's own attempt: it says outright that the attempt is over.
    let waiting = ledger.get("q", "job").await.unwrap();
    let events = events_of(&ledger, "q").await.len();
    let late_beat = ledger.heartbeat(&first, Heartbeat::new()).await.unwrap();
    assert_eq!(late_beat, stale);
    assert!(late_beat.attempt_ended() && late_beat.should_stop());
    assert_eq!(late_beat.next_attempt(), Some(2));
    let late_complete = ledger.complete(&first, Some(&json!("late"))).await.unwrap();
    assert_eq!(
        late_complete,
        CompleteOutcome::StaleAttempt {
            current_attempt: 1,
            state: State::Queued
        }
    );
    assert_eq!(
        (late_complete.attempt_ended(), late_complete.next_attempt()),
        (true, Some(2))
    );
    let late_fail = ledger.fail(&first, "late", false).await.unwrap();
    assert_eq!(
        late_fail,
        FailOutcome::StaleAttempt {
            current_attempt: 1,
            state: State::Queued
        }
    );
    assert_eq!(
        (late_fail.attempt_ended(), late_fail.next_attempt()),
        (true, Some(2))
    );
    assert_eq!(ledger.get("q", "job").await.unwrap(), waiting);
    assert_eq!(events_of(&ledger, "q").await.len(), events);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    let batch = ledger.claim_many("q", "worker-2", 1).await.unwrap();
    if batch.claims.is_empty() {
        assert_eq!(batch.next_available_at, Some(available_at));
    }

    // Attempt 2: a new token, the last checkpoint.
    let second = match batch.claims.into_iter().next() {
        Some(claim) => claim,
        None => claim_when_available(&ledger, "q", at).await,
    };
    assert_eq!(second.attempt(), 2);
    assert_ne!(second.token, first);
    assert_eq!(second.checkpoint, Some(json!({"step": 3})));
    assert_eq!(second.payload, json!({"id": "job"}));

    // The old token is refused everywhere, and nothing changes.
    let before = ledger.get("q", "job").await.unwrap();
    let reply = ledger
        .heartbeat(&first, Heartbeat::new().progress("old"))
        .await
        .unwrap();
    assert_eq!(
        reply,
        HeartbeatReply::StaleAttempt {
            current_attempt: 2,
            state: State::Dispatched
        }
    );
    assert_eq!((reply.attempt_ended(), reply.next_attempt()), (true, None));
    assert_eq!(
        ledger.complete(&first, Some(&json!("old"))).await.unwrap(),
        CompleteOutcome::StaleAttempt {
            current_attempt: 2,
            state: State::Dispatched
        }
    );
    assert_eq!(
        ledger.fail(&first, "old", false).await.unwrap(),
        FailOutcome::StaleAttempt {
            current_attempt: 2,
            state: State::Dispatched
        }
    );
    assert_eq!(ledger.get("q", "job").await.unwrap(), before);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);

    // Attempt 2 fails: backoff_base * 2^1 = 200ms, capped by backoff_max at 150ms.
    ledger
        .heartbeat(&second.token, Heartbeat::new())
        .await
        .unwrap();
    let t0 = server_ms(&mut conn).await;
    let outcome = ledger.fail(&second.token, "disk full again", true).await;
    let t1 = server_ms(&mut conn).await;
    let Ok(FailOutcome::RetryScheduled { available_at, .. }) = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    let at = ms(available_at);
    assert!((t0 + 150..=t1 + 150).contains(&at), "{at} vs {t0}..{t1}");

    // Attempt 3, the last: a retryable failure now fails the execution.
    let third = claim_when_available(&ledger, "q", at).await;
    assert_eq!(third.attempt(), 3);
    assert_eq!(third.checkpoint, Some(json!({"step": 3})));
    assert_eq!(
        ledger
            .fail(&third.token, "disk still full", true)
            .await
            .unwrap(),
        FailOutcome::Failed {
            slot_released: true
        }
    );
    let failed = ledger.get("q", "job").await.unwrap();
    assert_eq!((failed.state, failed.attempt), (State::Failed, 3));
    assert_eq!(failed.last_error.as_deref(), Some("disk still full"));
    assert_eq!(failed.stop.unwrap().reason, StopReason::Failed);
    assert!(failed.finished_at.is_some());
    let reasons: Vec<&str> = failed.history.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "enqueued",
            "claimed",
            "started",
            "retry_scheduled",
            "claimed",
            "started",
            "retry_scheduled",
            "claimed",
            "attempts_exhausted"
        ]
    );
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    assert!(ledger.claim("q", "w").await.unwrap().is_none());
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_non_retryable_failure_fails_at_once() {
    let ledger = support::ledger("tr_nonretry").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new().max_attempts(5)).await;
    assert_eq!(
        ledger.fail(&token, "bad input", false).await.unwrap(),
        FailOutcome::Failed {
            slot_released: true
        }
    );
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Failed, 1));
    assert_eq!(e.stop.unwrap().reason, StopReason::Failed);
    assert_eq!(e.last_error.as_deref(), Some("bad input"));
    assert_eq!(e.history.last().unwrap().reason, "failed");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    let failed = ledger.list("q", State::Failed, None, 10).await.unwrap();
    assert_eq!(failed.items.len(), 1);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_dispatched_attempt_can_end_before_its_first_heartbeat() {
    let ledger = support::ledger("tr_dispatched").await;
    let opts = |id: &str| {
        EnqueueOptions::new()
            .id(id)
            .max_attempts(2)
            .deadline(Duration::from_secs(60))
    };
    for id in ["done", "retry", "fail"] {
        ledger.enqueue("q", &json!(id), opts(id)).await.unwrap();
    }
    let claims = ledger.claim_many("q", "w", 3).await.unwrap().claims;
    support::invariants::assert_ok(&ledger, &["q"]).await;
    let token = |id: &str| {
        let claim = claims.iter().find(|c| c.id() == id);
        claim.expect("every execution is claimed").token.clone()
    };
    let [done, retry, fail] = ["done", "retry", "fail"].map(token);
    assert_eq!(
        ledger.complete(&done, None).await.unwrap(),
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );
    assert!(matches!(
        ledger.fail(&retry, "not now", true).await.unwrap(),
        FailOutcome::RetryScheduled {
            slot_released: true,
            ..
        }
    ));
    assert_eq!(
        ledger.fail(&fail, "never", false).await.unwrap(),
        FailOutcome::Failed {
            slot_released: true
        }
    );
    let states: Vec<State> = {
        let mut out = Vec::new();
        for id in ["done", "retry", "fail"] {
            out.push(ledger.get("q", id).await.unwrap().state);
        }
        out
    };
    assert_eq!(states, [State::Succeeded, State::Queued, State::Failed]);
    assert_eq!(ledger.get("q", "done").await.unwrap().started_at, None);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_huge_failure_message_is_cut_not_refused() {
    let ledger = support::ledger("tr_longmsg").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let message = "é".repeat(10_000); // 20,000 bytes, two bytes a character
    let outcome = ledger.fail(&token, &message, false).await.unwrap();
    assert_eq!(
        outcome,
        FailOutcome::Failed {
            slot_released: true
        }
    );
    let kept = ledger.get("q", "x").await.unwrap().last_error.unwrap();
    assert!(kept.len() <= 4096, "{} bytes kept", kept.len());
    assert!(kept.len() > 4000, "{} bytes kept", kept.len());
    assert!(kept.starts_with("éé"));
    assert!(kept.ends_with("[truncated]"), "{kept:?}");
}

#[tokio::test]
async fn terminal_executions_never_change_and_replays_return_the_first_outcome() {
    let ledger = support::ledger("tr_terminal").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let first = ledger.complete(&token, Some(&json!("first"))).await;
    assert_eq!(
        first.unwrap(),
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );
    let before = ledger.get("q", "x").await.unwrap();
    let events = events_of(&ledger, "q").await.len();

    let succeeded = (State::Succeeded, StopReason::Succeeded);
    assert_eq!(
        ledger
            .complete(&token, Some(&json!("second")))
            .await
            .unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: succeeded.0,
            stop_reason: succeeded.1.clone()
        }
    );
    assert_eq!(
        ledger.fail(&token, "late failure", true).await.unwrap(),
        FailOutcome::AlreadyTerminal {
            state: succeeded.0,
            stop_reason: succeeded.1.clone()
        }
    );
    assert_eq!(
        ledger.cancel("q", "x", "too late").await.unwrap(),
        CancelOutcome::AlreadyTerminal {
            state: succeeded.0,
            stop_reason: succeeded.1.clone()
        }
    );
    assert_eq!(
        ledger
            .heartbeat(&token, Heartbeat::new().progress("more"))
            .await
            .unwrap(),
        HeartbeatReply::Terminal {
            state: succeeded.0,
            stop_reason: succeeded.1.clone()
        }
    );
    assert_eq!(
        ledger.acknowledge_cancel(&token).await.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: succeeded.0,
            stop_reason: succeeded.1
        }
    );
    let again = ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("x"))
        .await
        .unwrap();
    assert_eq!((again.created, again.state), (false, State::Succeeded));

    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    assert_eq!(events_of(&ledger, "q").await.len(), events);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_failed_execution_stays_failed() {
    let ledger = support::ledger("tr_failed_final").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    ledger.fail(&token, "first", false).await.unwrap();
    let before = ledger.get("q", "x").await.unwrap();
    let events = events_of(&ledger, "q").await.len();
    let failed = (State::Failed, StopReason::Failed);
    assert_eq!(
        ledger.fail(&token, "second", false).await.unwrap(),
        FailOutcome::AlreadyTerminal {
            state: failed.0,
            stop_reason: failed.1.clone()
        }
    );
    assert_eq!(
        ledger.complete(&token, None).await.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: failed.0,
            stop_reason: failed.1
        }
    );
    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    assert_eq!(before.last_error.as_deref(), Some("first"));
    assert_eq!(events_of(&ledger, "q").await.len(), events);
}
