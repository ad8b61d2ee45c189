//! What operators read: a queue's overview, one execution's transitions, and the watchdog's
//! state (leases, replicas, holds and totals), all read from Redis by anyone.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::watchdog::{self, Watchdog};
use unstuck::*;
use watchdog_common::*;

#[tokio::test]
async fn a_queue_overview_counts_what_waits_and_what_runs() {
    let l = support::ledger("insp_overview").await;
    let settings = QueueSettings {
        capacity: Some(3),
        ..QueueSettings::default()
    };
    l.set_queue("q", &settings).await.unwrap();
    let empty = l.queue_overview("q").await.unwrap();
    assert_eq!((empty.depth, empty.available, empty.active), (0, 0, 0));
    assert_eq!((empty.capacity, empty.oldest_queued_at), (3, None));

    for id in ["a", "b", "c"] {
        l.enqueue("q", &json!({}), EnqueueOptions::new().id(id))
            .await
            .unwrap();
    }
    let later = EnqueueOptions::new()
        .id("later")
        .delay(Duration::from_secs(60));
    l.enqueue("q", &json!({}), later).await.unwrap();
    l.claim("q", "w").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = l.queue_overview("q").await.unwrap();
    assert_eq!((o.depth, o.available, o.active), (3, 2, 1), "{o:?}");
    assert_eq!(o.settings(), settings);
    assert_eq!(o.partition, l.partition_of("q"));
    assert!(
        o.oldest_queued_age.unwrap() >= Duration::from_millis(50),
        "{o:?}"
    );
    let all = l.queue_overviews().await.unwrap();
    assert_eq!(
        all.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        ["q"]
    );
}

#[tokio::test]
async fn an_executions_events_are_its_own_oldest_first() {
    let l = support::ledger("insp_events").await;
    start(&l, "q", "mine", EnqueueOptions::new()).await;
    start(&l, "q", "other", EnqueueOptions::new()).await;
    let claim_other = l.get("q", "other").await.unwrap();
    assert_eq!(claim_other.state, State::Running);
    let events = l.execution_events("q", "mine").await.unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["enqueued", "claimed", "started"]);
    assert!(events.iter().all(|e| e.execution_id == "mine"));
    assert!(matches!(
        l.execution_events("q", "nobody").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_watchdog_status_shows_leases_replicas_holds_and_totals() {
    let l = support::ledger("insp_status").await;
    let before = watchdog::status(&l).await.unwrap();
    assert_eq!(before.partitions.len(), 16);
    assert_eq!(before.unwatched().len(), 16, "no replica yet");
    assert_eq!(before.totals, watchdog::WatchdogTotals::default());

    let wd: Watchdog = sole_replica(&l, config("wd-status")).await;
    let q = "st";
    let p = l.partition_of(q);
    let stale = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::ZERO)
        .max_attempts(1);
    start(&l, q, "x", stale).await;
    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!((report.stuck, report.dead), (1, 1), "{report:?}");

    let s = watchdog::status(&l).await.unwrap();
    assert!(s.unwatched().is_empty(), "{:?}", s.unwatched());
    let mine = &s.partitions[usize::from(p)];
    assert_eq!(mine.owner.as_deref(), Some("wd-status"));
    assert_eq!(
        mine.epoch.map(|e| e.to_string()),
        wd.held_partitions().get(&p).cloned()
    );
    assert!(mine.lease_expires_at.unwrap() > s.at);
    assert!(mine.last_round_at.is_some());
    assert_eq!(
        s.replicas
            .iter()
            .map(|r| r.replica_id.as_str())
            .collect::<Vec<_>>(),
        ["wd-status"]
    );
    assert_eq!((s.totals.stuck, s.totals.dead), (1, 1), "{:?}", s.totals);
    assert!(s.holding().is_empty() && s.namespace_hold.is_none());

    wd.release_all().await.unwrap();
    let after = watchdog::status(&l).await.unwrap();
    assert_eq!(after.unwatched().len(), 16);
    assert_eq!(after.totals, s.totals, "totals outlive the replica");
}
