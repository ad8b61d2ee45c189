//! Partition leases: fair sharing between replicas, fencing of a superseded epoch, handing
//! leases back on release and on graceful shutdown, and `run()` end to end.

use crate::health_common;
use crate::support;
use crate::watchdog_common;

use std::collections::BTreeSet;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{self, Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

/// Lease owner of every partition, as Redis has it.
async fn owners(l: &Ledger) -> Vec<Option<String>> {
    let mut raw = raw(l).await;
    let keys = keyspace(l);
    let mut out = Vec::new();
    for p in 0..l.config().partitions {
        out.push(raw.hget(keys.lease(p), "owner").await.unwrap());
    }
    out
}

#[tokio::test]
async fn two_replicas_share_sixteen_partitions_fairly() {
    let l = support::ledger("wd_fair").await;
    assert_eq!(l.config().partitions, 16);
    let a = Watchdog::new(l.clone(), config("a")).unwrap();
    let b = Watchdog::new(reconnect(&l).await, config("b")).unwrap();
    assert_eq!(
        a.rebalance().await.unwrap().acquired.len(),
        16,
        "alone: all"
    );
    for _ in 0..3 {
        b.rebalance().await.unwrap();
        a.rebalance().await.unwrap();
    }
    let held_a: BTreeSet<u16> = a.held_partitions().into_keys().collect();
    let held_b: BTreeSet<u16> = b.held_partitions().into_keys().collect();
    assert!(
        held_a.len() <= 8 && held_b.len() <= 8,
        "{held_a:?} {held_b:?}"
    );
    assert!(held_a.is_disjoint(&held_b), "{held_a:?} {held_b:?}");
    assert_eq!(held_a.len() + held_b.len(), 16, "every partition watched");

    // Redis agrees with each replica's own table.
    for (p, owner) in owners(&l).await.into_iter().enumerate() {
        let expected = if held_a.contains(&(p as u16)) {
            "a"
        } else {
            "b"
        };
        assert_eq!(owner.as_deref(), Some(expected), "partition {p}");
    }
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_the_key() {
    let l = support::ledger("wd_bad_config").await;
    let short = WatchdogConfig {
        lease_ttl: Duration::from_millis(100),
        ..config("a")
    };
    match Watchdog::new(l.clone(), short) {
        Err(Error::InvalidConfig { key, .. }) => assert_eq!(key, "watchdog.lease_ttl"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let share = WatchdogConfig {
        systemic_share: 0.0,
        ..config("a")
    };
    assert!(matches!(
        Watchdog::new(l, share),
        Err(Error::InvalidConfig { key, .. }) if key == "watchdog.systemic_share"
    ));
}

#[tokio::test]
async fn a_replica_whose_lease_was_superseded_cannot_write() {
    let l = support::ledger("wd_fenced").await;
    let q = "fenced";
    let p = l.partition_of(q);
    let other = (p + 1) % l.config().partitions;
    let a = sole_replica(&l, running_config("a")).await;
    let epoch_a = a.held_partitions()[&p].clone();
    start(
        &l,
        q,
        "x",
        EnqueueOptions::new().heartbeat_timeout(Duration::from_millis(100)),
    )
    .await;

    // A stops renewing (paused); its leases lapse and it drops out of the replica index.
    pass(700).await;
    let before = l.get(q, "x").await.unwrap();
    let events_before = events(&l, p).await.len();

    // Expired but not yet taken: refused all the same.
    assert!(matches!(
        a.round(other).await,
        Err(Error::LeaseLost { partition, .. }) if partition == other
    ));

    let b = Watchdog::new(reconnect(&l).await, running_config("b")).unwrap();
    let changes = b.rebalance().await.unwrap();
    assert_eq!(changes.acquired.len(), 16, "{changes:?}");
    assert_ne!(b.held_partitions()[&p], epoch_a, "a new epoch");

    // A still believes it holds `p`; its write is refused and changes nothing.
    assert!(a.held_partitions().contains_key(&p));
    match a.round(p).await {
        Err(Error::LeaseLost { partition, replica }) => {
            assert_eq!((partition, replica.as_str()), (p, "a"));
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert!(!a.held_partitions().contains_key(&p), "forgotten");
    assert_eq!(l.get(q, "x").await.unwrap(), before, "execution untouched");
    assert_eq!(events(&l, p).await.len(), events_before, "no event written");

    // The current holder acts on the same execution.
    assert_eq!(b.round(p).await.unwrap().stuck, 1);
    assert_eq!(state(&l, q, "x").await, State::Stuck);
}

#[tokio::test]
async fn release_all_hands_the_leases_over_at_once() {
    let l = support::ledger("wd_release").await;
    let a = sole_replica(&l, config("a")).await;
    let b = Watchdog::new(reconnect(&l).await, config("b")).unwrap();
    assert!(b.rebalance().await.unwrap().acquired.is_empty(), "all held");

    let released = a.release_all().await.unwrap();
    assert_eq!(released.len(), 16);
    assert!(a.held_partitions().is_empty());

    // Leases of 60 s were handed back, and A left the index: B's share is everything.
    let changes = b.rebalance().await.unwrap();
    assert_eq!((changes.acquired.len(), changes.live_replicas), (16, 1));
    assert!(owners(&l).await.iter().all(|o| o.as_deref() == Some("b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_run_shutdown_releases_the_leases() {
    let l = support::ledger("wd_shutdown").await;
    let a = Watchdog::new(l.clone(), config("a")).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let a = a.clone();
        let shutdown = shutdown.clone();
        async move { a.run(shutdown).await }
    });
    support::wait_until(Duration::from_secs(5), "a holds all", || async {
        a.held_partitions().len() == 16
    })
    .await;

    shutdown.cancel();
    task.await.unwrap().expect("clean shutdown");
    assert!(a.held_partitions().is_empty());
    assert!(owners(&l).await.iter().all(Option::is_none));

    let b = Watchdog::new(reconnect(&l).await, config("b")).unwrap();
    assert_eq!(b.rebalance().await.unwrap().acquired.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_detects_and_retries_a_stale_execution() {
    let l = support::ledger("wd_run").await;
    let wd = Watchdog::new(reconnect(&l).await, running_config("a")).unwrap();
    let mut reports = wd.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let wd = wd.clone();
        let shutdown = shutdown.clone();
        async move { wd.run(shutdown).await }
    });
    support::wait_until(Duration::from_secs(5), "leases taken", || async {
        wd.held_partitions().len() == 16
    })
    .await;

    let q = "live";
    start(
        &l,
        q,
        "x",
        EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(150))
            .stuck_threshold(Duration::ZERO)
            .backoff_base(Duration::ZERO),
    )
    .await;
    support::wait_until(Duration::from_secs(10), "retried by run()", || async {
        state(&l, q, "x").await == State::Queued
    })
    .await;

    let report = reports.recv().await.unwrap();
    assert_eq!(report.partition, l.partition_of(q));
    assert_eq!((report.stuck, report.retried), (1, 1), "{report:?}");
    let totals = wd.totals();
    assert_eq!((totals.stuck, totals.retried, totals.dead), (1, 1, 0));
    let e = l.get(q, "x").await.unwrap();
    assert_eq!(e.attempt, 1);
    assert!(e.last_error.unwrap().contains("heartbeat_timeout 150ms"));

    shutdown.cancel();
    task.await.unwrap().unwrap();
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn status_judges_health_with_every_reason() {
    for case in health_common::CASES {
        let l = support::ledger(&format!("health_{case}")).await;
        let _replica = health_common::set_up(&l, case).await;
        let status = watchdog::status(&l).await.unwrap();
        let health = &status.health;
        let codes: Vec<&str> = health.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, health_common::expected(case), "{case}: {health:?}");
        assert_eq!(health.is_healthy(), case == "healthy", "{case}");
        assert_eq!(&watchdog::health(&l).await.unwrap(), health, "{case}");
        let message = |code: &str| {
            health
                .reasons
                .iter()
                .find(|r| r.code.as_str() == code)
                .map(|r| r.message.clone())
                .unwrap()
        };
        match case {
            "healthy" => assert_eq!(
                health.summary,
                "healthy: 1 replica(s) watch all 16 partitions"
            ),
            "one_unwatched" => {
                assert_eq!(
                    health.summary,
                    "degraded: 1 of 16 partition(s) unwatched: 5"
                )
            }
            "partition_hold" => assert_eq!(
                message("partition_hold"),
                "systemic hold in partition(s) 3 (most running work went stale at once)"
            ),
            "namespace_hold" => {
                let m = message("namespace_hold");
                assert!(
                    m.starts_with("systemic hold over the namespace until "),
                    "{m}"
                );
                assert!(m.ends_with(": half the namespace went stale"), "{m}");
            }
            "data_lost" => {
                assert_eq!(status.data_lost, ["health-r1"]);
                assert!(message("data_lost").contains("health-r1"));
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn health_says_redis_unreachable_when_it_cannot_be_read() {
    let mut redis = unstuck::testkit::RedisProcess::start(Default::default()).unwrap();
    let mut config = LedgerConfig::new(redis.url());
    config.namespace = support::namespace("health_unreachable");
    let l = Ledger::connect(config).await.unwrap();
    assert!(watchdog::status(&l).await.is_ok());
    redis.kill_hard();
    let health = watchdog::health(&l).await.unwrap();
    assert_eq!(health.verdict, watchdog::Verdict::Degraded);
    let codes: Vec<&str> = health.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["redis_unreachable"]);
    assert!(
        health.summary.starts_with("degraded: Redis unreachable ("),
        "{}",
        health.summary
    );
}
