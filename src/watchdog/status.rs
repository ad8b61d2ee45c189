//! What the watchdog replicas are doing, read from Redis by anyone: who holds each
//! partition and until when, which replicas are alive, the holds in force, and what every
//! replica has done (totals kept with the partitions, so they survive restarts).
//!
//! Cost: one pipelined read of two small hashes per partition, the replica and data-lost
//! indexes, the namespace's systemic hash and a readiness check. Nothing scans executions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::health::Health;
use super::systemic::NamespaceHold;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, ms_to_time};

/// One partition as the watchdog sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u16,
    /// The replica holding its lease, when the lease is current.
    pub owner: Option<String>,
    /// The lease's epoch (every write of the owner is fenced by it).
    pub epoch: Option<u64>,
    /// When the lease lapses unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When a round last judged it.
    pub last_round_at: Option<DateTime<Utc>>,
    /// A systemic hold in force: staleness rules resume at this instant.
    pub hold_until: Option<DateTime<Utc>>,
    /// Why the hold (or the last one) began.
    pub hold_reason: Option<String>,
}

/// A live watchdog replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ReplicaStatus {
    /// Its id (unique per start).
    pub replica_id: String,
    /// Its last presence beat.
    pub last_beat_at: DateTime<Utc>,
}

/// What every replica did, summed over partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WatchdogTotals {
    /// Deadlines enforced.
    pub timed_out: u64,
    /// Running executions judged stuck.
    pub stuck: u64,
    /// Lost attempts sent back to the queue.
    pub retried: u64,
    /// Executions whose attempts were used up.
    pub dead: u64,
    /// Cancellations forced.
    pub cancelled: u64,
    /// Executions orphaned by worker reconciliation (also counted above).
    pub orphaned: u64,
    /// Systemic holds begun.
    pub holds: u64,
    /// Finished executions removed by retention.
    #[serde(default)]
    pub pruned: u64,
    /// Awaiting executions nobody resumed by their wait deadline (failed or re-queued).
    #[serde(default)]
    pub wait_expired: u64,
}

/// The watchdog at one instant; see [`status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WatchdogStatus {
    /// Redis time of the reading.
    pub at: DateTime<Utc>,
    /// Every partition, in order.
    pub partitions: Vec<PartitionStatus>,
    /// Replicas seen alive (a beat within the last 30 s), by id.
    pub replicas: Vec<ReplicaStatus>,
    /// Replicas that found Redis lost the namespace's data (within the last 30 s): they
    /// hold nothing and refuse to act until restarted.
    #[serde(default)]
    pub data_lost: Vec<String>,
    /// A namespace-wide systemic hold in force.
    pub namespace_hold: Option<NamespaceHold>,
    /// What every replica did since the namespace was created.
    pub totals: WatchdogTotals,
    /// Workers whose remediation circuit is open: unstuck stopped acting on them and
    /// waits for an operator's reset (`unstuck workers reset W`).
    #[serde(default)]
    pub open_circuits: Vec<String>,
    /// Workers in a remediation tier (1 to 3), circuit closed.
    #[serde(default)]
    pub workers_in_tier: u64,
    /// The verdict on all of the above and on Redis's readiness.
    #[serde(default)]
    pub health: Health,
}

impl WatchdogStatus {
    /// Partitions no replica holds a current lease on: nothing watches them.
    pub fn unwatched(&self) -> Vec<u16> {
        self.partitions
            .iter()
            .filter(|p| p.owner.is_none())
            .map(|p| p.partition)
            .collect()
    }

    /// Partitions in a systemic hold now.
    pub fn holding(&self) -> Vec<u16> {
        self.partitions
            .iter()
            .filter(|p| p.hold_until.is_some())
            .map(|p| p.partition)
            .collect()
    }
}

/// Reads the watchdog's state of `ledger`'s namespace and judges its health. A replica
/// need not run here: the CLI and the HTTP API read it the same way.
///
/// # Errors
/// [`Error::Redis`]; [`Error::Protocol`] for a damaged lease or watch-state hash.
pub async fn status(ledger: &Ledger) -> Result<WatchdogStatus> {
    let k = &ledger.keys;
    let mut conn = ledger.conn.clone();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let now_ms = secs * 1000 + micros / 1000;
    // One pipeline per partition, all in flight at once: a Redis Cluster refuses one
    // pipeline across hash tags, and on one server the multiplexed connection pipelines
    // the concurrent reads anyway.
    let reads = (0..k.partitions()).map(|p| {
        let mut pipe = redis::pipe();
        pipe.hgetall(k.lease(p)).hgetall(k.watch_state(p));
        let mut conn = conn.clone();
        async move {
            pipe.query_async::<Vec<HashMap<String, String>>>(&mut conn)
                .await
        }
    });
    let hashes: Vec<HashMap<String, String>> = futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let mut partitions = Vec::new();
    let mut totals = WatchdogTotals::default();
    let workers = ledger.workers().await?;
    for (p, pair) in (0..k.partitions()).zip(hashes.chunks(2)) {
        let (lease, watch) = (&pair[0], &pair[1]);
        let num = |h: &HashMap<String, String>, f: &str| -> Result<Option<i64>> {
            h.get(f)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<i64>().map_err(|_| damaged(p, f, v)))
                .transpose()
        };
        let expires = num(lease, "exp")?.filter(|exp| *exp > now_ms);
        let hold_until = num(watch, "hold_until")?.filter(|h| *h > now_ms);
        for (field, total) in [
            ("n_timed_out", &mut totals.timed_out),
            ("n_stuck", &mut totals.stuck),
            ("n_retried", &mut totals.retried),
            ("n_dead", &mut totals.dead),
            ("n_cancelled", &mut totals.cancelled),
            ("n_orphaned", &mut totals.orphaned),
            ("holds", &mut totals.holds),
            ("n_pruned", &mut totals.pruned),
            ("n_wait_expired", &mut totals.wait_expired),
        ] {
            *total += num(watch, field)?.unwrap_or(0).max(0) as u64;
        }
        partitions.push(PartitionStatus {
            partition: p,
            owner: expires.and(lease.get("owner").cloned()),
            epoch: expires.and(num(lease, "epoch")?).map(|e| e.max(0) as u64),
            lease_expires_at: expires.map(ms_to_time).transpose()?,
            last_round_at: num(watch, "seen")?.map(ms_to_time).transpose()?,
            hold_until: hold_until.map(ms_to_time).transpose()?,
            hold_reason: watch.get("hold_reason").cloned(),
        });
    }
    let (replicas, data_lost) = replicas(ledger, now_ms).await?;
    let mut status = WatchdogStatus {
        at: ms_to_time(now_ms)?,
        partitions,
        replicas,
        data_lost,
        namespace_hold: namespace_hold(ledger, now_ms).await?,
        totals,
        open_circuits: workers
            .iter()
            .filter(|w| w.remediation.circuit_open)
            .map(|w| w.worker_id.clone())
            .collect(),
        workers_in_tier: workers
            .iter()
            .filter(|w| !w.remediation.circuit_open && w.remediation.tier > 0)
            .count() as u64,
        health: Health::default(),
    };
    status.health = Health::judge(&status, ledger.check_ready().await.as_ref().copied());
    Ok(status)
}

/// The health verdict alone: [`status`]'s, or "Redis unreachable" when Redis could not be
/// read ([`Health::unreachable`]). What `/metrics` exports.
///
/// # Errors
/// As [`status`], but for the errors of talking to Redis, which are a verdict.
pub async fn health(ledger: &Ledger) -> Result<Health> {
    match status(ledger).await {
        Ok(status) => Ok(status.health),
        Err(error) => Health::unreachable(&error).ok_or(error),
    }
}

/// Replicas that beat within the last 30 s (ten default lease TTLs), and those whose
/// beats found the data lost in that window. Live replicas beat every third of their lease
/// TTL and sweep entries older than it; the window only matters when no replica is left to
/// sweep.
async fn replicas(ledger: &Ledger, now_ms: i64) -> Result<(Vec<ReplicaStatus>, Vec<String>)> {
    let window = super::WatchdogConfig::default().lease_ttl.as_millis() as i64 * 10;
    let mut conn = ledger.conn.clone();
    let beats: Vec<(String, f64)> = conn
        .zrange_withscores(ledger.keys.replica_index(), 0, -1)
        .await?;
    let lost: Vec<(String, f64)> = conn
        .zrange_withscores(ledger.keys.data_lost_index(), 0, -1)
        .await?;
    let data_lost = lost
        .into_iter()
        .filter(|(_, at)| (*at as i64) + window >= now_ms)
        .map(|(id, _)| id)
        .collect();
    let alive = beats
        .into_iter()
        .filter(|(_, at)| (*at as i64) + window >= now_ms)
        .map(|(replica_id, at)| {
            Ok(ReplicaStatus {
                replica_id,
                last_beat_at: ms_to_time(at as i64)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((alive, data_lost))
}

async fn namespace_hold(ledger: &Ledger, now_ms: i64) -> Result<Option<NamespaceHold>> {
    let (until, start, reason): (Option<i64>, Option<i64>, Option<String>) = redis::cmd("HMGET")
        .arg(ledger.keys.systemic())
        .arg(&["hold_until", "hold_start", "hold_reason"])
        .query_async(&mut ledger.conn.clone())
        .await?;
    match (until, start) {
        (Some(until), Some(start)) if until > now_ms => Ok(Some(NamespaceHold {
            started_at: ms_to_time(start)?,
            until: ms_to_time(until)?,
            reason: reason.unwrap_or_default(),
        })),
        _ => Ok(None),
    }
}

fn damaged(partition: u16, field: &str, value: &str) -> Error {
    Error::Protocol {
        script: "watchdog state",
        detail: format!("partition {partition}: {field} is not a number: {value:?}"),
    }
}
