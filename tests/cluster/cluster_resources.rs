//! Resource leases on a 3-master Redis Cluster: the resources' hash tag and the queues'
//! partitions hash to other slots, so each operation is two single-slot scripts. Queues in
//! every partition acquire, release, free on completion, and the watchdog's sweep frees
//! the units of attempts it retried; no call may fail with CROSSSLOT.

use crate::support;
use crate::watchdog_common::{config, sole_replica};

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use unstuck::*;

async fn keyslot(key: &str) -> i64 {
    let node = &support::cluster().nodes()[0];
    let client = redis::Client::open(node.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn claim(ledger: &Ledger, queue: &str, id: &str, opts: EnqueueOptions) -> AttemptToken {
    ledger
        .enqueue(queue, &json!({}), opts.id(id))
        .await
        .unwrap();
    loop {
        if let Some(c) = ledger.claim(queue, "w").await.unwrap()
            && c.id() == id
        {
            ledger.heartbeat(&c.token, Heartbeat::new()).await.unwrap();
            return c.token;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_leases_work_on_a_cluster_across_slots() {
    let ledger = support::cluster_ledger("cluster_resources").await;
    let ns = ledger.config().namespace.clone();
    let names: Vec<String> = (0..40).map(|i| format!("q-{i:02}")).collect();
    let partitions: BTreeSet<u16> = names.iter().map(|q| ledger.partition_of(q)).collect();
    assert_eq!(partitions.len(), usize::from(ledger.config().partitions));
    let resource_slot = keyslot(&format!("{{{ns}:resources}}:r:x")).await;
    let mut other_slots = 0;
    for p in &partitions {
        if keyslot(&format!("{{{ns}:{p}}}:x")).await != resource_slot {
            other_slots += 1;
        }
    }
    assert!(
        other_slots >= partitions.len() - 1,
        "resources share no slot with most partitions"
    );

    // Every queue takes a unit of a shared resource and one of its own.
    let lost_opts = || {
        EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(100))
            .stuck_threshold(Duration::from_millis(1))
            .max_attempts(3)
    };
    let mut tokens = Vec::new();
    for q in &names {
        let done = claim(&ledger, q, "done", EnqueueOptions::new()).await;
        let lost = claim(&ledger, q, "lost", lost_opts()).await;
        for t in [&done, &lost] {
            let out = ledger
                .acquire(t, Acquire::new("shared").capacity(100))
                .await
                .unwrap();
            assert!(matches!(out, AcquireOutcome::Acquired { .. }), "{out:?}");
        }
        ledger
            .acquire(&lost, Acquire::new(format!("own-{q}")))
            .await
            .unwrap();
        tokens.push((q.clone(), done, lost));
    }
    assert_eq!(ledger.resource("shared").await.unwrap().unwrap().held, 80);
    assert_eq!(ledger.resources().await.unwrap().len(), 41);

    // Released by the completion; the lost ones by the sweep of their partition's round.
    for (_, done, _) in &tokens {
        ledger.complete(done, None).await.unwrap();
    }
    assert_eq!(ledger.resource("shared").await.unwrap().unwrap().held, 40);
    let wd = sole_replica(&ledger, config("r1")).await;
    support::wait_until(
        Duration::from_secs(20),
        "every lost unit is swept",
        || async {
            for p in &partitions {
                wd.round(*p).await.unwrap();
            }
            ledger.resources().await.unwrap().is_empty()
        },
    )
    .await;
    for (q, _, lost) in &tokens {
        assert!(!ledger.release(lost, "shared").await.unwrap(), "{q}");
        let freed = ledger
            .execution_events(q, "lost")
            .await
            .unwrap()
            .iter()
            .filter(|e| e.reason == "resource_freed")
            .count();
        assert_eq!(freed, 2, "{q}");
    }
    // Force-release works across slots too.
    let (q, _, _) = &tokens[0];
    let retry = loop {
        if let Some(c) = ledger.claim(q, "w2").await.unwrap() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    ledger
        .acquire(&retry.token, Acquire::new("shared"))
        .await
        .unwrap();
    assert_eq!(
        ledger
            .force_release("shared", q, "lost", "cluster test")
            .await
            .unwrap(),
        Some(2)
    );
}
