//! Awaiting on a real 3-master Redis Cluster: the await, resume (both ways), cancel and
//! the round's wait rule each touch one hash tag, over queues spread across the nodes.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::*;
use watchdog_common::*;

async fn awaited(l: &Ledger, token: &AttemptToken, ms: u64) -> Awaited {
    let wait = AwaitResume {
        reason: "approval".into(),
        wait_deadline: Duration::from_millis(ms),
        checkpoint: Some(json!({"at": "plan"})),
    };
    match l
        .await_resume(token, wait)
        .await
        .expect("await on a cluster")
    {
        AwaitOutcome::Awaiting(a) => a,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn await_resume_and_wait_expiry_run_on_a_cluster() {
    let l = support::cluster_ledger("cluster_awaiting").await;
    let wd = sole_replica(&l, config("r1")).await;
    let queues: Vec<String> = (0..8).map(|i| format!("aq-{i}")).collect();
    for q in &queues {
        // Resumed by id, resumed by token, cancelled, expired.
        let mut tokens = Vec::new();
        for id in ["by-id", "by-token", "cancelled", "expired"] {
            let token = start(&l, q, id, EnqueueOptions::new()).await;
            let ms = if id == "expired" { 100 } else { 60_000 };
            tokens.push(awaited(&l, &token, ms).await.resume_token);
        }
        l.resume(q, "by-id", Some(&json!({"ok": true})))
            .await
            .unwrap();
        l.resume_by_token(&tokens[1], None).await.unwrap();
        l.cancel(q, "cancelled", "no").await.unwrap();
        let claim = l.claim(q, "w2").await.unwrap().unwrap();
        assert!(claim.attempt() == 2, "{claim:?}");
    }
    let partitions: std::collections::BTreeSet<u16> =
        queues.iter().map(|q| l.partition_of(q)).collect();
    support::wait_until(Duration::from_secs(10), "every wait expires", || async {
        for p in &partitions {
            wd.round(*p).await.expect("a round on a cluster");
        }
        let mut all = true;
        for q in &queues {
            all &= state(&l, q, "expired").await == State::Failed;
        }
        all
    })
    .await;
    let refs: Vec<&str> = queues.iter().map(String::as_str).collect();
    support::invariants::assert_ok(&l, &refs).await;
}
