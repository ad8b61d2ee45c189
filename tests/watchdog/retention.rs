//! Retention: the watchdog removes finished executions past their time to live (per
//! terminal state, globally and per queue) or past their queue's cap, in fenced batches;
//! it removes the hash and its index entries and nothing else; a pinned execution stays.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

/// A ledger whose succeeded executions live `ms`, failed ones an hour.
async fn short_lived(name: &str, ms: u64) -> Ledger {
    support::ledger_with(name, |c| {
        c.retention.succeeded = Some(Duration::from_millis(ms));
        c.retention.failed = Some(Duration::from_secs(3600));
    })
    .await
}

async fn finish(l: &Ledger, q: &str, id: &str, fail: bool) {
    l.enqueue(
        q,
        &json!({"id": id}),
        EnqueueOptions::new().id(id).max_attempts(1),
    )
    .await
    .unwrap();
    let c = l.claim(q, "w1").await.unwrap().expect("claimable");
    if fail {
        l.fail(&c.token, "boom", false).await.unwrap();
    } else {
        l.complete(&c.token, None).await.unwrap();
    }
}

/// Prunes every partition until nothing more is due; the total removed.
async fn prune_all(wd: &Watchdog, l: &Ledger) -> u64 {
    let mut pruned = 0;
    for p in 0..l.config().partitions {
        loop {
            let r = wd.prune(p).await.unwrap();
            pruned += r.pruned;
            if !r.more {
                break;
            }
        }
    }
    pruned
}

fn missing(r: Result<Execution>) -> bool {
    matches!(r, Err(Error::NotFound { .. }))
}

#[tokio::test]
async fn expired_executions_go_with_their_index_entries_and_nothing_else() {
    let l = short_lived("ret_expire", 150).await;
    finish(&l, "q", "old-ok", false).await;
    finish(&l, "q", "old-failed", true).await;
    let wd = sole_replica(&l, config("ret-r1")).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // old-ok expires
    finish(&l, "q", "new-ok", false).await;
    l.enqueue("q", &json!(1), EnqueueOptions::new().id("running"))
        .await
        .unwrap();
    let running = l.claim("q", "w2").await.unwrap().unwrap();
    assert_eq!(running.id(), "running");
    l.enqueue("q", &json!(1), EnqueueOptions::new().id("waiting"))
        .await
        .unwrap();

    assert_eq!(prune_all(&wd, &l).await, 1);
    assert!(missing(l.get("q", "old-ok").await));
    for id in ["old-failed", "new-ok", "waiting", "running"] {
        assert!(l.get("q", id).await.is_ok(), "{id} kept");
    }
    let succeeded = l.list("q", State::Succeeded, None, 10).await.unwrap();
    let ids: Vec<&str> = succeeded.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["new-ok"]);
    support::invariants::assert_ok(&l, &["q"]).await;
    // Counted in the totals and told in an event.
    let status = unstuck::watchdog::status(&l).await.unwrap();
    assert_eq!(status.totals.pruned, 1);
    let p = l.partition_of("q");
    let pruned: Vec<Event> = events(&l, p)
        .await
        .into_iter()
        .filter(|e| e.reason == "pruned")
        .collect();
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert!(
        pruned[0]
            .detail
            .starts_with("removed 1 finished executions"),
        "{}",
        pruned[0].detail
    );
    assert_eq!(pruned[0].replica.as_deref(), Some("ret-r1"));
    // Nothing more to prune: a second pass removes nothing.
    assert_eq!(prune_all(&wd, &l).await, 0);
}

#[tokio::test]
async fn a_pruned_id_enqueued_again_starts_anew() {
    let l = short_lived("ret_anew", 1).await;
    finish(&l, "q", "job-7", false).await;
    let wd = sole_replica(&l, config("ret-r2")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(prune_all(&wd, &l).await, 1);
    let again = l
        .enqueue("q", &json!({"v": 2}), EnqueueOptions::new().id("job-7"))
        .await
        .unwrap();
    assert!(again.created, "{again:?}");
    let e = l.get("q", "job-7").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Queued, 0));
    assert_eq!(e.payload, json!({"v": 2}));
}

#[tokio::test]
async fn queue_settings_override_the_ledger_and_zero_keeps_for_ever() {
    let l = short_lived("ret_queue", 1).await;
    let keep = QueueSettings {
        retention: Retention {
            succeeded: Some(Duration::ZERO),
            ..Retention::default()
        },
        ..QueueSettings::default()
    };
    l.set_queue("forever", &keep).await.unwrap();
    let short_failures = QueueSettings {
        retention: Retention {
            failed: Some(Duration::from_millis(1)),
            ..Retention::default()
        },
        ..QueueSettings::default()
    };
    l.set_queue("brief", &short_failures).await.unwrap();
    assert_eq!(
        l.queue_settings("brief").await.unwrap().retention.failed,
        Some(Duration::from_millis(1))
    );
    finish(&l, "forever", "kept", false).await;
    finish(&l, "brief", "failed-1", true).await;
    finish(&l, "brief", "ok-1", false).await;
    finish(&l, "default", "failed-2", true).await;
    let wd = sole_replica(&l, config("ret-r3")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(prune_all(&wd, &l).await, 2);
    assert!(l.get("forever", "kept").await.is_ok());
    assert!(missing(l.get("brief", "failed-1").await));
    assert!(missing(l.get("brief", "ok-1").await));
    assert!(l.get("default", "failed-2").await.is_ok(), "failed: 1 h");
    support::invariants::assert_ok(&l, &["forever", "brief", "default"]).await;
}

#[tokio::test]
async fn the_cap_keeps_the_newest_finished_executions() {
    let l = support::ledger("ret_cap").await;
    let capped = QueueSettings {
        retention: Retention {
            max_finished: Some(3),
            ..Retention::default()
        },
        ..QueueSettings::default()
    };
    l.set_queue("q", &capped).await.unwrap();
    for (i, fail) in [false, true, false, true, false, false].iter().enumerate() {
        finish(&l, "q", &format!("e{i}"), *fail).await;
    }
    let wd = sole_replica(&l, config("ret-r4")).await;
    assert_eq!(prune_all(&wd, &l).await, 3);
    for i in 0..3 {
        assert!(missing(l.get("q", &format!("e{i}")).await), "e{i} pruned");
    }
    for i in 3..6 {
        assert!(l.get("q", &format!("e{i}")).await.is_ok(), "e{i} kept");
    }
    support::invariants::assert_ok(&l, &["q"]).await;
}

#[tokio::test]
async fn pinned_executions_stay_listed_and_go_once_unpinned() {
    let l = short_lived("ret_pin", 1).await;
    finish(&l, "q", "a", false).await;
    finish(&l, "q", "b", false).await;
    finish(&l, "q", "c", false).await;
    assert_eq!(l.pin("q", "a").await.unwrap(), State::Succeeded);
    assert!(l.get("q", "a").await.unwrap().pinned);
    assert!(matches!(
        l.pin("q", "nope").await,
        Err(Error::NotFound { .. })
    ));
    let wd = sole_replica(&l, config("ret-r5")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // a (at the head, pinned) is set aside and no longer blocks b and c.
    assert_eq!(prune_all(&wd, &l).await, 2);
    assert!(l.get("q", "a").await.is_ok());
    let listed = l.list("q", State::Succeeded, None, 10).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, "a");
    let found = l
        .find(
            &Filter {
                state: Some(State::Succeeded),
                ..Filter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    support::invariants::assert_ok(&l, &["q"]).await;
    // Unpinned, it is past its retention: the next pass removes it.
    l.unpin("q", "a").await.unwrap();
    assert!(!l.get("q", "a").await.unwrap().pinned);
    assert_eq!(prune_all(&wd, &l).await, 1);
    assert!(missing(l.get("q", "a").await));
    support::invariants::assert_ok(&l, &["q"]).await;
}

#[tokio::test]
async fn retry_links_are_cleaned_with_the_execution() {
    let l = support::ledger_with("ret_links", |c| {
        c.retention.failed = Some(Duration::from_millis(1));
        c.retention.succeeded = Some(Duration::from_secs(3600));
    })
    .await;
    finish(&l, "q", "orig", true).await;
    let again = l.retry("q", "orig", None, "fixed").await.unwrap();
    let c = l.claim("q", "w1").await.unwrap().unwrap();
    assert_eq!(c.id(), again.id);
    l.complete(&c.token, None).await.unwrap();
    assert_eq!(
        l.get("q", "orig").await.unwrap().retries,
        std::slice::from_ref(&again.id)
    );
    let wd = sole_replica(&l, config("ret-r6")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(prune_all(&wd, &l).await, 1);
    assert!(missing(l.get("q", "orig").await));
    let kept = l.get("q", &again.id).await.unwrap();
    assert_eq!(kept.retry_of, Some(("q".into(), "orig".into())));
    let mut raw = raw(&l).await;
    let k = keyspace(&l);
    let exists: bool = redis::cmd("EXISTS")
        .arg(k.retries("q", "orig"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!exists, "the pruned execution's retries zset is gone");
}

#[tokio::test]
async fn batches_are_bounded_and_a_lost_lease_prunes_nothing() {
    let l = short_lived("ret_batch", 1).await;
    let wide = QueueSettings {
        capacity: Some(1000),
        ..QueueSettings::default()
    };
    l.set_queue("q", &wide).await.unwrap();
    let items: Vec<(serde_json::Value, EnqueueOptions)> = (0..450)
        .map(|i| (json!(i), EnqueueOptions::new().max_attempts(1)))
        .collect();
    l.enqueue_many("q", items.iter().map(|(p, o)| (p, o.clone())))
        .await
        .unwrap();
    let claims = l.claim_many("q", "w1", 450).await.unwrap();
    for c in &claims.claims {
        l.complete(&c.token, None).await.unwrap();
    }
    let small = WatchdogConfig {
        prune_batch: 200,
        ..config("ret-r7")
    };
    let wd = sole_replica(&l, small).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let p = l.partition_of("q");
    let first = wd.prune(p).await.unwrap();
    assert_eq!((first.pruned, first.more), (200, true));
    let second = wd.prune(p).await.unwrap();
    assert_eq!((second.pruned, second.more), (200, true));
    let third = wd.prune(p).await.unwrap();
    assert_eq!((third.pruned, third.more), (50, false));

    // Another replica takes the partition: the first one's calls are refused.
    finish(&l, "q", "late", false).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut raw = raw(&l).await;
    let k = keyspace(&l);
    let _: () = redis::cmd("DEL")
        .arg(k.lease(p))
        .query_async(&mut raw)
        .await
        .unwrap();
    let thief = Watchdog::new(l.clone(), config("ret-thief")).unwrap();
    thief.rebalance().await.unwrap();
    assert!(matches!(wd.prune(p).await, Err(Error::LeaseLost { .. })));
    assert!(l.get("q", "late").await.is_ok());
}

#[tokio::test]
async fn a_running_replica_prunes_on_its_own() {
    let l = short_lived("ret_run", 50).await;
    finish(&l, "q", "x", false).await;
    let wd = Watchdog::new(
        l.clone(),
        WatchdogConfig {
            prune_interval: Duration::from_millis(50),
            ..running_config("ret-r8")
        },
    )
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let (wd, stop) = (wd.clone(), stop.clone());
        async move { wd.run(stop).await }
    });
    support::wait_until(Duration::from_secs(10), "x pruned", || async {
        missing(l.get("q", "x").await)
    })
    .await;
    assert_eq!(wd.totals().pruned, 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}
