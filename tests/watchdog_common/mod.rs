//! Helpers shared by the watchdog test binaries: replica configs with short timings,
//! executions driven into a given state, raw Redis access for fault injection, and the
//! partition event streams read back.
//!
//! Each `tests/watchdog_*.rs` does `mod support; mod watchdog_common;`. Not every binary
//! uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use unstuck::testkit::Keyspace;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

/// A replica config for rounds driven by hand: a lease long enough that it never lapses
/// between two calls of a test, and the systemic share rule off (share 1.0 can never be
/// exceeded) so that a handful of stale executions is judged, not held back.
pub fn config(replica: &str) -> WatchdogConfig {
    WatchdogConfig {
        replica_id: Some(replica.into()),
        lease_ttl: Duration::from_secs(60),
        max_poll_interval: Duration::from_millis(20),
        systemic_share: 1.0,
        ..WatchdogConfig::default()
    }
}

/// A config for replicas that run on their own (`run()`): short leases and polls.
pub fn running_config(replica: &str) -> WatchdogConfig {
    WatchdogConfig {
        lease_ttl: Duration::from_millis(300),
        ..config(replica)
    }
}

/// A replica that has leased every partition (alone in its namespace, all is its share).
pub async fn sole_replica(ledger: &Ledger, config: WatchdogConfig) -> Watchdog {
    let wd = Watchdog::new(ledger.clone(), config).expect("valid watchdog config");
    let changes = wd.rebalance().await.expect("rebalance");
    assert_eq!(
        changes.acquired.len(),
        usize::from(ledger.config().partitions),
        "a sole replica leases every partition: {changes:?}"
    );
    wd
}

/// Enqueues `id` alone in `queue` and claims it as `worker`: dispatched.
pub async fn dispatch(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    opts: EnqueueOptions,
    worker: &str,
) -> Claim {
    ledger
        .enqueue(queue, &json!({ "id": id }), opts.id(id))
        .await
        .expect("enqueue");
    let claim = ledger
        .claim(queue, worker)
        .await
        .expect("claim")
        .expect("an execution is available");
    assert_eq!(claim.id(), id, "claimed the execution just enqueued");
    claim
}

/// Enqueues `id`, claims it as `worker` and sends the first heartbeat: running.
pub async fn start(ledger: &Ledger, queue: &str, id: &str, opts: EnqueueOptions) -> AttemptToken {
    let claim = dispatch(ledger, queue, id, opts, "w1").await;
    beat(ledger, &claim.token, Heartbeat::new()).await;
    claim.token
}

/// A heartbeat that must be accepted as current (no cancel requested).
pub async fn beat(ledger: &Ledger, token: &AttemptToken, heartbeat: Heartbeat) {
    let reply = ledger.heartbeat(token, heartbeat).await.expect("heartbeat");
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        },
        "heartbeat of {}/{} accepted",
        token.queue(),
        token.execution_id()
    );
}

pub async fn state(ledger: &Ledger, queue: &str, id: &str) -> State {
    ledger.get(queue, id).await.expect("get").state
}

/// Every event of `partition`, oldest first.
pub async fn events(ledger: &Ledger, partition: u16) -> Vec<Event> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = ledger
            .read_events(partition, after.as_deref(), 1000)
            .await
            .expect("read events");
        let Some(last) = batch.last() else {
            return all;
        };
        after = Some(last.stream_id.clone());
        all.extend(batch);
    }
}

/// Events of one execution, oldest first.
pub async fn events_of(ledger: &Ledger, queue: &str, id: &str) -> Vec<Event> {
    events(ledger, ledger.partition_of(queue))
        .await
        .into_iter()
        .filter(|e| e.queue == queue && e.execution_id == id)
        .collect()
}

/// `(from, to, reason, attempt)` of each event, for compact assertions.
pub fn moves(events: &[Event]) -> Vec<(Option<State>, Option<State>, String, u32)> {
    events
        .iter()
        .map(|e| (e.from, e.to, e.reason.clone(), e.attempt))
        .collect()
}

/// Events written by workers and orchestrators, as opposed to watchdog verdicts.
pub const CLIENT_REASONS: [&str; 6] = [
    "enqueued",
    "claimed",
    "started",
    "completed",
    "cancel_requested",
    "revived",
];

/// Watchdog verdicts over every partition, counted per `(queue/id, attempt, from, to,
/// reason)`.
pub async fn verdict_counts(
    ledger: &Ledger,
) -> HashMap<(String, u32, Option<State>, Option<State>, String), usize> {
    let mut counts = HashMap::new();
    for p in 0..ledger.config().partitions {
        for e in events(ledger, p).await {
            if CLIENT_REASONS.contains(&e.reason.as_str()) {
                continue;
            }
            let key = (
                format!("{}/{}", e.queue, e.execution_id),
                e.attempt,
                e.from,
                e.to,
                e.reason,
            );
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}

/// A connection of its own to the test Redis, for reading and damaging raw keys.
pub async fn raw(ledger: &Ledger) -> redis::aio::MultiplexedConnection {
    redis::Client::open(ledger.config().server_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

pub fn keyspace(ledger: &Ledger) -> Keyspace {
    Keyspace::new(&ledger.config().namespace, ledger.config().partitions).expect("keyspace")
}

/// A second ledger handle on the same namespace with connections of its own, as another
/// process (a worker, another replica) would have.
pub async fn reconnect(ledger: &Ledger) -> Ledger {
    Ledger::connect(ledger.config().clone())
        .await
        .expect("second connection")
}

/// Sleeps `ms` milliseconds: only used to pass a timeout the test itself set.
pub async fn pass(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
