//! Awaiting work and the watchdog: never judged stale, ended (or re-queued) at its wait
//! deadline with the lag reported, still bound by its hard deadline, not delayed by a
//! systemic hold, and kept by retention while it waits.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::error::Error;
use unstuck::watchdog::WatchdogConfig;
use unstuck::*;
use watchdog_common::*;

fn wait(ms: u64) -> AwaitResume {
    AwaitResume {
        reason: "approval".into(),
        wait_deadline: Duration::from_millis(ms),
        checkpoint: None,
    }
}

/// Starts `id` with short staleness timings and awaits at once.
async fn awaiting(l: &Ledger, q: &str, id: &str, opts: EnqueueOptions, ms: u64) -> Awaited {
    let opts = opts
        .heartbeat_timeout(Duration::from_millis(100))
        .start_grace(Duration::from_millis(100))
        .stuck_threshold(Duration::ZERO);
    let token = start(l, q, id, opts).await;
    match l.await_resume(&token, wait(ms)).await.unwrap() {
        AwaitOutcome::Awaiting(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unresumed_wait_fails_at_its_deadline_and_is_never_judged_stale() {
    let l = support::ledger("aw_expire").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "aq";
    let p = l.partition_of(q);
    let a = awaiting(&l, q, "a", EnqueueOptions::new(), 600).await;
    // Well past the heartbeat timeout, start grace and stuck threshold: nothing happens.
    pass(300).await;
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "{report:?}");
    assert_eq!(state(&l, q, "a").await, State::Awaiting);
    support::invariants::assert_ok(&l, &[q]).await;

    support::wait_until(Duration::from_secs(5), "the wait expires", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Failed
    })
    .await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.stop.as_ref().unwrap().reason, StopReason::WaitExpired);
    assert!(e.last_error.unwrap().contains("approval"));
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(last.reason, "wait_expired");
    assert_eq!(
        (last.from, last.to),
        (Some(State::Awaiting), Some(State::Failed))
    );
    assert_eq!(
        last.timer_due_at,
        Some(a.wait_deadline_at),
        "lag is measured"
    );
    assert!(last.replica.is_some());
    let moves: Vec<String> = events_of(&l, q, "a")
        .await
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(
        !moves
            .iter()
            .any(|r| r == "heartbeat_lost" || r == "start_timeout"),
        "{moves:?}"
    );
    let totals = unstuck::watchdog::status(&l).await.unwrap().totals;
    assert_eq!(totals.wait_expired, 1, "{totals:?}");
    // Too late to resume: the state is named.
    let err = l.resume(q, "a", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotAwaiting { state, .. } if state == "failed"),
        "{err:?}"
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_queue_may_re_queue_an_expired_wait_instead() {
    let l = support::ledger("aw_requeue").await;
    let q = "rq";
    l.set_queue(
        q,
        &QueueSettings {
            on_wait_expiry: Some(WaitExpiry::Requeue),
            ..QueueSettings::default()
        },
    )
    .await
    .unwrap();
    let wd = sole_replica(&l, config("r1")).await;
    let p = l.partition_of(q);
    awaiting(&l, q, "a", EnqueueOptions::new().max_attempts(1), 200).await;
    assert_eq!(
        l.get(q, "a").await.unwrap().wait.unwrap().on_expiry,
        "requeue"
    );
    support::wait_until(Duration::from_secs(5), "the wait expires", || async {
        wd.round(p).await.unwrap().wait_expired == 1
    })
    .await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::Queued);
    assert_eq!(e.history.last().unwrap().reason, "wait_expired");
    support::invariants::assert_ok(&l, &[q]).await;
    // The next claim continues without input; max_attempts 1 is not used up.
    let claim = l.claim(q, "w").await.unwrap().unwrap();
    assert_eq!((claim.attempt(), claim.resume_input.clone()), (2, None));
    let out = l.fail(&claim.token, "once more", true).await.unwrap();
    assert!(matches!(out, FailOutcome::Failed { .. }), "{out:?}");
}

#[tokio::test]
async fn the_hard_deadline_still_applies_while_awaiting() {
    let l = support::ledger("aw_deadline").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "dq";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new().deadline(Duration::from_millis(400));
    awaiting(&l, q, "a", opts, 60_000).await;
    support::wait_until(Duration::from_secs(5), "the deadline passes", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::TimedOut
    })
    .await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.stop.unwrap().reason, StopReason::DeadlineExceeded);
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_systemic_hold_neither_delays_a_wait_deadline_nor_refuses_a_resume() {
    let l = support::ledger("aw_hold").await;
    let grace = Duration::from_secs(3);
    let config = WatchdogConfig {
        systemic_absence: Some(Duration::from_millis(200)),
        systemic_grace: Some(grace),
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let q = "hq";
    let p = l.partition_of(q);
    // A running execution going stale while nobody watches: the next round holds.
    start(
        &l,
        q,
        "stale",
        EnqueueOptions::new().heartbeat_timeout(Duration::from_millis(150)),
    )
    .await;
    awaiting(&l, q, "expires", EnqueueOptions::new(), 700).await;
    awaiting(&l, q, "resumed", EnqueueOptions::new(), 60_000).await;
    assert!(!wd.round(p).await.unwrap().acted());
    pass(350).await;
    let report = wd.round(p).await.unwrap();
    assert!(report.hold_started, "{report:?}");

    // During the hold: a resume is accepted, and the wait deadline is judged on time.
    let r = l
        .resume(q, "resumed", Some(&json!({"approved": true})))
        .await
        .unwrap();
    assert!(!r.already);
    support::wait_until(Duration::from_secs(5), "the wait expires", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "expires").await == State::Failed
    })
    .await;
    // Judged before the hold ended: the hold did not delay it.
    assert!(
        wd.round(p).await.unwrap().holding > Duration::ZERO,
        "still holding"
    );
    let expired = events_of(&l, q, "expires").await.pop().unwrap();
    assert_eq!(expired.reason, "wait_expired");
    assert_eq!(
        state(&l, q, "stale").await,
        State::Running,
        "staleness is held"
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn retention_keeps_awaiting_work() {
    let l = support::ledger("aw_retention").await;
    let q = "kq";
    l.set_queue(
        q,
        &QueueSettings {
            retention: Retention {
                max_finished: Some(1),
                succeeded: Some(Duration::from_millis(1)),
                failed: Some(Duration::from_millis(1)),
                ..Retention::default()
            },
            ..QueueSettings::default()
        },
    )
    .await
    .unwrap();
    let wd = sole_replica(&l, config("r1")).await;
    awaiting(&l, q, "waits", EnqueueOptions::new(), 60_000).await;
    for id in ["done1", "done2"] {
        let t = start(&l, q, id, EnqueueOptions::new()).await;
        l.complete(&t, None).await.unwrap();
    }
    pass(20).await;
    let p = l.partition_of(q);
    support::wait_until(
        Duration::from_secs(5),
        "the finished ones are pruned",
        || async {
            wd.prune(p).await.unwrap();
            l.get(q, "done1").await.is_err() && l.get(q, "done2").await.is_err()
        },
    )
    .await;
    assert_eq!(state(&l, q, "waits").await, State::Awaiting);
    support::invariants::assert_ok(&l, &[q]).await;
}
