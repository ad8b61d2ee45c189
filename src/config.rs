//! Library configuration: where Redis is, how keys are split, limits and default timings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::timings::MAX_DURATION;

/// Where the ledger connects when neither `redis_url` nor `cluster_urls` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
use crate::retention::Retention;
use crate::timings::Timings;

/// Configuration of a [`Ledger`](crate::Ledger). Every field has a default, so an empty
/// config file is valid; durations are written as `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Redis URL of a standalone server. `None` with no `cluster_urls`: the local default,
    /// [`DEFAULT_REDIS_URL`]. Setting both this and `cluster_urls` is refused.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster; when non-empty, unstuck runs in cluster mode.
    pub cluster_urls: Vec<String>,
    /// Prefix of every key: separate tenants or environments sharing one Redis.
    pub namespace: String,
    /// Partitions the keyspace is split into. Queues map to one partition each; watchdog
    /// replicas share partitions. Changing it remaps queues, so pick it once.
    pub partitions: u16,
    /// How long to wait for a Redis reply. The redis crate's 500 ms default is too short for
    /// a server that is forking for a snapshot; every script here is bounded, so a long
    /// wait means trouble, not work.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    /// How long to wait for a connection to Redis to open.
    pub connection_timeout: Duration,
    /// Largest accepted payload, result or checkpoint, in bytes.
    pub max_payload_bytes: usize,
    /// Approximate length the partition event streams are capped at.
    pub events_max_len: usize,
    /// Transitions kept in each execution's history.
    pub history_len: usize,
    /// Capacity of a queue that has no settings of its own.
    pub default_capacity: u32,
    /// Timings of executions whose queue and enqueue call leave them unset. A config that
    /// sets some of them keeps the built-in values for the rest.
    #[serde(deserialize_with = "filled_defaults")]
    pub defaults: Timings,
    /// Refuse to start unless Redis `maxmemory-policy` is `noeviction`.
    pub require_noeviction: bool,
    /// How long finished executions are kept (and how many per queue); queues may set
    /// their own. A config that sets some keeps the built-in values for the rest.
    #[serde(deserialize_with = "filled_retention")]
    pub retention: Retention,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            cluster_urls: Vec::new(),
            namespace: "unstuck".into(),
            partitions: 16,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
            max_payload_bytes: 1024 * 1024,
            events_max_len: 10_000,
            history_len: 32,
            default_capacity: 100,
            defaults: Timings::global_defaults(),
            require_noeviction: true,
            retention: Retention::defaults(),
        }
    }
}

fn filled_retention<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Retention, D::Error> {
    Ok(Retention::deserialize(d)?.or(&Retention::defaults()))
}

fn filled_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timings, D::Error> {
    Ok(Timings::deserialize(d)?.or(&Timings::global_defaults()))
}

impl LedgerConfig {
    /// A default configuration pointing at `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: Some(redis_url.into()),
            ..Self::default()
        }
    }

    /// The standalone server's URL: `redis_url`, or [`DEFAULT_REDIS_URL`].
    pub fn server_url(&self) -> &str {
        self.redis_url.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }

    /// Checks every value and combination.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key (`ledger.<key>`) and the accepted form,
    /// or a contradiction (`redis_url` and `cluster_urls` both set).
    pub fn validate(&self) -> Result<()> {
        crate::keys::Keyspace::new(&self.namespace, self.partitions)?;
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("ledger.{key}"),
                value,
                expected: expected.into(),
            })
        };
        if !self.cluster_urls.is_empty() && self.redis_url.is_some() {
            return bad(
                "cluster_urls",
                self.cluster_urls.join(","),
                "either redis_url (one server) or cluster_urls (a Redis Cluster), not both",
            );
        }
        if self.response_timeout.is_zero() || self.response_timeout > Duration::from_secs(600) {
            return bad(
                "response_timeout",
                crate::error::format_duration(self.response_timeout),
                "a duration from 1ms to 10m",
            );
        }
        if self.connection_timeout.is_zero() || self.connection_timeout > Duration::from_secs(600) {
            return bad(
                "connection_timeout",
                crate::error::format_duration(self.connection_timeout),
                "a duration from 1ms to 10m",
            );
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 64 * 1024 * 1024 {
            return bad(
                "max_payload_bytes",
                self.max_payload_bytes.to_string(),
                "1 to 67108864 bytes",
            );
        }
        if self.events_max_len < 100 {
            return bad(
                "events_max_len",
                self.events_max_len.to_string(),
                "at least 100",
            );
        }
        if self.history_len == 0 || self.history_len > 1000 {
            return bad("history_len", self.history_len.to_string(), "1 to 1000");
        }
        if self.default_capacity == 0 {
            return bad(
                "default_capacity",
                self.default_capacity.to_string(),
                "at least 1",
            );
        }
        self.retention.validate().map_err(|e| match e {
            Error::InvalidArgument {
                name,
                value,
                expected,
            } => Error::InvalidConfig {
                key: format!("ledger.{name}"),
                value,
                expected,
            },
            other => other,
        })?;
        self.defaults.validate_as_defaults()
    }
}
