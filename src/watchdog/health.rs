//! The health verdict of a namespace: healthy, or degraded with every reason. The one
//! judgement `GET /v1/watchdog`, `unstuck status`, the dashboard and `/metrics` show.
//!
//! Decisions taken here:
//! - Every reason is listed, even when one implies another (no replica alive also leaves
//!   every partition unwatched): an operator sees each fact, a script matches each code.
//! - Open worker circuits are an alert about workers, not about the watchdog: shown by
//!   `status`, never a reason here (a health check of the watchdog must not fail because
//!   one worker somewhere is wedged).
//! - Redis unreachable is a verdict too ([`Health::unreachable`]), not only an error, so
//!   every reader can still say what is wrong.
//!
//! Readiness of a process that runs a replica ([`Watchdog::check_ready`], what `/readyz`
//! answers) is decided here too: not ready once the replica found Redis lost the data.

use serde::{Deserialize, Serialize};

use super::Watchdog;
use super::status::WatchdogStatus;
use crate::error::{Error, Result};

impl Watchdog {
    /// Whether this replica is fit to serve: not once it found that Redis lost the
    /// namespace's data (it then refuses to act until restarted), and only while Redis
    /// answers and will not evict keys ([`Ledger::check_ready`](crate::Ledger::check_ready)).
    /// What `/readyz` answers in a process that runs a replica.
    ///
    /// # Errors
    /// [`Error::DataLost`]; as [`Ledger::check_ready`](crate::Ledger::check_ready).
    pub async fn check_ready(&self) -> Result<()> {
        if self.data_lost() {
            return Err(self.data_lost_error());
        }
        self.ledger.check_ready().await
    }
}

/// Healthy, or degraded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every partition is watched, no hold is in force, Redis answers.
    #[default]
    Healthy,
    /// At least one reason below.
    Degraded,
}

/// Why a namespace is degraded: a stable code for scripts and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthCode {
    /// Redis cannot be reached: nothing else could be read.
    RedisUnreachable,
    /// Redis answers but is not fit to keep the ledger (it may evict keys).
    RedisNotReady,
    /// A replica found the namespace's marker gone or changed: Redis lost its data.
    DataLost,
    /// No watchdog replica beat within the liveness window.
    NoReplica,
    /// Partitions no replica holds a current lease on.
    PartitionsUnwatched,
    /// Partitions in a systemic hold: staleness rules are paused there.
    PartitionHold,
    /// A systemic hold over the whole namespace.
    NamespaceHold,
}

impl HealthCode {
    /// Every code, in the order reasons are listed.
    pub const ALL: [HealthCode; 7] = [
        HealthCode::RedisUnreachable,
        HealthCode::RedisNotReady,
        HealthCode::DataLost,
        HealthCode::NoReplica,
        HealthCode::PartitionsUnwatched,
        HealthCode::PartitionHold,
        HealthCode::NamespaceHold,
    ];

    /// The code as it is written on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCode::RedisUnreachable => "redis_unreachable",
            HealthCode::RedisNotReady => "redis_not_ready",
            HealthCode::DataLost => "data_lost",
            HealthCode::NoReplica => "no_replica",
            HealthCode::PartitionsUnwatched => "partitions_unwatched",
            HealthCode::PartitionHold => "partition_hold",
            HealthCode::NamespaceHold => "namespace_hold",
        }
    }
}

/// One reason for a degraded verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct HealthReason {
    /// What kind of problem, for machines.
    pub code: HealthCode,
    /// One sentence for people.
    pub message: String,
}

/// The verdict with every reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Health {
    /// `healthy` or `degraded`.
    pub verdict: Verdict,
    /// The verdict in one line, as `unstuck status` prints it and the dashboard shows it:
    /// `healthy: ...` or `degraded: <reason>; <reason>`.
    pub summary: String,
    /// Every reason, in the order of [`HealthCode::ALL`]; empty when healthy.
    pub reasons: Vec<HealthReason>,
}

impl Health {
    /// Judges a status reading and Redis's readiness (`Ledger::check_ready`).
    pub fn judge(status: &WatchdogStatus, ready: Result<(), &Error>) -> Health {
        let mut reasons = Vec::new();
        let mut add = |code, message: String| reasons.push(HealthReason { code, message });
        match ready {
            Ok(()) => {}
            Err(e) if is_unreachable(e) => {
                add(HealthCode::RedisUnreachable, unreachable_message(e))
            }
            Err(e) => add(
                HealthCode::RedisNotReady,
                format!("Redis is not ready: {e}"),
            ),
        }
        if !status.data_lost.is_empty() {
            add(
                HealthCode::DataLost,
                format!(
                    "Redis lost the namespace's data: replica(s) {} refuse to act until restarted",
                    status.data_lost.join(", ")
                ),
            );
        }
        if status.replicas.is_empty() {
            add(
                HealthCode::NoReplica,
                "no watchdog replica is alive".to_owned(),
            );
        }
        let unwatched = status.unwatched();
        if !unwatched.is_empty() {
            add(
                HealthCode::PartitionsUnwatched,
                format!(
                    "{} of {} partition(s) unwatched: {}",
                    unwatched.len(),
                    status.partitions.len(),
                    list(&unwatched)
                ),
            );
        }
        let holding: Vec<String> = status
            .partitions
            .iter()
            .filter(|p| p.hold_until.is_some())
            .map(|p| match &p.hold_reason {
                Some(why) if !why.is_empty() => format!("{} ({why})", p.partition),
                _ => p.partition.to_string(),
            })
            .collect();
        if !holding.is_empty() {
            add(
                HealthCode::PartitionHold,
                format!("systemic hold in partition(s) {}", holding.join(", ")),
            );
        }
        if let Some(h) = &status.namespace_hold {
            add(
                HealthCode::NamespaceHold,
                format!(
                    "systemic hold over the namespace until {}: {}",
                    h.until.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    h.reason
                ),
            );
        }
        if reasons.is_empty() {
            return Health {
                verdict: Verdict::Healthy,
                summary: format!(
                    "healthy: {} replica(s) watch all {} partitions",
                    status.replicas.len(),
                    status.partitions.len()
                ),
                reasons,
            };
        }
        Self::degraded(reasons)
    }

    /// The verdict when reading the status failed with `error`: "Redis unreachable" when
    /// the error came from talking to Redis; `None` for any other error (a damaged hash,
    /// refused credentials), which is an error to report, not a verdict.
    pub fn unreachable(error: &Error) -> Option<Health> {
        is_unreachable(error).then(|| {
            Self::degraded(vec![HealthReason {
                code: HealthCode::RedisUnreachable,
                message: unreachable_message(error),
            }])
        })
    }

    fn degraded(reasons: Vec<HealthReason>) -> Health {
        let summary = reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Health {
            verdict: Verdict::Degraded,
            summary: format!("degraded: {summary}"),
            reasons,
        }
    }

    /// True when the verdict is healthy.
    pub fn is_healthy(&self) -> bool {
        self.verdict == Verdict::Healthy
    }

    /// True when `code` is among the reasons.
    pub fn has(&self, code: HealthCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// Redis could not be read: not reached at all, no reply in time, or an error of its own.
fn is_unreachable(error: &Error) -> bool {
    matches!(
        error,
        Error::Redis(_) | Error::Pool(_) | Error::Unavailable { .. } | Error::UnknownOutcome { .. }
    )
}

fn unreachable_message(error: &Error) -> String {
    format!("Redis unreachable ({error})")
}

fn list(partitions: &[u16]) -> String {
    partitions
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::{PartitionStatus, ReplicaStatus, WatchdogTotals};
    use chrono::{TimeZone, Utc};

    fn status(owners: &[Option<&str>], replicas: &[&str]) -> WatchdogStatus {
        let at = Utc.timestamp_millis_opt(1_000_000).unwrap();
        WatchdogStatus {
            at,
            partitions: owners
                .iter()
                .enumerate()
                .map(|(p, o)| PartitionStatus {
                    partition: p as u16,
                    owner: o.map(str::to_owned),
                    epoch: o.map(|_| 1),
                    lease_expires_at: o.map(|_| at),
                    last_round_at: None,
                    hold_until: None,
                    hold_reason: None,
                })
                .collect(),
            replicas: replicas
                .iter()
                .map(|r| ReplicaStatus {
                    replica_id: (*r).to_owned(),
                    last_beat_at: at,
                })
                .collect(),
            data_lost: Vec::new(),
            namespace_hold: None,
            totals: WatchdogTotals::default(),
            open_circuits: vec!["w-wedged".into()],
            workers_in_tier: 1,
            health: Health::default(),
        }
    }

    fn codes(h: &Health) -> Vec<&'static str> {
        h.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn watched_partitions_are_healthy_whatever_the_worker_circuits() {
        let h = Health::judge(&status(&[Some("r1"), Some("r1")], &["r1"]), Ok(()));
        assert_eq!(h.verdict, Verdict::Healthy);
        assert_eq!(h.summary, "healthy: 1 replica(s) watch all 2 partitions");
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn every_reason_is_listed_in_order() {
        let mut s = status(&[None, Some("r1"), None], &[]);
        s.partitions[1].hold_until = Some(s.at);
        s.partitions[1].hold_reason = Some("most running work went stale".into());
        s.data_lost = vec!["r0".into()];
        let ready = Err(Error::EvictionPolicy {
            policy: "allkeys-lru".into(),
        });
        let h = Health::judge(&s, ready.as_ref().copied());
        assert_eq!(h.verdict, Verdict::Degraded);
        assert_eq!(
            codes(&h),
            [
                "redis_not_ready",
                "data_lost",
                "no_replica",
                "partitions_unwatched",
                "partition_hold"
            ]
        );
        assert_eq!(h.reasons[3].message, "2 of 3 partition(s) unwatched: 0, 2");
        assert_eq!(
            h.reasons[4].message,
            "systemic hold in partition(s) 1 (most running work went stale)"
        );
        assert!(h.summary.starts_with("degraded: Redis is not ready: "));
        assert!(h.summary.contains("; no watchdog replica is alive; 2 of 3"));
        let wire = serde_json::to_value(&h).unwrap();
        assert_eq!(wire["verdict"], "degraded");
        assert_eq!(wire["reasons"][2]["code"], "no_replica");
    }
}
