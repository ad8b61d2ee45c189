//! Each timer rule of a watchdog round, one test per rule: deadline, start grace,
//! heartbeat, no progress, cancel grace. Rounds are driven by hand; sleeps only pass a
//! timeout the test itself set.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn deadline_times_out_queued_dispatched_running_and_stuck_executions() {
    let l = support::ledger("wd_deadline").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "dl";
    let p = l.partition_of(q);
    let deadline = Duration::from_millis(700);
    let opts = || {
        EnqueueOptions::new()
            .deadline(deadline)
            .start_grace(LONG)
            .heartbeat_timeout(LONG)
            .stuck_threshold(LONG)
    };
    dispatch(&l, q, "dispatched", opts(), "w1").await;
    start(&l, q, "running", opts()).await;
    start(
        &l,
        q,
        "stuck",
        opts().heartbeat_timeout(Duration::from_millis(100)),
    )
    .await;
    l.enqueue(q, &json!({}), opts().id("queued")).await.unwrap();

    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!((report.stuck, report.timed_out), (1, 0), "{report:?}");
    assert_eq!(state(&l, q, "stuck").await, State::Stuck);
    assert_eq!(l.slots_in_use(q).await.unwrap(), 3);

    let timed_out = std::cell::Cell::new(0);
    support::wait_until(Duration::from_secs(5), "all four time out", || async {
        let report = wd.round(p).await.unwrap();
        assert_eq!(report.stuck + report.retried + report.dead, 0, "{report:?}");
        timed_out.set(timed_out.get() + report.timed_out);
        timed_out.get() == 4
    })
    .await;

    for (id, from) in [
        ("queued", State::Queued),
        ("dispatched", State::Dispatched),
        ("running", State::Running),
        ("stuck", State::Stuck),
    ] {
        let e = l.get(q, id).await.unwrap();
        assert_eq!(e.state, State::TimedOut, "{id}");
        let stop = e.stop.expect("stop metadata");
        assert_eq!(stop.reason, StopReason::DeadlineExceeded, "{id}");
        assert_eq!(stop.timeout, Some(deadline), "{id}");
        assert!(stop.timeout_fired && stop.timeout_configured, "{id}");
        assert!(e.finished_at.is_some(), "{id}");
        let evs = events_of(&l, q, id).await;
        let last = evs.last().unwrap();
        assert_eq!(
            (last.from, last.to, last.reason.as_str()),
            (Some(from), Some(State::TimedOut), "deadline_exceeded"),
            "{id}"
        );
        assert_eq!(
            last.timer_due_at, e.deadline_at,
            "{id}: due at the deadline"
        );
    }
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0, "slots freed");
    assert_eq!(l.pending_count(q).await.unwrap(), 0);
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn dispatch_not_started_within_start_grace_takes_the_retry_path() {
    let l = support::ledger("wd_start_grace").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "sg";
    let p = l.partition_of(q);
    let opts = |attempts| {
        EnqueueOptions::new()
            .start_grace(Duration::from_millis(100))
            .backoff_base(Duration::ZERO)
            .max_attempts(attempts)
    };
    let retried = dispatch(&l, q, "retried", opts(2), "w1").await;
    dispatch(&l, q, "dead", opts(1), "w1").await;

    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "within the grace: {report:?}");
    assert_eq!(state(&l, q, "retried").await, State::Dispatched);

    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!((report.retried, report.dead), (1, 1), "{report:?}");
    assert_eq!(report.stuck, 0);

    let e = l.get(q, "retried").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Queued, 1));
    assert!(e.stop.is_none());
    assert!(
        e.last_error
            .as_deref()
            .unwrap()
            .contains("start_grace 100ms")
    );
    let last = events_of(&l, q, "retried").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str(), last.attempt),
        (
            Some(State::Dispatched),
            Some(State::Queued),
            "start_timeout",
            1
        )
    );

    let dead = l.get(q, "dead").await.unwrap();
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.stop.unwrap().reason, StopReason::StartTimeout);
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0);

    // The next claim is attempt 2; the lost attempt's token is refused.
    let again = l.claim(q, "w2").await.unwrap().unwrap();
    assert_eq!((again.id(), again.attempt()), ("retried", 2));
    assert!(matches!(
        l.heartbeat(&retried.token, Heartbeat::new()).await.unwrap(),
        HeartbeatReply::StaleAttempt {
            current_attempt: 2,
            ..
        }
    ));
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn missing_heartbeats_go_stuck_then_retry_with_the_last_checkpoint() {
    let l = support::ledger("wd_heartbeat").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "hb";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_millis(300))
        .backoff_base(Duration::ZERO);
    let token = start(&l, q, "a", opts).await;
    beat(
        &l,
        &token,
        Heartbeat::new()
            .progress("step 3")
            .checkpoint(json!({ "step": 3 })),
    )
    .await;

    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!((report.stuck, report.retried), (1, 0), "{report:?}");
    let stuck = l.get(q, "a").await.unwrap();
    assert_eq!(stuck.state, State::Stuck);
    let since = stuck.stuck_since.expect("stuck_since set");
    assert_eq!(l.slots_in_use(q).await.unwrap(), 1, "stuck still holds");

    // Not remediated before the threshold.
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "{report:?}");
    assert_eq!(state(&l, q, "a").await, State::Stuck);

    support::wait_until(Duration::from_secs(5), "retried", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Queued
    })
    .await;
    let evs = events_of(&l, q, "a").await;
    let tail = moves(&evs[evs.len() - 2..]);
    assert_eq!(
        tail,
        vec![
            (
                Some(State::Running),
                Some(State::Stuck),
                "heartbeat_lost".into(),
                1
            ),
            (
                Some(State::Stuck),
                Some(State::Queued),
                "heartbeat_lost".into(),
                1
            ),
        ]
    );
    assert!(
        evs[evs.len() - 2]
            .detail
            .contains("heartbeat_timeout 100ms")
    );
    let retried_at = evs.last().unwrap().at;
    assert!(retried_at - since >= chrono::Duration::milliseconds(300));
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0);

    let next = l.claim(q, "w2").await.unwrap().unwrap();
    assert_eq!(next.attempt(), 2);
    assert_eq!(next.checkpoint, Some(json!({ "step": 3 })));
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn heartbeats_without_progress_go_stuck_and_only_moving_progress_revives() {
    let l = support::ledger("wd_no_progress").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "np";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .no_progress_timeout(Duration::from_millis(200))
        .heartbeat_timeout(LONG)
        .stuck_threshold(LONG);
    let token = start(&l, q, "a", opts).await;
    beat(&l, &token, Heartbeat::new().progress("p1")).await;

    // Heartbeats keep arriving with the same progress until past the timeout.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(250) {
        beat(&l, &token, Heartbeat::new().progress("p1")).await;
        let report = wd.round(p).await.unwrap();
        if report.stuck == 1 {
            break;
        }
        assert!(!report.acted(), "{report:?}");
        pass(30).await;
    }
    support::wait_until(Duration::from_secs(5), "stuck for no progress", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Stuck
    })
    .await;
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (Some(State::Running), Some(State::Stuck), "no_progress")
    );
    assert!(last.detail.contains("no_progress_timeout 200ms"));

    // A heartbeat with unchanged progress does not revive it...
    let reply = l
        .heartbeat(&token, Heartbeat::new().progress("p1"))
        .await
        .unwrap();
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        }
    );
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.false_alarms), (State::Stuck, 0));

    // ...one whose progress moved does.
    beat(&l, &token, Heartbeat::new().progress("p2")).await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.false_alarms), (State::Running, 1));
    assert!(e.stuck_since.is_none());
    assert_eq!(events_of(&l, q, "a").await.pop().unwrap().reason, "revived");
    assert!(!wd.round(p).await.unwrap().acted());
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn cancel_not_acknowledged_within_cancel_grace_is_forced() {
    let l = support::ledger("wd_cancel").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "cx";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .cancel_grace(Duration::from_millis(100))
        .heartbeat_timeout(LONG);
    let token = start(&l, q, "a", opts).await;
    assert!(matches!(
        l.cancel(q, "a", "operator asked").await.unwrap(),
        CancelOutcome::Requested { already: false, .. }
    ));
    assert_eq!(
        l.heartbeat(&token, Heartbeat::new()).await.unwrap(),
        HeartbeatReply::Ok {
            cancel_requested: true,
            cancel_reason: None,
        }
    );
    assert!(!wd.round(p).await.unwrap().acted(), "within the grace");
    assert_eq!(state(&l, q, "a").await, State::Running);

    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.stop.unwrap().reason, StopReason::Cancelled);
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0, "slot freed");
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (
            Some(State::Running),
            Some(State::Cancelled),
            "cancel_forced"
        )
    );
    // The worker's late acknowledgement changes nothing.
    assert_eq!(
        l.acknowledge_cancel(&token).await.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: State::Cancelled,
            stop_reason: StopReason::Cancelled
        }
    );
    support::invariants::assert_ok(&l, &[q]).await;
}
