//! Rounds over damaged data: an index entry whose execution hash is gone, and a hash with a
//! field that does not parse. Neither may fail the round or wedge the others.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use redis::AsyncCommands;
use unstuck::testkit::{Keyspace, Timer};
use unstuck::*;
use watchdog_common::*;

fn stale_soon() -> EnqueueOptions {
    EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_secs(60))
}

#[tokio::test]
async fn an_index_entry_without_its_hash_is_removed() {
    let l = support::ledger("wd_no_hash").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "nh";
    let p = l.partition_of(q);
    let keys = keyspace(&l);
    start(&l, q, "gone", stale_soon()).await;
    start(&l, q, "kept", stale_soon()).await;
    let mut raw = raw(&l).await;
    let deleted: u32 = raw.del(keys.execution(q, "gone")).await.unwrap();
    assert_eq!(deleted, 1);

    pass(150).await;
    let report = wd.round(p).await.expect("the round does not fail");
    assert!(report.fixed >= 1, "{report:?}");
    assert_eq!(report.stuck, 1, "the other execution is judged: {report:?}");
    assert_eq!(state(&l, q, "kept").await, State::Stuck);
    let score: Option<f64> = raw
        .zscore(keys.timer(p, Timer::Heartbeat), Keyspace::member(q, "gone"))
        .await
        .unwrap();
    assert_eq!(score, None, "stale entry removed");

    let report = wd.round(p).await.unwrap();
    assert_eq!(report.fixed, 0, "nothing left to fix: {report:?}");
}

#[tokio::test]
async fn a_damaged_hash_does_not_abort_the_round_for_the_others() {
    let l = support::ledger("wd_damaged").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "dm";
    let p = l.partition_of(q);
    let keys = keyspace(&l);
    start(&l, q, "before", stale_soon()).await;
    start(&l, q, "damaged", stale_soon()).await;
    start(&l, q, "after", stale_soon()).await;
    let mut raw = raw(&l).await;
    let _: () = raw
        .hset(keys.execution(q, "damaged"), "ht", "abc")
        .await
        .unwrap();

    pass(150).await;
    let report = wd.round(p).await.expect("the round does not fail");
    assert_eq!(report.stuck, 2, "{report:?}");
    assert!(report.fixed >= 1, "{report:?}");
    assert_eq!(state(&l, q, "before").await, State::Stuck);
    assert_eq!(state(&l, q, "after").await, State::Stuck);

    let score: Option<f64> = raw
        .zscore(
            keys.timer(p, Timer::Heartbeat),
            Keyspace::member(q, "damaged"),
        )
        .await
        .unwrap();
    assert_eq!(score, None, "damaged entry dropped from the timer");
    let last = events_of(&l, q, "damaged").await.pop().unwrap();
    assert_eq!((last.reason.as_str(), last.to), ("unjudgeable", None));
    assert!(last.detail.contains("damaged"), "{}", last.detail);

    // Later rounds are not wedged by it.
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted() && report.fixed == 0, "{report:?}");
}

// One unreadable execution hash must not fail the partition's reconciliation: it is
// skipped (the timer rules drop it with an `unjudgeable` event) and the others are judged.
#[tokio::test]
async fn a_damaged_hash_does_not_abort_reconciliation_for_the_others() {
    let l = support::ledger("wd_damaged_reconcile").await;
    let config = unstuck::watchdog::WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let q = "dr";
    let p = l.partition_of(q);
    let reg = WorkerRegistration::for_this_process("v1", vec![q.to_owned()]);
    l.register_worker(&reg).await.unwrap();
    for id in ["damaged", "intact"] {
        let opts = EnqueueOptions::new()
            .id(id)
            .heartbeat_timeout(Duration::from_secs(60));
        l.enqueue(q, &serde_json::json!({}), opts).await.unwrap();
        let claim = l.claim(q, &reg.worker_id).await.unwrap().unwrap();
        beat(&l, &claim.token, Heartbeat::new()).await;
    }
    let mut raw = raw(&l).await;
    let _: () = raw
        .hset(keyspace(&l).execution(q, "damaged"), "sg", "abc")
        .await
        .unwrap();

    pass(250).await; // the worker is gone
    let report = wd
        .reconcile(p)
        .await
        .expect("reconciliation does not fail")
        .expect("registry readable");
    assert_eq!(report.orphaned, 1, "{report:?}");
    assert_eq!(state(&l, q, "intact").await, State::Queued);
}
