//! Snooze: the attempt ends, the execution waits in the queue until the snooze's time and
//! comes back as a continuation (no attempt counted), bounded by `max_snoozes`; and a
//! retryable failure's `retry_after`, which wins over the backoff when later.

use crate::bad_input::snapshot;
use crate::ledger_common;
use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

use ledger_common::{events_of, raw, running, server_ms, wait_for_server_after};

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Claims `id` once the server clock has passed `available_at`; nothing is claimable
/// before (asserted first when there is time left).
async fn claim_at(ledger: &Ledger, queue: &str, id: &str, available_at: i64) -> Claim {
    let conn = raw().await;
    wait_for_server_after(&conn, available_at - 1).await;
    let claim = ledger.claim(queue, "worker-2").await.unwrap().unwrap();
    assert_eq!(claim.id(), id);
    claim
}

fn snoozed(outcome: &SnoozeOutcome) -> (i64, u32) {
    match outcome {
        SnoozeOutcome::Snoozed {
            available_at,
            snoozes,
            slot_released: true,
        } => (ms(*available_at), *snoozes),
        other => panic!("expected a snooze with the slot released, got {other:?}"),
    }
}

#[tokio::test]
async fn snoozes_requeue_at_their_time_without_counting_an_attempt() {
    let ledger = support::ledger("sz_basic").await;
    let mut conn = raw().await;
    // One attempt only: three snoozes and a success still fit, since none is counted.
    let opts = EnqueueOptions::new().max_attempts(1);
    let mut token = running(&ledger, "q", "job", opts).await;
    let beat = Heartbeat::new().checkpoint(json!({"page": 7}));
    ledger.heartbeat(&token, beat).await.unwrap();

    for n in 1..=3u32 {
        let t0 = server_ms(&mut conn).await;
        let outcome = ledger
            .snooze(
                &token,
                Snooze::after(Duration::from_millis(150), "rate limited"),
            )
            .await
            .unwrap();
        let t1 = server_ms(&mut conn).await;
        let (at, count) = snoozed(&outcome);
        assert_eq!(count, n);
        assert!((t0 + 150..=t1 + 150).contains(&at), "{at} vs {t0}..{t1}");

        let e = ledger.get("q", "job").await.unwrap();
        assert_eq!((e.state, e.attempt), (State::Queued, n));
        assert_eq!((e.snoozes, e.continuations), (n, n));
        assert_eq!(e.available_at.map(ms), Some(at));
        assert_eq!(e.worker, None);
        assert_eq!(e.history.last().unwrap().reason, "snoozed");
        assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
        assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
        let event = events_of(&ledger, "q").await.pop().unwrap();
        assert_eq!(
            (event.reason.as_str(), event.to),
            ("snoozed", Some(State::Queued))
        );
        assert!(
            event.detail.starts_with("until ")
                && event
                    .detail
                    .contains(&format!("(snooze {n} of 50): rate limited")),
            "{}",
            event.detail
        );
        unstuck::testkit::invariants::assert_ok(&ledger, &["q"]).await;

        // The snoozed attempt's token is stale: a late heartbeat or completion is
        // refused and changes nothing.
        let events = events_of(&ledger, "q").await.len();
        let beat = ledger.heartbeat(&token, Heartbeat::new()).await.unwrap();
        assert!(beat.attempt_ended(), "{beat:?}");
        assert_eq!(beat.next_attempt(), Some(n + 1));
        let done = ledger.complete(&token, Some(&json!("late"))).await.unwrap();
        assert_eq!(
            done,
            CompleteOutcome::StaleAttempt {
                current_attempt: n,
                state: State::Queued
            }
        );
        let again = ledger
            .snooze(&token, Snooze::after(Duration::from_millis(10), "again"))
            .await
            .unwrap();
        assert!(again.attempt_ended(), "{again:?}");
        assert_eq!(ledger.get("q", "job").await.unwrap(), e);
        assert_eq!(events_of(&ledger, "q").await.len(), events);

        // Claimable only from its time (a claim that wins must have run at `at` or
        // later on the server clock), with the checkpoint.
        let early = ledger.claim_many("q", "worker-2", 1).await.unwrap();
        let claim = match early.claims.into_iter().next() {
            Some(claim) => {
                assert!(server_ms(&mut conn).await >= at, "claimed before its time");
                claim
            }
            None => {
                assert_eq!(early.next_available_at.map(ms), Some(at));
                claim_at(&ledger, "q", "job", at).await
            }
        };
        assert_eq!(claim.attempt(), n + 1);
        assert_eq!(claim.checkpoint, Some(json!({"page": 7})));
        token = claim.token;
    }
    let done = ledger.complete(&token, Some(&json!("ok"))).await.unwrap();
    assert!(matches!(done, CompleteOutcome::Recorded { .. }), "{done:?}");
    let e = ledger.get("q", "job").await.unwrap();
    assert_eq!(
        (e.state, e.attempt, e.snoozes, e.continuations),
        (State::Succeeded, 4, 3, 3)
    );
    unstuck::testkit::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_snooze_until_an_instant_is_claimable_then() {
    let ledger = support::ledger("sz_until").await;
    let mut conn = raw().await;
    let token = running(&ledger, "q", "job", EnqueueOptions::new()).await;
    let until = DateTime::from_timestamp_millis(server_ms(&mut conn).await + 200).unwrap();
    let outcome = ledger
        .snooze(&token, Snooze::until(until, "provider down"))
        .await
        .unwrap();
    assert_eq!(snoozed(&outcome), (ms(until), 1));
    assert_eq!(
        ledger.get("q", "job").await.unwrap().available_at,
        Some(until)
    );
    let claim = claim_at(&ledger, "q", "job", ms(until)).await;
    assert_eq!(claim.attempt(), 2);
}

#[tokio::test]
async fn past_max_snoozes_a_snooze_is_a_retryable_failure() {
    let ledger = support::ledger("sz_limit").await;
    let opts = EnqueueOptions::new()
        .max_snoozes(1)
        .max_attempts(2)
        .backoff_base(Duration::from_millis(50));
    let token = running(&ledger, "q", "job", opts).await;
    let after = Duration::from_millis(50);
    let (at, _) = snoozed(
        &ledger
            .snooze(&token, Snooze::after(after, "429"))
            .await
            .unwrap(),
    );
    let token = claim_at(&ledger, "q", "job", at).await.token;

    // The second snooze is over the limit: a retryable failure (attempt 1 of 2 counted).
    let outcome = ledger
        .snooze(&token, Snooze::after(after, "429 again"))
        .await
        .unwrap();
    let SnoozeOutcome::LimitReached {
        retry_at: Some(retry_at),
        slot_released: true,
    } = outcome
    else {
        panic!("expected a retry scheduled, got {outcome:?}");
    };
    let e = ledger.get("q", "job").await.unwrap();
    assert_eq!((e.state, e.snoozes, e.continuations), (State::Queued, 1, 1));
    let error = e.last_error.unwrap_or_default();
    assert!(
        error.contains("snooze limit reached: 1 snoozes of max_snoozes 1")
            && error.contains("429 again"),
        "{error}"
    );
    assert_eq!(e.history.last().unwrap().reason, "retry_scheduled");

    // The retry (attempt 2 counted) snoozes over the limit again: no attempt left.
    let token = claim_at(&ledger, "q", "job", ms(retry_at)).await.token;
    let outcome = ledger
        .snooze(&token, Snooze::after(after, "429"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SnoozeOutcome::LimitReached {
            retry_at: None,
            slot_released: true
        }
    );
    let e = ledger.get("q", "job").await.unwrap();
    assert_eq!(e.state, State::Failed);
    assert_eq!(e.history.last().unwrap().reason, "attempts_exhausted");
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    unstuck::testkit::invariants::assert_ok(&ledger, &["q"]).await;

    // max_snoozes 0: the first snooze is already over the limit.
    let token = running(
        &ledger,
        "q",
        "none",
        EnqueueOptions::new().max_snoozes(0).max_attempts(1),
    )
    .await;
    let outcome = ledger
        .snooze(&token, Snooze::after(after, "429"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, SnoozeOutcome::LimitReached { retry_at: None, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_snooze_after_a_cancel_request_ends_cancelled() {
    let ledger = support::ledger("sz_cancel").await;
    let token = running(&ledger, "q", "job", EnqueueOptions::new()).await;
    ledger.cancel("q", "job", "not needed").await.unwrap();
    let outcome = ledger
        .snooze(&token, Snooze::after(Duration::from_secs(1), "429"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SnoozeOutcome::Cancelled {
            slot_released: true
        }
    );
    let e = ledger.get("q", "job").await.unwrap();
    assert_eq!((e.state, e.snoozes), (State::Cancelled, 0));
    assert_eq!(e.history.last().unwrap().reason, "snoozed_after_cancel");
    unstuck::testkit::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn bad_snoozes_are_refused_and_write_nothing() {
    let ledger = support::ledger("sz_bad").await;
    let mut conn = raw().await;
    let token = running(&ledger, "q", "job", EnqueueOptions::new()).await;
    let before = snapshot(&ledger).await;
    let now = server_ms(&mut conn).await;
    let at = |offset: i64| DateTime::from_timestamp_millis(now + offset).unwrap();
    let week = Duration::from_secs(7 * 24 * 3600);
    let bad = [
        ("after", Snooze::after(Duration::ZERO, "x")),
        ("after", Snooze::after(week + Duration::from_millis(1), "x")),
        ("after", Snooze::after(Duration::from_micros(1500), "x")),
        ("until", Snooze::until(at(-1000), "x")),
        ("until", Snooze::until(at(0), "x")),
        ("until", Snooze::until(at(8 * 24 * 3600 * 1000), "x")),
        (
            "until",
            Snooze::until(DateTime::from_timestamp_millis(-5).unwrap(), "x"),
        ),
        ("reason", Snooze::after(Duration::from_secs(1), " ")),
        (
            "reason",
            Snooze::after(Duration::from_secs(1), "x".repeat(1025)),
        ),
    ];
    for (name, snooze) in bad {
        let what = format!("{snooze:?}");
        match ledger.snooze(&token, snooze).await {
            Err(Error::InvalidArgument { name: n, .. }) if n == name => {}
            other => panic!("{what}: expected InvalidArgument naming {name}, got {other:?}"),
        }
    }
    assert_eq!(
        snapshot(&ledger).await,
        before,
        "a refused snooze wrote something"
    );

    // A forged token is refused, and still nothing is written.
    let forged = ledger_common::forged(&token, 1);
    let refused = ledger
        .snooze(&forged, Snooze::after(Duration::from_secs(1), "x"))
        .await;
    assert!(
        matches!(refused, Err(Error::TokenMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(snapshot(&ledger).await, before);
}

#[tokio::test]
async fn an_execution_stored_before_max_snoozes_existed_takes_the_default() {
    let ledger = support::ledger("sz_legacy").await;
    let mut conn = raw().await;
    let token = running(&ledger, "q", "job", EnqueueOptions::new()).await;
    let key = unstuck::testkit::keys(&ledger).execution("q", "job");
    let _: () = redis::cmd("HDEL")
        .arg(&key)
        .arg("msz")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        ledger.get("q", "job").await.unwrap().timings.max_snoozes,
        50
    );
    let outcome = ledger
        .snooze(&token, Snooze::after(Duration::from_millis(10), "429"))
        .await
        .unwrap();
    assert_eq!(snoozed(&outcome).1, 1);

    // A retry of such an execution takes the default too, not 0.
    let _: () = redis::cmd("HDEL")
        .arg(&key)
        .arg("msz")
        .query_async(&mut conn)
        .await
        .unwrap();
    ledger.cancel("q", "job", "stop").await.unwrap();
    ledger.retry("q", "job", None, "again").await.unwrap();
    let again = ledger.get("q", "job").await.unwrap().retries[0].clone();
    assert_eq!(
        ledger.get("q", &again).await.unwrap().timings.max_snoozes,
        50
    );
}

#[tokio::test]
async fn retry_after_wins_over_the_backoff_only_when_later() {
    let ledger = support::ledger("sz_retry_after").await;
    let mut conn = raw().await;
    let opts = || {
        EnqueueOptions::new()
            .max_attempts(3)
            .backoff_base(Duration::from_millis(300))
    };
    // Later than the backoff: it wins, past backoff_max too.
    let token = running(
        &ledger,
        "q",
        "late",
        opts().backoff_max(Duration::from_secs(1)),
    )
    .await;
    let t0 = server_ms(&mut conn).await;
    let options = FailOptions::retryable().retry_after(Duration::from_secs(5));
    let outcome = ledger.fail_with(&token, "429", options).await.unwrap();
    let t1 = server_ms(&mut conn).await;
    let FailOutcome::RetryScheduled { available_at, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!((t0 + 5000..=t1 + 5000).contains(&ms(available_at)));
    let e = ledger.get("q", "late").await.unwrap();
    assert_eq!(
        (e.state, e.continuations),
        (State::Queued, 0),
        "a failure is a retry"
    );
    assert_eq!(e.available_at, Some(available_at));

    // Sooner than the backoff: the backoff stands.
    let token = running(&ledger, "q2", "soon", opts()).await;
    let t0 = server_ms(&mut conn).await;
    let options = FailOptions::retryable().retry_after(Duration::from_millis(10));
    let outcome = ledger.fail_with(&token, "429", options).await.unwrap();
    let t1 = server_ms(&mut conn).await;
    let FailOutcome::RetryScheduled { available_at, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!((t0 + 300..=t1 + 300).contains(&ms(available_at)));

    // Bad values: refused, nothing written.
    let token = running(&ledger, "q3", "bad", opts()).await;
    let before = snapshot(&ledger).await;
    for options in [
        FailOptions::retryable().retry_after(Duration::ZERO),
        FailOptions::retryable().retry_after(Duration::from_secs(8 * 24 * 3600)),
        FailOptions::fatal().retry_after(Duration::from_secs(1)),
    ] {
        let refused = ledger.fail_with(&token, "429", options).await;
        assert!(
            matches!(&refused, Err(Error::InvalidArgument { name, .. }) if name == "retry_after"),
            "{options:?}: {refused:?}"
        );
    }
    assert_eq!(snapshot(&ledger).await, before);
}
