//! Worker reconciliation: executions of a worker that is gone, or that a live worker no
//! longer lists, are orphaned at once; everything the registry cannot vouch for is left to
//! the timer rules.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use redis::AsyncCommands;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

/// A replica that judges a worker gone after 200 ms without a registry heartbeat.
async fn replica(l: &Ledger) -> Watchdog {
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        ..config("r1")
    };
    sole_replica(l, config).await
}

async fn register(l: &Ledger, queue: &str) -> String {
    let reg = WorkerRegistration::for_this_process("v1", vec![queue.to_owned()]);
    l.register_worker(&reg).await.unwrap();
    reg.worker_id
}

/// Enqueues and starts `id` as `worker`, with timers far off so only reconciliation acts.
async fn start_as(l: &Ledger, q: &str, id: &str, worker: &str, opts: EnqueueOptions) {
    let opts = opts
        .heartbeat_timeout(LONG)
        .stuck_threshold(LONG)
        .backoff_base(Duration::ZERO);
    let claim = dispatch(l, q, id, opts, worker).await;
    beat(l, &claim.token, Heartbeat::new()).await;
}

fn listing(q: &str, ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (q.to_owned(), (*id).to_owned()))
        .collect()
}

#[tokio::test]
async fn executions_of_a_gone_worker_are_orphaned_at_once() {
    let l = support::ledger("wd_worker_lost").await;
    let wd = replica(&l).await;
    let q = "wl";
    let p = l.partition_of(q);
    let worker = register(&l, q).await;
    start_as(&l, q, "retried", &worker, EnqueueOptions::new()).await;
    start_as(
        &l,
        q,
        "dead",
        &worker,
        EnqueueOptions::new().max_attempts(1),
    )
    .await;
    l.worker_heartbeat(&worker, &listing(q, &["retried", "dead"]))
        .await
        .unwrap();

    let report = wd.reconcile(p).await.unwrap().expect("registry readable");
    assert_eq!(report.orphaned, 0, "alive and listing both: {report:?}");

    // The worker stops heartbeating its registry entry; the executions' own heartbeat
    // timeout is a minute away.
    pass(250).await;
    let report = wd.reconcile(p).await.unwrap().expect("registry readable");
    assert_eq!(
        (report.orphaned, report.retried, report.dead),
        (2, 1, 1),
        "{report:?}"
    );

    let e = l.get(q, "retried").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Queued, 1));
    let last = events_of(&l, q, "retried").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (Some(State::Running), Some(State::Queued), "worker_lost")
    );
    assert!(last.detail.contains(&worker) && last.detail.contains("gone"));
    let dead = l.get(q, "dead").await.unwrap();
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.stop.unwrap().reason, StopReason::WorkerLost);
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0);
    assert_eq!(l.claim(q, "w2").await.unwrap().unwrap().attempt(), 2);

    // Acted on once: a second pass finds nothing left.
    let report = wd.reconcile(p).await.unwrap().unwrap();
    assert_eq!(report.orphaned, 0, "{report:?}");
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_live_worker_that_no_longer_lists_an_execution_orphans_it() {
    let l = support::ledger("wd_forgotten").await;
    let wd = replica(&l).await;
    let q = "fg";
    let p = l.partition_of(q);
    let worker = register(&l, q).await;
    let grace = EnqueueOptions::new().start_grace(Duration::from_millis(150));
    start_as(&l, q, "forgotten", &worker, grace.clone()).await;
    start_as(&l, q, "listed", &worker, grace).await;

    // Within the start grace a worker may not list what it was just given.
    l.worker_heartbeat(&worker, &listing(q, &["listed"]))
        .await
        .unwrap();
    assert_eq!(wd.reconcile(p).await.unwrap().unwrap().orphaned, 0);

    pass(200).await;
    l.worker_heartbeat(&worker, &listing(q, &["listed"]))
        .await
        .unwrap();
    let report = wd.reconcile(p).await.unwrap().unwrap();
    assert_eq!((report.orphaned, report.retried), (1, 1), "{report:?}");
    assert_eq!(state(&l, q, "forgotten").await, State::Queued);
    assert_eq!(
        state(&l, q, "listed").await,
        State::Running,
        "listed: untouched"
    );
    let last = events_of(&l, q, "forgotten").await.pop().unwrap();
    assert_eq!(last.reason, "worker_lost");
    assert!(last.detail.contains("no longer lists"), "{}", last.detail);
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn workers_missing_from_the_registry_are_not_judged_gone() {
    let l = support::ledger("wd_unregistered").await;
    let wd = replica(&l).await;
    let q = "ur";
    let p = l.partition_of(q);
    start_as(&l, q, "ghost", "never-registered", EnqueueOptions::new()).await;
    let leaver = register(&l, q).await;
    start_as(&l, q, "left", &leaver, EnqueueOptions::new()).await;
    l.deregister_worker(&leaver).await.unwrap();
    assert!(l.worker(&leaver).await.unwrap().is_none());

    pass(250).await; // past worker_timeout
    let report = wd.reconcile(p).await.unwrap().expect("registry readable");
    assert_eq!(report.orphaned, 0, "{report:?}");
    assert_eq!(state(&l, q, "ghost").await, State::Running);
    assert_eq!(state(&l, q, "left").await, State::Running);
}

#[tokio::test]
async fn an_unreadable_registry_skips_reconciliation() {
    let l = support::ledger("wd_registry_broken").await;
    let wd = replica(&l).await;
    let q = "rb";
    let p = l.partition_of(q);
    let gone = register(&l, q).await;
    start_as(&l, q, "a", &gone, EnqueueOptions::new()).await;
    let damaged = register(&l, q).await;
    let key = keyspace(&l).worker(&damaged);
    let mut raw = raw(&l).await;
    let _: () = raw.hset(&key, "seen", "abc").await.unwrap();
    assert!(l.workers().await.is_err(), "registry unreadable");

    pass(250).await; // `gone` is past worker_timeout
    assert_eq!(wd.reconcile(p).await.unwrap(), None, "skipped");
    assert_eq!(state(&l, q, "a").await, State::Running);

    // Once the registry reads again, the gone worker's execution is orphaned.
    let _: () = raw.del(&key).await.unwrap();
    let report = wd.reconcile(p).await.unwrap().expect("readable again");
    assert_eq!(report.orphaned, 1, "{report:?}");
    assert_eq!(state(&l, q, "a").await, State::Queued);
}

#[tokio::test]
async fn most_workers_gone_at_once_holds_reconciliation_back() {
    let l = support::ledger("wd_workers_blip").await;
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        systemic_share: 0.5,
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let q = "mg";
    let p = l.partition_of(q);
    for id in ["a", "b", "c"] {
        let worker = register(&l, q).await;
        start_as(&l, q, id, &worker, EnqueueOptions::new()).await;
    }
    pass(250).await; // all three past worker_timeout
    assert_eq!(wd.reconcile(p).await.unwrap(), None, "held back");
    for id in ["a", "b", "c"] {
        assert_eq!(state(&l, q, id).await, State::Running, "{id}");
    }
}

#[tokio::test]
async fn a_replica_whose_lease_was_superseded_cannot_orphan() {
    let l = support::ledger("wd_orphan_fenced").await;
    let fenced = |id: &str| WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        ..running_config(id)
    };
    let a = sole_replica(&l, fenced("a")).await;
    let q = "of";
    let p = l.partition_of(q);
    let worker = register(&l, q).await;
    start_as(&l, q, "x", &worker, EnqueueOptions::new()).await;

    // A pauses past its lease; the worker is gone meanwhile; B takes over.
    pass(700).await;
    let b = Watchdog::new(reconnect(&l).await, fenced("b")).unwrap();
    assert_eq!(b.rebalance().await.unwrap().acquired.len(), 16);
    let before = l.get(q, "x").await.unwrap();
    assert!(matches!(
        a.reconcile(p).await,
        Err(Error::LeaseLost { partition, .. }) if partition == p
    ));
    assert_eq!(l.get(q, "x").await.unwrap(), before, "untouched");

    let report = b.reconcile(p).await.unwrap().unwrap();
    assert_eq!(report.orphaned, 1, "{report:?}");
}

// Crashed workers pile up in the registry; the "most workers gone at once" guard must
// count only workers that went quiet recently, or reconciliation would be held back for
// good once past crashes outnumber live workers.
#[tokio::test]
async fn workers_gone_long_ago_do_not_hold_reconciliation_back() {
    let l = support::ledger("wd_old_gone").await;
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        systemic_share: 0.5,
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let q = "og";
    let p = l.partition_of(q);

    // Two workers crashed earlier; reconciliation saw them go.
    register(&l, q).await;
    register(&l, q).await;
    pass(250).await;
    assert!(wd.reconcile(p).await.unwrap().is_some());

    // Today: one healthy worker, and one that crashes holding an execution.
    let healthy = register(&l, q).await;
    let crashing = register(&l, q).await;
    start_as(&l, q, "x", &crashing, EnqueueOptions::new()).await;
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_millis(300) {
        l.worker_heartbeat(&healthy, &[]).await.unwrap();
        pass(50).await;
    }
    l.worker_heartbeat(&healthy, &[]).await.unwrap();

    let report = wd.reconcile(p).await.unwrap();
    assert_eq!(
        report.map(|r| r.orphaned),
        Some(1),
        "one worker of two live ones went gone: its execution is orphaned"
    );
    assert_eq!(state(&l, q, "x").await, State::Queued);
}

#[tokio::test]
async fn workers_silent_past_retention_are_pruned_from_the_registry() {
    let ledger = support::ledger("prune_workers").await;
    let old = unstuck::WorkerRegistration::for_this_process("1", vec!["q".into()]);
    ledger.register_worker(&old).await.unwrap();
    // Silent as long, but it said it beats only every 10 s: kept until it missed three.
    let slow = unstuck::WorkerRegistration::for_this_process("1", vec!["q".into()])
        .heartbeat_interval(std::time::Duration::from_secs(10));
    ledger.register_worker(&slow).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let fresh = unstuck::WorkerRegistration::for_this_process("1", vec!["q".into()]);
    ledger.register_worker(&fresh).await.unwrap();
    let removed = ledger
        .prune_workers(std::time::Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let left: Vec<String> = ledger
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    let mut kept = vec![fresh.worker_id.clone(), slow.worker_id.clone()];
    kept.sort();
    assert_eq!(left, kept);
    assert!(ledger.worker(&old.worker_id).await.unwrap().is_none());
}
