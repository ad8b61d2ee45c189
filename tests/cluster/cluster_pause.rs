//! Queue pause and resume on a Redis Cluster: the pause, resume, settings, overview and
//! claim scripts each touch one slot for queues of every partition, and a long poll of a
//! paused queue is woken by the resume (followed stream by stream on a cluster).

use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

fn must<T>(what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_resume_work_on_a_cluster_across_all_partitions() {
    let l = support::cluster_ledger("cluster_pause").await;
    let names: Vec<String> = (0..24).map(|i| format!("pq-{i:02}")).collect();
    for q in &names {
        must(
            "enqueue",
            l.enqueue(q, &json!({}), EnqueueOptions::new().id("a"))
                .await,
        );
        let paused = must("pause", l.pause_queue(q, "ops", "cluster test").await);
        assert!(paused.changed);
        let settings = QueueSettings {
            capacity: Some(2),
            ..QueueSettings::default()
        };
        must("set_queue", l.set_queue(q, &settings).await);
        let overview = must("overview", l.queue_overview(q).await);
        assert!(overview.paused && overview.capacity == 2, "{overview:?}");
        let batch = must("claim", l.claim_many(q, "w1", 1).await);
        assert!(batch.claims.is_empty() && batch.queue_paused, "{q}");
    }
    let last = names.last().unwrap().clone();
    let waiter = tokio::spawn({
        let l = l.clone();
        let q = last.clone();
        async move { l.claim_wait(&q, "w1", 1, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    for q in &names {
        assert!(must("resume", l.resume_queue(q, "ops", "done").await).changed);
    }
    let batch = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the resume wakes the long poll")
        .unwrap();
    assert_eq!(must("claim_wait", batch).claims.len(), 1);
    for q in &names[..names.len() - 1] {
        assert_eq!(
            must("claim", l.claim(q, "w1").await)
                .expect("claimable")
                .id(),
            "a"
        );
    }
}
