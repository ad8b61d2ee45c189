//! Watchdog replica configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, format_duration};
use crate::timings::MAX_DURATION;

/// How a watchdog replica leases partitions, scans timers and reconciles workers. Every
/// field has a default; durations are written as `500ms`, `3s`, `1m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Replica id, unique per process start. Default: `wd-<host>-<pid>-<uuidv7>`.
    pub replica_id: Option<String>,
    /// How long a partition lease lasts without renewal; renewed at a third of it. Also
    /// how long a partition stays unwatched after its replica dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Longest sleep between two rounds of a partition. Replicas otherwise sleep until the
    /// earliest timer; keep this below the shortest timeout in use so no timer created
    /// during a sleep is noticed late.
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Most timer entries one round script examines (keeps each script to milliseconds).
    pub batch: usize,
    /// How often worker reconciliation runs per partition.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How often finished executions past their retention are removed per partition.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// Most finished executions one prune call removes (keeps each script short).
    pub prune_batch: usize,
    /// A worker whose registry heartbeat is older than this is gone — or older than three
    /// of the registry intervals the worker declared, when that is longer — unless one of
    /// its executions heartbeated within that time.
    #[serde(with = "humantime_serde")]
    pub worker_timeout: Duration,
    /// Registry entries of workers silent for longer than this are forgotten.
    #[serde(with = "humantime_serde")]
    pub worker_retention: Duration,
    /// A partition unwatched for longer than this triggers a systemic hold. Keep it above
    /// `lease_ttl` plus `max_poll_interval`, or every replica failover starts a hold.
    /// Default: the ledger's default heartbeat timeout.
    #[serde(with = "humantime_serde")]
    pub systemic_absence: Option<Duration>,
    /// Share (0..1] of a partition's running executions that, going stale at once,
    /// triggers a systemic hold.
    pub systemic_share: f64,
    /// The share rule applies only to partitions with at least this many running.
    pub systemic_min_running: u32,
    /// How long a systemic hold pauses the staleness rules. Default: the ledger's default
    /// heartbeat timeout ("one more heartbeat timeout of grace").
    #[serde(with = "humantime_serde")]
    pub systemic_grace: Option<Duration>,
    /// The version stamp every worker should run; one that registered with another is
    /// asked to restart (tier 1). `None`: versions are not judged. Per queue:
    /// `tiers.expected_versions`.
    pub expected_worker_version: Option<String>,
    /// `[watchdog.tiers]`: worker remediation.
    pub tiers: super::tier_config::TierConfig,
    /// `[[watchdog.hooks]]`: commands and webhooks called on executions that die, time
    /// out or get stuck, and on workers' tiers (see [`crate::hooks`]).
    pub hooks: Vec<crate::hooks::HookConfig>,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            replica_id: None,
            lease_ttl: Duration::from_secs(3),
            max_poll_interval: Duration::from_millis(500),
            batch: 200,
            reconcile_interval: Duration::from_secs(1),
            prune_interval: super::retention::DEFAULT_PRUNE_INTERVAL,
            prune_batch: 200,
            worker_timeout: Duration::from_secs(15),
            worker_retention: Duration::from_secs(3600),
            systemic_absence: None,
            systemic_share: 0.5,
            systemic_min_running: 10,
            systemic_grace: None,
            expected_worker_version: None,
            tiers: super::tier_config::TierConfig::default(),
            hooks: Vec::new(),
        }
    }
}

impl WatchdogConfig {
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key, the value and the accepted form.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("watchdog.{key}"),
                value,
                expected: expected.into(),
            })
        };
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        // Each duration, with the range it must stay in and that range in words.
        let durations = [
            (
                "lease_ttl",
                Some(self.lease_ttl),
                ms(300),
                secs(600),
                "300ms to 10m",
            ),
            (
                "max_poll_interval",
                Some(self.max_poll_interval),
                ms(1),
                secs(60),
                "1ms to 60s",
            ),
            (
                "reconcile_interval",
                Some(self.reconcile_interval),
                ms(10),
                secs(3600),
                "10ms to 1h",
            ),
            (
                "prune_interval",
                Some(self.prune_interval),
                ms(10),
                secs(3600),
                "10ms to 1h",
            ),
            (
                "worker_timeout",
                Some(self.worker_timeout),
                ms(100),
                secs(86_400),
                "100ms to 24h",
            ),
            (
                "systemic_absence",
                self.systemic_absence,
                ms(1),
                MAX_DURATION,
                "1ms to 365 days",
            ),
            (
                "systemic_grace",
                self.systemic_grace,
                ms(1),
                MAX_DURATION,
                "1ms to 365 days",
            ),
        ];
        for (key, value, lo, hi, range) in durations {
            if let Some(d) = value
                && !(lo..=hi).contains(&d)
            {
                return bad(key, format_duration(d), &format!("a duration from {range}"));
            }
        }
        if !(1..=10_000).contains(&self.prune_batch) {
            return bad("prune_batch", self.prune_batch.to_string(), "1 to 10000");
        }
        if !(1..=10_000).contains(&self.batch) {
            return bad("batch", self.batch.to_string(), "1 to 10000");
        }
        if self.worker_retention < self.worker_timeout * 2 {
            return bad(
                "worker_retention",
                format_duration(self.worker_retention),
                "at least twice worker_timeout",
            );
        }
        if !(self.systemic_share > 0.0 && self.systemic_share <= 1.0) {
            return bad(
                "systemic_share",
                self.systemic_share.to_string(),
                "a number above 0 and at most 1",
            );
        }
        if let Some(v) = &self.expected_worker_version
            && (v.is_empty() || v.len() > 200)
        {
            return bad(
                "expected_worker_version",
                v.clone(),
                "a version stamp of 1 to 200 bytes",
            );
        }
        self.tiers.validate()?;
        crate::hooks::validate(&self.hooks)?;
        if let Some(id) = &self.replica_id {
            crate::names::validate_worker_id(id)?;
        }
        Ok(())
    }
}
