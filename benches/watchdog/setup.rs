//! Bringing executions to the running state through the ledger API, many calls at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{EnqueueOptions, Heartbeat, Ledger, LedgerConfig, MAX_ENQUEUE_BATCH};

use crate::fleet_load::Batch;

/// Futures kept in flight on one multiplexed connection while setting up.
const CONCURRENCY: usize = 2000;
/// Queues per partition: work spread over 16 × 8 queues.
const QUEUES_PER_PARTITION: usize = 8;
/// Retries wait this long, so a retried execution is never claimed again by a later setup.
pub(crate) const NO_RETRY_SOON: Duration = Duration::from_secs(3600);

pub(crate) async fn connect(url: &str, label: &str, events_max_len: usize) -> Ledger {
    let mut config = LedgerConfig::new(url);
    config.namespace = format!(
        "{label}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    config.default_capacity = 10_000_000;
    config.events_max_len = events_max_len;
    Ledger::connect(config).await.expect("ledger connects")
}

/// A replica that never pauses for a systemic hold (this bench measures the rules, not
/// the hold) and whose leases outlive any setup in between.
pub(crate) fn replica(ledger: &Ledger, batch: usize, lease_ttl: Duration) -> Watchdog {
    let config = WatchdogConfig {
        batch,
        lease_ttl,
        systemic_share: 1.0,
        systemic_absence: Some(Duration::from_secs(3600)),
        ..WatchdogConfig::default()
    };
    Watchdog::new(ledger.clone(), config).expect("watchdog config")
}

/// Queue names, `QUEUES_PER_PARTITION` in each of the 16 partitions, ordered so that
/// consecutive queues fall in different partitions.
pub(crate) fn queues(ledger: &Ledger) -> Vec<String> {
    let mut by_partition: Vec<Vec<String>> = vec![Vec::new(); 16];
    let mut i = 0;
    while by_partition.iter().any(|q| q.len() < QUEUES_PER_PARTITION) {
        let name = format!("q{i}");
        let bucket = &mut by_partition[ledger.partition_of(&name) as usize];
        if bucket.len() < QUEUES_PER_PARTITION {
            bucket.push(name);
        }
        i += 1;
    }
    (0..QUEUES_PER_PARTITION)
        .flat_map(|j| by_partition.iter().map(move |q| q[j].clone()))
        .collect()
}

/// `count` executions over the queues, starting at queue `offset`, as even as it goes.
pub(crate) fn spread(queues: &[String], count: usize, offset: usize) -> Vec<(String, usize)> {
    let n = queues.len();
    (0..n.min(count))
        .map(|j| {
            let q = (offset + j) % n;
            (queues[q].clone(), count / n + usize::from(j < count % n))
        })
        .collect()
}

/// Enqueues, claims and heartbeats executions through the API, many calls in flight at
/// once (the multiplexed connection pipelines them). Ids are `<tag><first + i>`.
pub(crate) async fn make_running(
    ledger: &Ledger,
    plan: &[(String, usize)],
    opts: &EnqueueOptions,
    tag: &str,
    first: usize,
) {
    // Every future owns what it uses, so the whole setup can run in a spawned task.
    let payload = serde_json::json!({});
    let jobs: Vec<(String, String)> = plan
        .iter()
        .flat_map(|(q, count)| (first..first + count).map(move |i| (q.clone(), i)))
        .map(|(q, i)| (q, format!("{tag}{i}")))
        .collect();
    stream::iter(jobs)
        .map(|(q, id)| {
            let (ledger, payload, opts) = (ledger.clone(), payload.clone(), opts.clone().id(id));
            async move { ledger.enqueue(&q, &payload, opts).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|e| async move {
            assert!(e.created, "fresh id");
            Ok(())
        })
        .await
        .expect("enqueue");
    let claims: Vec<(String, usize)> = plan
        .iter()
        .flat_map(|(q, count)| {
            (0..count.div_ceil(1000)).map(move |c| (q.clone(), (count - c * 1000).min(1000)))
        })
        .collect();
    let tokens: Vec<_> = stream::iter(claims)
        .map(|(q, max)| {
            let ledger = ledger.clone();
            async move {
                let batch = ledger.claim_many(&q, "bench-worker", max).await?;
                assert_eq!(batch.claims.len(), max, "every enqueued one is claimable");
                Ok::<_, unstuck::Error>(batch.claims)
            }
        })
        .buffer_unordered(64)
        .try_concat()
        .await
        .expect("claim");
    stream::iter(tokens)
        .map(|c| {
            let ledger = ledger.clone();
            async move { ledger.heartbeat(&c.token, Heartbeat::new()).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|reply| async move {
            assert!(!reply.should_stop(), "{reply:?}");
            Ok(())
        })
        .await
        .expect("heartbeat");
}

pub(crate) async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Enqueues (`enqueue_many`, 1,000 per call), claims (`claim_many`, `batch` per call) and
/// beats once (`heartbeat_many`, right after each claim) `count` executions spread over the
/// queues; returns the claimed attempts in their claim batches, each from one queue, so one
/// heartbeat script call each. Ids are `<tag><n>`, n counting over the whole plan in plan
/// order. With `progress`, prints how far it got every 100,000.
pub(crate) async fn start_running(
    ledger: &Ledger,
    plan: &[(String, usize)],
    opts: &EnqueueOptions,
    tag: &str,
    batch: usize,
    progress: bool,
) -> Vec<Batch> {
    let began = Instant::now();
    let total: usize = plan.iter().map(|(_, n)| n).sum();
    let report = move |step: &str, done: usize, before: usize| {
        if progress && (done / 100_000 > before / 100_000 || done == total) {
            println!("      {step} {done}/{total} ({:.1?})", began.elapsed());
        }
    };
    let mut first = 0;
    let mut chunks = Vec::new();
    for (q, count) in plan {
        for c in 0..count.div_ceil(MAX_ENQUEUE_BATCH) {
            let n = (count - c * MAX_ENQUEUE_BATCH).min(MAX_ENQUEUE_BATCH);
            chunks.push((q.clone(), first, n));
            first += n;
        }
    }
    let payload = serde_json::json!({});
    let mut enqueued = 0;
    let mut pending = stream::iter(chunks)
        .map(|(q, first, n)| {
            let (ledger, payload, opts) = (ledger.clone(), payload.clone(), opts.clone());
            async move {
                let items =
                    (first..first + n).map(|i| (&payload, opts.clone().id(format!("{tag}{i}"))));
                let done = ledger.enqueue_many(&q, items).await.expect("enqueue_many");
                assert!(done.iter().all(|e| e.created), "fresh ids");
                done.len()
            }
        })
        .buffer_unordered(8);
    while let Some(n) = pending.next().await {
        report("enqueued", enqueued + n, enqueued);
        enqueued += n;
    }
    let claims: Vec<(String, usize)> = plan
        .iter()
        .flat_map(|(q, count)| {
            (0..count.div_ceil(batch)).map(move |c| (q.clone(), (count - c * batch).min(batch)))
        })
        .collect();
    let mut running = 0;
    let mut batches = Vec::with_capacity(claims.len());
    let mut pending = stream::iter(claims)
        .map(|(q, max)| {
            let ledger = ledger.clone();
            async move {
                let claimed = ledger
                    .claim_many(&q, "fleet-worker", max)
                    .await
                    .expect("claim_many");
                assert_eq!(claimed.claims.len(), max, "every enqueued one is claimable");
                let beats: Vec<_> = claimed
                    .claims
                    .into_iter()
                    .map(|c| (c.token, Heartbeat::new()))
                    .collect();
                let replies = ledger.heartbeat_many(&beats).await.expect("heartbeat_many");
                for reply in replies {
                    let reply = reply.expect("heartbeat");
                    assert!(!reply.should_stop(), "{reply:?}");
                }
                Arc::new(beats)
            }
        })
        .buffer_unordered(16);
    while let Some(b) = pending.next().await {
        report("running", running + b.len(), running);
        running += b.len();
        batches.push(b);
    }
    batches
}
