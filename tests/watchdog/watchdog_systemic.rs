//! Systemic holds: a partition left unwatched, or most of its running executions going
//! stale at once, pauses the staleness rules for a grace period (deadlines still apply)
//! and says so in a `systemic_hold` event, instead of mass-failing work.

use crate::support;
use crate::watchdog_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

fn holds(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.reason == "systemic_hold")
        .collect()
}

fn stale_after(ms: u64) -> EnqueueOptions {
    EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(ms))
        .stuck_threshold(LONG)
}

#[tokio::test]
async fn an_unwatched_partition_holds_then_judges_after_the_grace() {
    let l = support::ledger("wd_absence").await;
    let grace = Duration::from_millis(1500);
    let config = WatchdogConfig {
        systemic_absence: Some(Duration::from_millis(300)),
        systemic_grace: Some(grace),
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let q = "abs";
    let p = l.partition_of(q);
    start(&l, q, "stale", stale_after(250)).await;
    l.enqueue(
        q,
        &serde_json::json!({}),
        EnqueueOptions::new()
            .id("deadline")
            .deadline(Duration::from_millis(700)),
    )
    .await
    .unwrap();
    assert!(!wd.round(p).await.unwrap().acted(), "watched, nothing due");

    pass(450).await; // no round for longer than the absence; `stale` went stale meanwhile
    let report = wd.round(p).await.unwrap();
    assert!(report.hold_started, "{report:?}");
    assert!(report.holding > Duration::ZERO && report.holding <= grace);
    assert_eq!(report.stuck, 0, "{report:?}");
    let evs = events(&l, p).await;
    let hold = holds(&evs);
    assert_eq!(hold.len(), 1);
    let hold = hold[0].clone();
    assert_eq!((hold.from, hold.to), (None, None));
    assert!(hold.execution_id.is_empty());
    assert!(hold.detail.contains("unwatched"), "{}", hold.detail);

    // During the hold deadlines still apply; staleness does not.
    support::wait_until(Duration::from_secs(5), "deadline applies", || async {
        let report = wd.round(p).await.unwrap();
        if report.holding > Duration::ZERO {
            assert_eq!(report.stuck, 0, "{report:?}");
        }
        state(&l, q, "deadline").await == State::TimedOut
    })
    .await;
    let timed_out = events_of(&l, q, "deadline").await.pop().unwrap();
    assert!(timed_out.at < hold.at + chrono::Duration::from_std(grace).unwrap());

    support::wait_until(Duration::from_secs(5), "judged after the grace", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "stale").await == State::Stuck
    })
    .await;
    let stuck = events_of(&l, q, "stale").await.pop().unwrap();
    assert!(stuck.at >= hold.at + chrono::Duration::from_std(grace).unwrap());
    assert_eq!(holds(&events(&l, p).await).len(), 1, "no second hold");
    support::invariants::assert_ok(&l, &[q]).await;
}

/// Twenty running executions: `stale` of them go stale 200 ms after their last heartbeat,
/// sent together at the end, the rest have a minute. Returns the ids of the stale ones
/// with their tokens.
async fn twenty_running(l: &Ledger, q: &str, stale: usize) -> Vec<(String, AttemptToken)> {
    let mut out = Vec::new();
    for i in 0..20 {
        let id = format!("e{i:02}");
        let ms = if i < stale { 200 } else { 60_000 };
        let token = start(l, q, &id, stale_after(ms)).await;
        if i < stale {
            out.push((id, token));
        }
    }
    for (_, token) in &out {
        beat(l, token, Heartbeat::new()).await;
    }
    out
}

fn mass_config(grace: Duration) -> WatchdogConfig {
    WatchdogConfig {
        systemic_min_running: 10,
        systemic_share: 0.5,
        systemic_grace: Some(grace),
        ..config("r1")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_running_going_stale_at_once_holds_instead_of_failing() {
    let l = support::ledger("wd_mass_stale").await;
    let grace = Duration::from_millis(1000);
    let wd: Watchdog = sole_replica(&l, mass_config(grace)).await;
    let q = "mass";
    let p = l.partition_of(q);
    let stale = twenty_running(&l, q, 15).await;

    pass(250).await; // all 15 past their heartbeat timeout
    let report = wd.round(p).await.unwrap();
    assert!(report.hold_started, "{report:?}");
    assert_eq!(report.stuck + report.retried + report.dead, 0, "{report:?}");
    let hold = holds(&events(&l, p).await)[0].clone();
    assert!(hold.detail.contains("15 of 20"), "{}", hold.detail);
    assert_eq!(
        wd.reconcile(p).await.unwrap(),
        None,
        "no orphaning during a hold"
    );

    // Five of them turn out alive during the grace and keep heartbeating.
    let stop = Arc::new(AtomicBool::new(false));
    let revivers: Vec<AttemptToken> = stale[..5].iter().map(|(_, t)| t.clone()).collect();
    let beating = tokio::spawn({
        let l = l.clone();
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                for token in &revivers {
                    beat(&l, token, Heartbeat::new()).await;
                }
                pass(40).await;
            }
        }
    });
    assert!(!wd.round(p).await.unwrap().acted(), "holding");

    support::wait_until(Duration::from_secs(5), "still-stale judged", || async {
        wd.round(p).await.unwrap();
        l.list(q, State::Stuck, None, 100)
            .await
            .unwrap()
            .items
            .len()
            == 10
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    beating.await.unwrap();

    for (i, (id, _)) in stale.iter().enumerate() {
        let e = l.get(q, id).await.unwrap();
        let expected = if i < 5 { State::Running } else { State::Stuck };
        assert_eq!(e.state, expected, "{id}");
        if let Some(since) = e.stuck_since {
            assert!(since >= hold.at + chrono::Duration::from_std(grace).unwrap());
        }
    }
    for i in 15..20 {
        assert_eq!(state(&l, q, &format!("e{i:02}")).await, State::Running);
    }
    let evs = events(&l, p).await;
    assert_eq!(holds(&evs).len(), 1, "one hold");
    assert!(
        evs.iter().all(|e| !e.to.is_some_and(State::is_terminal)),
        "nothing failed"
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_few_going_stale_is_no_systemic_event() {
    let l = support::ledger("wd_few_stale").await;
    let wd = sole_replica(&l, mass_config(Duration::from_secs(1))).await;
    let q = "few";
    let p = l.partition_of(q);
    twenty_running(&l, q, 3).await;
    pass(250).await;
    let report = wd.round(p).await.unwrap();
    assert!(!report.hold_started, "{report:?}");
    assert_eq!((report.stuck, report.holding), (3, Duration::ZERO));
    assert!(holds(&events(&l, p).await).is_empty());
}
