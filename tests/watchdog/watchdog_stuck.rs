//! How the rules combine around `stuck`: deadline before staleness, never-heartbeated work,
//! the stuck threshold counted from becoming stuck, bounded retries, and revival.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn deadline_wins_over_stuck() {
    let l = support::ledger("wd_deadline_wins").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "dw";
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .deadline(Duration::from_millis(200))
        .stuck_threshold(Duration::ZERO);
    start(&l, q, "a", opts).await;
    pass(250).await; // past both the heartbeat timeout and the deadline

    let report = wd.round(l.partition_of(q)).await.unwrap();
    assert_eq!(report.timed_out, 1, "{report:?}");
    assert_eq!(report.stuck + report.retried + report.dead, 0, "{report:?}");
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::TimedOut);
    assert_eq!(e.stop.unwrap().reason, StopReason::DeadlineExceeded);
    let evs = events_of(&l, q, "a").await;
    assert!(
        evs.iter().all(|e| e.to != Some(State::Stuck)),
        "never stuck: {:?}",
        moves(&evs)
    );
    assert_eq!(evs.last().unwrap().from, Some(State::Running));
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_dispatch_without_heartbeats_is_judged_by_start_grace_not_staleness() {
    let l = support::ledger("wd_never_beat").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "nb";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(50))
        .start_grace(Duration::from_millis(500))
        .stuck_threshold(Duration::ZERO)
        .backoff_base(Duration::ZERO);
    dispatch(&l, q, "a", opts, "w1").await;

    pass(150).await; // three heartbeat timeouts, no heartbeat ever
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "{report:?}");
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::Dispatched);
    assert!(e.stuck_since.is_none() && e.last_heartbeat_at.is_none());

    support::wait_until(Duration::from_secs(5), "start grace fires", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Queued
    })
    .await;
    let verdicts: Vec<_> = events_of(&l, q, "a")
        .await
        .into_iter()
        .filter(|e| !CLIENT_REASONS.contains(&e.reason.as_str()))
        .map(|e| (e.from, e.to, e.reason))
        .collect();
    assert_eq!(
        verdicts,
        vec![(
            Some(State::Dispatched),
            Some(State::Queued),
            "start_timeout".to_owned()
        )]
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn stuck_threshold_counts_from_becoming_stuck_not_from_the_start() {
    let l = support::ledger("wd_stuck_since").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "ss";
    let p = l.partition_of(q);
    let threshold = Duration::from_secs(1);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(200))
        .stuck_threshold(threshold)
        .backoff_base(Duration::ZERO);
    let token = start(&l, q, "a", opts).await;

    // A long, healthy run: 1.5 s of heartbeats, rounds finding nothing to do.
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_millis(1500) {
        beat(&l, &token, Heartbeat::new()).await;
        assert!(!wd.round(p).await.unwrap().acted());
        pass(50).await;
    }

    support::wait_until(Duration::from_secs(5), "stuck", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Stuck
    })
    .await;
    let e = l.get(q, "a").await.unwrap();
    let since = e.stuck_since.unwrap();
    assert!(since - e.started_at.unwrap() > chrono::Duration::from_std(threshold).unwrap());

    // Running for longer than the threshold, but only just stuck: not remediated.
    let report = wd.round(p).await.unwrap();
    assert_eq!(report.retried + report.dead, 0, "{report:?}");
    assert_eq!(state(&l, q, "a").await, State::Stuck);

    support::wait_until(Duration::from_secs(5), "retried", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Queued
    })
    .await;
    let retried = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(retried.to, Some(State::Queued));
    assert!(
        retried.at - since >= chrono::Duration::from_std(threshold).unwrap(),
        "remediated {:?} after becoming stuck",
        retried.at - since
    );
    assert_eq!(
        retried.timer_due_at,
        Some(since + chrono::Duration::from_std(threshold).unwrap())
    );
}

#[tokio::test]
async fn one_retry_after_process_loss_then_dead_naming_the_latest_failure() {
    let l = support::ledger("wd_one_retry").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "or";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .start_grace(Duration::from_millis(100))
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::ZERO)
        .backoff_base(Duration::ZERO)
        .max_attempts(2);

    // Attempt 1 is lost before it starts.
    let first = dispatch(&l, q, "a", opts, "w1").await;
    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!((report.retried, report.dead), (1, 0), "{report:?}");

    // Attempt 2 starts, then its process dies.
    let second = l.claim(q, "w2").await.unwrap().unwrap();
    assert_eq!(second.attempt(), 2);
    beat(&l, &second.token, Heartbeat::new()).await;
    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!(
        (report.stuck, report.retried, report.dead),
        (1, 0, 1),
        "{report:?}"
    );

    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Dead, 2));
    assert_eq!(e.stop.unwrap().reason, StopReason::HeartbeatLost);
    let error = e.last_error.unwrap();
    assert!(error.starts_with("attempt 2 of 2 lost"), "{error}");
    let (latest, earlier) = error.split_once("; before that: ").expect("both failures");
    assert!(latest.contains("no heartbeat"), "{error}");
    assert!(earlier.contains("start_grace"), "{error}");

    let evs = events_of(&l, q, "a").await;
    let retries = evs.iter().filter(|e| e.to == Some(State::Queued)).count();
    assert_eq!(retries, 2, "enqueued, then exactly one retry");
    let last = evs.last().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str(), last.attempt),
        (
            Some(State::Stuck),
            Some(State::Dead),
            "attempts_exhausted",
            2
        )
    );
    assert!(
        l.claim(q, "w3").await.unwrap().is_none(),
        "no third attempt"
    );
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0);
    for token in [&first.token, &second.token] {
        assert!(matches!(
            l.heartbeat(token, Heartbeat::new()).await.unwrap(),
            HeartbeatReply::Terminal {
                state: State::Dead,
                ..
            }
        ));
    }
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_heartbeat_of_the_current_attempt_revives_a_stuck_execution() {
    let l = support::ledger("wd_revival").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "rv";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_millis(300))
        .no_progress_timeout(Duration::ZERO)
        .deadline(LONG);
    let token = start(&l, q, "a", opts).await;
    pass(150).await;
    assert_eq!(wd.round(p).await.unwrap().stuck, 1);
    assert_eq!(state(&l, q, "a").await, State::Stuck);

    beat(&l, &token, Heartbeat::new()).await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.false_alarms), (State::Running, 1));
    assert!(e.stuck_since.is_none());
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str(), last.attempt),
        (Some(State::Stuck), Some(State::Running), "revived", 1)
    );

    // Well past the stuck threshold of the withdrawn verdict, it is left alone.
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_millis(500) {
        beat(&l, &token, Heartbeat::new()).await;
        let report = wd.round(p).await.unwrap();
        assert!(!report.acted(), "{report:?}");
        pass(40).await;
    }
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.attempt, e.false_alarms), (State::Running, 1, 1));
    support::invariants::assert_ok(&l, &[q]).await;
}
