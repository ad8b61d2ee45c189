//! The `[server]` settings of `unstuck serve`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, format_duration};
use crate::ledger::MAX_CLAIM_WAIT;

/// How `unstuck serve` listens, who may call it, and its limits. Every field has a
/// default; durations are written `30s`, `5m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Bearer tokens, each `scope:secret` with scope `read`, `orchestrator`, `worker` or
    /// `admin`. None: every route is open, and only a loopback `listen` is accepted.
    pub tokens: Vec<String>,
    /// Largest request body accepted, in bytes (a batch of 1000 payloads is large).
    pub body_limit: usize,
    /// Longest a request may take (long polls wait up to 30 s, so keep it above that).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most requests in flight at once (waiting long polls count); beyond it `503`.
    pub max_concurrent_requests: usize,
    /// Run one watchdog replica in this process, so one `serve` next to a Redis is a
    /// complete deployment.
    pub watchdog: bool,
    /// How often the queue gauges of `/metrics` are sampled.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
            body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 4096,
            watchdog: true,
            sample_interval: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// The parsed listen address.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `server.listen`.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen.parse().map_err(|_| Error::InvalidConfig {
            key: "server.listen".into(),
            value: self.listen.clone(),
            expected: "an IP address and port, like 127.0.0.1:8080 or 0.0.0.0:8080".into(),
        })
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the `server.*` key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("server.{key}"),
                value,
                expected: expected.into(),
            })
        };
        self.listen_addr()?;
        if !(1024..=1024 * 1024 * 1024).contains(&self.body_limit) {
            return bad(
                "body_limit",
                self.body_limit.to_string(),
                "1024 to 1073741824 bytes",
            );
        }
        if self.request_timeout <= MAX_CLAIM_WAIT
            || self.request_timeout > Duration::from_secs(3600)
        {
            return bad(
                "request_timeout",
                format_duration(self.request_timeout),
                "a duration above 30s (the longest long poll) and at most 1h",
            );
        }
        if !(1..=1_000_000).contains(&self.max_concurrent_requests) {
            return bad(
                "max_concurrent_requests",
                self.max_concurrent_requests.to_string(),
                "1 to 1000000",
            );
        }
        if self.sample_interval < Duration::from_millis(100) {
            return bad(
                "sample_interval",
                format_duration(self.sample_interval),
                "at least 100ms",
            );
        }
        Ok(())
    }
}
