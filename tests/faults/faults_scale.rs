//! The fault suite at scale: 100,000 running executions of one partition go stale at
//! once. The watchdog holds (most of a partition going stale together is systemic), then
//! judges every one after the grace, in rounds of `batch` entries: no script runs long.

use crate::faults_common;

use std::time::{Duration, Instant};

use faults_common::*;
use futures_util::StreamExt;
use serde_json::json;
use unstuck::*;

const N: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_stale_at_once_in_one_partition() {
    let redis = redis(&[]);
    let ledger = ledger(&redis, "fault_100k").await;
    let queue = "alpha";
    let wide = QueueSettings {
        capacity: Some(N as u32),
        ..QueueSettings::default()
    };
    ledger.set_queue(queue, &wide).await.unwrap();
    let mut ids = Vec::with_capacity(N);
    let payload = json!({});
    for chunk in 0..N / 1000 {
        let batch: Vec<(&serde_json::Value, EnqueueOptions)> = (0..1000)
            .map(|i| {
                let id = format!("e{}", chunk * 1000 + i);
                ids.push((queue.to_owned(), id.clone()));
                (&payload, EnqueueOptions::new().id(id).max_attempts(1))
            })
            .collect();
        ledger.enqueue_many(queue, batch).await.unwrap();
    }
    let mut tokens = Vec::with_capacity(N);
    while tokens.len() < N {
        let batch = ledger.claim_many(queue, "bulk-worker", 1000).await.unwrap();
        tokens.extend(batch.claims.into_iter().map(|c| c.token));
    }
    // One beat each, then silence: all go stale within the same heartbeat timeout.
    futures_util::stream::iter(&tokens)
        .for_each_concurrent(256, |t| {
            let l = ledger.clone();
            async move {
                l.heartbeat(t, Heartbeat::new()).await.unwrap();
            }
        })
        .await;
    reset_slowlog(&redis).await; // the set-up's batches are not the watchdog's scripts
    let started = Instant::now();
    let replicas = Replicas::start(&ledger, &["bulk-a", "bulk-b"]);
    let handled = async {
        loop {
            let o = ledger.queue_overview(queue).await.unwrap();
            if o.active == 0 && o.depth == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), handled)
        .await
        .expect("every stale execution is handled");
    let took = started.elapsed();
    replicas.stop().await;
    let longest = longest_script(&redis).await;
    let mut a = audit(&ledger, &redis, &ids).await;
    a.longest_script_us = longest;
    let dead = ledger
        .queue_overview(queue)
        .await
        .unwrap()
        .finished
        .iter()
        .find(|(s, _)| *s == State::Dead)
        .map_or(0, |(_, n)| *n);
    report(
        "100,000 running executions of one partition go stale at once",
        "2 replicas, batch 200",
        &a,
        &format!(
            "{} systemic hold(s), then all {dead} judged (attempts used up: dead) {:.1} s after the replicas started",
            a.holds,
            took.as_secs_f64()
        ),
    );
    assert_eq!(dead as usize, N);
    assert_clean(&a);
    assert!(
        a.holds >= 1,
        "a whole partition going stale at once is systemic"
    );
}
