//! The situations the health verdict must name, set up in a namespace of their own and
//! shared by the library, HTTP and CLI tests, so every reader of the verdict is checked
//! against the same cases. Each case is what Redis would hold: a lease that lapsed, a hold
//! a round wrote, a namespace whose keys are all gone under a replica.
//!
//! Each binary that uses it does `mod support; mod health_common;`.
#![allow(dead_code)]

use std::time::Duration;

use redis::AsyncCommands;
use unstuck::Ledger;
use unstuck::watchdog::{Watchdog, WatchdogConfig};

/// Every case set up in a namespace (Redis unreachable needs a Redis of its own).
pub const CASES: [&str; 6] = [
    "healthy",
    "no_replica",
    "one_unwatched",
    "namespace_hold",
    "partition_hold",
    "data_lost",
];

/// The reason codes the verdict must give for `case`, in order.
pub fn expected(case: &str) -> &'static [&'static str] {
    match case {
        "healthy" => &[],
        "no_replica" => &["no_replica", "partitions_unwatched"],
        "one_unwatched" => &["partitions_unwatched"],
        "namespace_hold" => &["namespace_hold"],
        "partition_hold" => &["partition_hold"],
        "data_lost" => &["data_lost", "no_replica", "partitions_unwatched"],
        "redis_unreachable" => &["redis_unreachable"],
        other => panic!("no case {other}"),
    }
}

/// A replica whose leases outlast any test (it is driven by `rebalance`, not `run`).
pub fn replica(ledger: &Ledger) -> Watchdog {
    let config = WatchdogConfig {
        replica_id: Some("health-r1".into()),
        lease_ttl: Duration::from_secs(120),
        ..WatchdogConfig::default()
    };
    Watchdog::new(ledger.clone(), config).expect("a valid watchdog config")
}

async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

/// Sets `case` up in `ledger`'s namespace. Returns the replica, when the case has one.
pub async fn set_up(ledger: &Ledger, case: &str) -> Option<Watchdog> {
    let keys = unstuck::testkit::keys(ledger);
    let client = redis::Client::open(super::support::redis().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    if case == "no_replica" {
        return None;
    }
    let r = replica(ledger);
    let changes = r.rebalance().await.expect("the replica takes its leases");
    assert_eq!(
        changes.acquired.len(),
        16,
        "one replica holds every partition"
    );
    let until = redis_now_ms(&mut conn).await + 120_000;
    match case {
        "healthy" => {}
        // Partition 5's lease lapsed and nothing took it back.
        "one_unwatched" => {
            let _: () = conn.del(keys.lease(5)).await.unwrap();
        }
        "partition_hold" => {
            let _: () = conn
                .hset_multiple(
                    keys.watch_state(3),
                    &[
                        ("hold_until", until.to_string()),
                        ("hold_start", (until - 120_000).to_string()),
                        ("hold_reason", "most running work went stale at once".into()),
                    ],
                )
                .await
                .unwrap();
        }
        "namespace_hold" => {
            let _: () = conn
                .hset_multiple(
                    keys.systemic(),
                    &[
                        ("hold_until", until.to_string()),
                        ("hold_start", (until - 120_000).to_string()),
                        ("hold_reason", "half the namespace went stale".into()),
                    ],
                )
                .await
                .unwrap();
        }
        // Redis lost the namespace (restarted empty, flushed): every key of it is gone,
        // and the replica's next beat finds its marker missing.
        "data_lost" => {
            let pattern = format!("{{{}:*", ledger.config().namespace);
            let doomed: Vec<String> = conn.keys(&pattern).await.unwrap();
            assert!(!doomed.is_empty());
            let _: () = conn.del(doomed).await.unwrap();
            let lost = r.rebalance().await;
            assert!(
                matches!(lost, Err(unstuck::Error::DataLost { .. })),
                "{lost:?}"
            );
        }
        other => panic!("no case {other}"),
    }
    Some(r)
}
