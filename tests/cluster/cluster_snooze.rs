//! `lua/snooze.lua` and `lua/fail.lua`'s `retry_after` on a 3-master Redis Cluster, over
//! queues in every partition: each call touches one slot (a CROSSSLOT reply would fail it).

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use unstuck::*;

async fn snooze_in(ledger: &Ledger, queue: &str) {
    let opts = EnqueueOptions::new().id("s").max_attempts(2).max_snoozes(1);
    ledger.enqueue(queue, &json!({}), opts).await.unwrap();
    let claim = ledger.claim(queue, "w").await.unwrap().unwrap();
    let after = Duration::from_millis(20);
    let outcome = ledger
        .snooze(&claim.token, Snooze::after(after, "429"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, SnoozeOutcome::Snoozed { snoozes: 1, .. }),
        "{outcome:?}"
    );
    let e = ledger.get(queue, "s").await.unwrap();
    assert_eq!((e.state, e.snoozes), (State::Queued, 1));
    assert!(e.available_at.is_some());

    let claim = loop {
        if let Some(claim) = ledger.claim(queue, "w").await.unwrap() {
            break claim;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Over max_snoozes: the retryable failure of lua/_fail.lua.
    let outcome = ledger
        .snooze(&claim.token, Snooze::after(after, "429"))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            SnoozeOutcome::LimitReached {
                retry_at: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );

    ledger
        .enqueue(queue, &json!({}), EnqueueOptions::new().id("f"))
        .await
        .unwrap();
    let claim = loop {
        let claim = ledger.claim(queue, "w").await.unwrap().unwrap();
        if claim.id() == "f" {
            break claim;
        }
    };
    let options = FailOptions::retryable().retry_after(Duration::from_secs(60));
    let outcome = ledger
        .fail_with(&claim.token, "429", options)
        .await
        .unwrap();
    assert!(
        matches!(outcome, FailOutcome::RetryScheduled { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snooze_and_retry_after_work_on_a_cluster_in_every_partition() {
    let ledger = support::cluster_ledger("cluster_snooze").await;
    let names: Vec<String> = (0..40).map(|i| format!("q-{i:02}")).collect();
    let partitions: BTreeSet<u16> = names.iter().map(|q| ledger.partition_of(q)).collect();
    assert_eq!(partitions.len(), usize::from(ledger.config().partitions));
    futures_util::future::join_all(names.iter().map(|q| snooze_in(&ledger, q))).await;
    unstuck::testkit::invariants::assert_ok(
        &ledger,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
}
