//! Loop detection on a 3-master Redis Cluster, over queues in every partition:
//! `lua/heartbeat.lua` with a fingerprint, the round's `looping` verdict and its retry,
//! and the claim that starts the next attempt's count afresh each touch one hash tag (a
//! CROSSSLOT reply would fail them).

use crate::support;
use crate::watchdog_common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use unstuck::*;
use watchdog_common::*;

async fn loop_in(ledger: &Ledger, queue: &str) -> AttemptToken {
    let opts = EnqueueOptions::new()
        .id("l")
        .max_repeats(2)
        .max_attempts(2)
        .heartbeat_timeout(Duration::from_secs(60))
        .stuck_threshold(Duration::ZERO)
        .backoff_base(Duration::ZERO);
    ledger.enqueue(queue, &json!({}), opts).await.unwrap();
    let claim = ledger.claim(queue, "w").await.unwrap().unwrap();
    for _ in 0..2 {
        let beat = Heartbeat::new()
            .fingerprint("same call")
            .checkpoint(json!({"at": queue}));
        beat_ok(ledger, &claim.token, beat).await;
    }
    claim.token
}

async fn beat_ok(ledger: &Ledger, token: &AttemptToken, beat: Heartbeat) {
    let reply = ledger.heartbeat(token, beat).await.unwrap();
    assert!(!reply.should_stop(), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn looping_is_judged_and_retried_on_a_cluster_in_every_partition() {
    let ledger = support::cluster_ledger("cluster_loop").await;
    let names: Vec<String> = (0..40).map(|i| format!("q-{i:02}")).collect();
    let partitions: BTreeSet<u16> = names.iter().map(|q| ledger.partition_of(q)).collect();
    assert_eq!(partitions.len(), usize::from(ledger.config().partitions));
    futures_util::future::join_all(names.iter().map(|q| loop_in(&ledger, q))).await;

    // One round per partition: stuck looping and, with a zero threshold, retried at once.
    let wd = sole_replica(&ledger, config("r1")).await;
    let mut retried = 0;
    for p in &partitions {
        let report = wd.round(*p).await.expect("a round on a cluster");
        retried += report.retried;
    }
    assert_eq!(retried, 40);
    for q in &names {
        let e = ledger.get(q, "l").await.unwrap();
        assert_eq!(e.state, State::Queued, "{q}");
        assert!(
            e.last_error
                .as_deref()
                .is_some_and(|m| m.contains("same fingerprint 2 times")),
            "{q}: {:?}",
            e.last_error
        );
        let next = ledger.claim(q, "w2").await.unwrap().unwrap();
        assert_eq!(next.checkpoint, Some(json!({"at": q})));
        beat_ok(
            &ledger,
            &next.token,
            Heartbeat::new().fingerprint("same call"),
        )
        .await;
        let f = ledger.get(q, "l").await.unwrap().fingerprint.unwrap();
        assert_eq!(f.repeats, 1, "{q}: a fresh count");
    }
    unstuck::testkit::invariants::assert_ok(
        &ledger,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
}
